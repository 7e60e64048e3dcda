//! Daemon protocol request lines (`ipc::protocol::parse_request`): never a panic, and a
//! refusal never repeats a string value of the request (a client may have put a secret
//! in the wrong field).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtoken::ipc::protocol::parse_request;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = parse_request(data) {
        let m = e.to_string();
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
            let mut strings = Vec::new();
            collect(&v, &mut strings);
            // The protocol's own words may be named in a refusal (the list of what is
            // accepted); any other string may not.
            const WORDS: &[&str] = &["login_started", "oauthbearer", "min_valid", "account"];
            for s in strings.iter().filter(|s| s.len() >= 8 && !WORDS.iter().any(|w| w.contains(s.as_str()) || s.contains(w))) {
                assert!(!m.contains(s.as_str()), "the refusal repeats {s:?}: {m}");
            }
        }
    }
});

fn collect(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| collect(x, out)),
        _ => {}
    }
}
