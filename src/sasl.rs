//! The credential strings mail programs ask for: XOAUTH2 (Google's and Microsoft's
//! documented form) and OAUTHBEARER (RFC 7628), base64-encoded as they travel in SASL.
//! Built in zeroizing buffers because they contain the access token.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// `base64("user=" U "\x01auth=Bearer " T "\x01\x01")`
pub fn xoauth2(user: &str, token: &str) -> Zeroizing<String> {
    let raw = Zeroizing::new(format!("user={user}\x01auth=Bearer {token}\x01\x01"));
    Zeroizing::new(STANDARD.encode(raw.as_bytes()))
}

/// `base64("n,a=" U ",\x01host=" H "\x01port=" P "\x01auth=Bearer " T "\x01\x01")`;
/// host and port are left out when unknown (both are optional in RFC 7628 §3.1).
pub fn oauthbearer(
    user: &str,
    host: Option<&str>,
    port: Option<u16>,
    token: &str,
) -> Zeroizing<String> {
    let mut raw = Zeroizing::new(format!("n,a={},\x01", gs2_saslname(user)));
    if let Some(h) = host {
        raw.push_str(&format!("host={h}\x01"));
    }
    if let Some(p) = port {
        raw.push_str(&format!("port={p}\x01"));
    }
    raw.push_str(&format!("auth=Bearer {token}\x01\x01"));
    Zeroizing::new(STANDARD.encode(raw.as_bytes()))
}

/// RFC 5801 §4: in the GS2 header's authzid, `,` and `=` are written `=2C` and `=3D`.
fn gs2_saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> Vec<u8> {
        STANDARD.decode(s).unwrap()
    }

    #[test]
    fn xoauth2_matches_googles_documented_example() {
        // developers.google.com/gmail/imap/xoauth2-protocol: the example's initial
        // client response for someuser@example.com and token ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg.
        let s = xoauth2(
            "someuser@example.com",
            "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg",
        );
        assert_eq!(
            s.as_str(),
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
        );
    }

    #[test]
    fn xoauth2_bytes_are_exact() {
        assert_eq!(
            decode(&xoauth2("u@x", "T")),
            b"user=u@x\x01auth=Bearer T\x01\x01"
        );
    }

    #[test]
    fn oauthbearer_bytes_follow_rfc7628() {
        let s = oauthbearer(
            "user@example.com",
            Some("server.example.com"),
            Some(143),
            "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
        );
        assert_eq!(
            decode(&s),
            b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
        );
    }

    #[test]
    fn oauthbearer_leaves_out_unknown_host_and_port() {
        assert_eq!(
            decode(&oauthbearer("u", None, None, "T")),
            b"n,a=u,\x01auth=Bearer T\x01\x01"
        );
        assert_eq!(
            decode(&oauthbearer("u", Some("h"), None, "T")),
            b"n,a=u,\x01host=h\x01auth=Bearer T\x01\x01"
        );
    }

    #[test]
    fn oauthbearer_escapes_comma_and_equals_in_the_user() {
        assert_eq!(
            decode(&oauthbearer("a,b=c", None, None, "T")),
            b"n,a=a=2Cb=3Dc,\x01auth=Bearer T\x01\x01"
        );
    }
}
