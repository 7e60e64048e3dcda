//! Device authorization answers (RFC 8628 §3.2, `oauth::device::DeviceAuthorization`):
//! never a panic, whatever the endpoint sends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtoken::oauth::device::DeviceAuthorization;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = serde_json::from_slice::<DeviceAuthorization>(data) {
        let _ = d.user_code.len() + d.verification_uri.len();
    }
});
