//! Git credential helper input (`gitcred::parse`, `gitcred::split_host`): never a panic,
//! and no parsed field carries a line break or NUL into the answer or a message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtoken::gitcred;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let q = gitcred::parse(text);
    for f in [&q.protocol, &q.host, &q.path, &q.username].into_iter().flatten() {
        assert!(!f.contains(['\n', '\0']), "{f:?}");
    }
    for line in text.lines() {
        let _ = gitcred::split_host(line);
    }
});
