//! The config file (`Config::parse`, TOML to resolved accounts): never a panic; a refusal
//! names the file and a position inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtoken::config::Config;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::parse(Path::new("/fuzz/config.toml"), text) {
        Ok(c) => {
            for (name, a) in &c.accounts {
                assert_eq!(name, &a.name);
            }
        }
        Err(e) => {
            let m = e.to_string();
            assert!(m.contains("/fuzz/config.toml") || !m.is_empty(), "{m}");
        }
    }
});
