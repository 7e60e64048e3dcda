//! Every parser of server text takes any bytes without panicking, and the ones that
//! accept a line give back parts of that line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtoken::verify::wire;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.split('\n') {
        if let Some(l) = wire::smtp_line(line) {
            assert!((200..600).contains(&l.code));
            assert!(line.contains(l.text));
        }
        if let Some(wire::ImapLine::Tagged { tag, text, .. }) = wire::imap_line(line) {
            assert!(line.starts_with(tag) && line.contains(text));
        }
        let _ = wire::imap_capabilities(line);
        let _ = wire::pop_line(line);
        let _ = wire::decode_challenge(line);
    }
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let _ = wire::ehlo(&lines);
    let _ = wire::pop_capa(&lines);
});
