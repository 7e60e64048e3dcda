//! Token endpoint answers (`oauth::read_token_response`): any status, content type and
//! body; never a panic, a grant only from a 200 with an access token, and a refusal that
//! never repeats a string of the body (it may be a token).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtoken::oauth::read_token_response;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let status = [200u16, 400, 401, 403, 500, 503, 302][data[0] as usize % 7];
    let ct = ["application/json", "text/html", "text/plain", ""][data[1] as usize % 4];
    let body = &data[2..];
    match read_token_response(status, ct, body) {
        Ok(Some(g)) => {
            assert_eq!(status, 200);
            assert!(!g.access_token.expose().is_empty() || body.windows(2).any(|w| w == b"\"\""));
        }
        Ok(None) => assert!(status == 400 || status == 401),
        Err(m) => {
            // mailtoken's own words may match a short value; only the rest counts.
            const OURS: &[&str] = &["the answer had no access_token", "a JSON object with keys", "an HTML page", "instead of JSON", "unlabelled data", "application/json", "text/html", "text/plain", "not a token response"];
            let m = OURS.iter().fold(m, |acc, w| acc.replace(w, " | "));
            // Every JSON string of 8 or more characters in the body stays out of the message
            // (keys that look like field names are shown on purpose).
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
                let mut strings = Vec::new();
                collect(&v, &mut strings);
                let keys: Vec<&String> = v.as_object().map(|o| o.keys().collect()).unwrap_or_default();
                for s in strings.iter().filter(|s| s.len() >= 8 && !keys.iter().any(|k| k.contains(s.as_str()))) {
                    assert!(!m.contains(s.as_str()), "the message repeats {s:?}: {m}");
                }
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
