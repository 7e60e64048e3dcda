//! The loopback redirect's query string (`loopback::validate`) and a pasted address
//! (`login::check_pasted`): never a panic, and a code only when the query, as the URL
//! standard reads it, holds exactly one `state`, ours.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtoken::loopback::{validate, Callback};

const STATE: &str = "fuzz-state-5b1c9e";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(Callback::Code(_)) = validate(text, STATE) {
        assert!(one_state_ours(text), "a code accepted without our state: {text:?}");
    }
    if let Ok(Callback::Code(_)) = mailtoken::login::check_pasted(text, "http://127.0.0.1:8765/", STATE) {
        let q = url::Url::parse(text).unwrap();
        assert!(one_state_ours(q.query().unwrap_or("")), "a pasted code accepted without our state: {text:?}");
    }
});

fn one_state_ours(query: &str) -> bool {
    let states: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .collect();
    states == [STATE]
}
