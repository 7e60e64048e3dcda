//! The loopback redirect's query string (`loopback::validate`) and a pasted address
//! (`login::check_pasted`): never a panic, and a code only with the state we sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtoken::loopback::{validate, Callback};

const STATE: &str = "fuzz-state-5b1c9e";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(Callback::Code(_)) = validate(text, STATE) {
        assert!(text.contains(STATE), "a code accepted without our state: {text:?}");
    }
    if let Ok(Callback::Code(_)) = mailtoken::login::check_pasted(text, "http://127.0.0.1:8765/", STATE) {
        assert!(text.contains(STATE), "a pasted code accepted without our state: {text:?}");
    }
});
