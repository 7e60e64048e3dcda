//! What the relays read from their local clients before the hand-over: SASL PLAIN
//! responses (`relay::upstream::decode_plain`, shared by SMTP, IMAP and POP3) and IMAP
//! LOGIN arguments (`relay::imap::parse_login`): never a panic, and what they accept
//! comes from the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtoken::relay::{imap, upstream};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some((user, _pass)) = upstream::decode_plain(text) {
        assert!(!user.contains('\0'));
    }
    if let Some((user, pass)) = imap::parse_login(text) {
        assert!(user.len() <= text.len() && pass.len() <= text.len());
    }
});
