//! Thunderbird autoconfig files (`discover::autoconfig::parse`) and an authorization
//! server's metadata (`discover::oauth_meta::parse`), the outside input `mailtoken add`
//! fetches: never a panic, and what is accepted holds what the config may take.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtoken::discover::{autoconfig, oauth_meta};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(a) = autoconfig::parse(&text, "fuzz@example.org") {
        for s in &a.servers {
            assert!(autoconfig::valid_host(&s.server.host), "{:?}", s.server.host);
            assert_ne!(s.server.port, 0);
        }
    }
    let issuer = oauth_meta::issuer_url("https://as.example").unwrap();
    if let Ok(e) = oauth_meta::parse(data, &issuer) {
        assert!(oauth_meta::check_scheme(&e.auth_url).is_ok());
        assert!(oauth_meta::check_scheme(&e.token_url).is_ok());
    }
});
