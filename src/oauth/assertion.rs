//! Signed JWT assertions (RFC 7523): an app's certificate-based client authentication
//! (`private_key_jwt`, RFC 7523 §2.2, as Microsoft's identity platform takes it:
//! https://learn.microsoft.com/en-us/entra/identity-platform/certificate-credentials).
//! The key and certificate are read for each request and wiped after it; a certificate
//! that has expired is refused here, with its date, before the provider says so less
//! clearly.

use crate::error::{Error, Result};
use crate::secret::Secret;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};
use zeroize::Zeroizing;

/// How long an assertion is good for: long enough for one request, short enough that
/// a copy is worth nothing soon after.
const ASSERTION_LIFETIME: u64 = 300;

/// An app's certificate and the key that signs with it.
pub struct Signer {
    /// Where they came from, for messages.
    pub source: String,
    cert: CertificateDer<'static>,
    key: RsaKeyPair,
}

impl Signer {
    /// Reads a PEM certificate and PEM private key (PKCS #8 or PKCS #1 RSA), from
    /// their files or from one command's output holding both.
    pub fn from_pem(source: &str, cert_pem: &[u8], key_pem: &[u8]) -> Result<Signer> {
        let bad = |what: &str| {
            Error::config(format!("{source}: {what}")).with_remedy(
                "Point certificate and private_key at the PEM files of the certificate uploaded to the app registration (Entra: Certificates & secrets) and its RSA private key.",
            )
        };
        let cert = CertificateDer::pem_slice_iter(cert_pem)
            .next()
            .ok_or_else(|| bad("no CERTIFICATE block"))?
            .map_err(|e| bad(&format!("the certificate is not valid PEM ({e})")))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| bad(&format!("no private key ({e})")))?;
        let key = match &key {
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            _ => return Err(bad("the private key is not an RSA key (RS256 needs one)")),
        }
        .map_err(|e| bad(&format!("the private key cannot sign ({e})")))?;
        Ok(Signer {
            source: source.to_owned(),
            cert,
            key,
        })
    }

    /// The signed client assertion for `client_id` at `token_url` (RFC 7523 §3:
    /// `iss` = `sub` = the client, `aud` = the token endpoint, a fresh `jti`), with the
    /// certificate's thumbprints in the header, by which Microsoft finds the key.
    pub fn client_assertion(&self, client_id: &str, token_url: &str, now: u64) -> Result<Secret> {
        let validity = validity(&self.cert).ok_or_else(|| {
            Error::config(format!(
                "{}: the certificate's validity cannot be read",
                self.source
            ))
        })?;
        if now > validity.1 {
            return Err(Error::config(format!(
                "{}: the certificate expired at {}",
                self.source,
                time(validity.1)
            ))
            .with_remedy(
                "Make a new certificate, upload it to the app registration (Entra: Certificates & secrets > Certificates), and point certificate and private_key at it.",
            ));
        }
        if now + 300 < validity.0 {
            return Err(Error::config(format!(
                "{}: the certificate is valid only from {}; this machine's clock says {}",
                self.source,
                time(validity.0),
                time(now)
            ))
            .with_remedy("Check this machine's clock (timedatectl)."));
        }
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &self.cert);
        let sha256 = ring::digest::digest(&ring::digest::SHA256, &self.cert);
        let header = serde_json::json!({
            "alg": "RS256",
            "typ": "JWT",
            "x5t": B64URL.encode(sha1),
            "x5t#S256": B64URL.encode(sha256),
        });
        let claims = serde_json::json!({
            "aud": token_url,
            "iss": client_id,
            "sub": client_id,
            "jti": jti()?,
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        });
        sign(&self.key, &header, &claims)
    }
}

/// A Google service account's JSON key, as the Cloud console downloads it.
#[derive(serde::Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key: Option<Secret>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

/// A service account's identity and signing key.
pub struct ServiceAccount {
    pub client_email: String,
    pub token_uri: Option<String>,
    key_id: Option<String>,
    key: RsaKeyPair,
}

impl ServiceAccount {
    /// Reads the key's JSON (`source` says where it came from, for messages).
    pub fn from_json(source: &str, json: &[u8]) -> Result<ServiceAccount> {
        let bad = |what: String| {
            Error::config(format!("{source}: {what}")).with_remedy(
                "Point key_file at the JSON key of the service account: Google Cloud console > IAM & Admin > Service accounts > the account > Keys > Add key > Create new key > JSON.",
            )
        };
        let v: serde_json::Value = serde_json::from_slice(json)
            .map_err(|e| bad(format!("not a service account key: not JSON ({e})")))?;
        if let Some(kind) = ["installed", "web"]
            .into_iter()
            .find(|k| v.get(k).is_some())
        {
            return Err(bad(format!(
                "this is an OAuth client's file (\"{kind}\"), not a service account key; an OAuth client is for auth = \"oauth\" and `mailtoken login`"
            )));
        }
        let k: KeyFile = serde_json::from_value(v)
            .map_err(|e| bad(format!("not a service account key ({e})")))?;
        match k.kind.as_deref() {
            Some("service_account") => {}
            Some(other) => {
                return Err(bad(format!(
                    "not a service account key: its type is \"{other}\" (an OAuth client's file has \"installed\" or \"web\")"
                )));
            }
            None => {
                return Err(bad("not a service account key: it has no \"type\"".into()));
            }
        }
        let (Some(client_email), Some(pem)) = (k.client_email, k.private_key) else {
            return Err(bad("the key has no client_email or no private_key".into()));
        };
        let der = PrivateKeyDer::from_pem_slice(pem.expose().as_bytes())
            .map_err(|e| bad(format!("its private_key is not a PEM key ({e})")))?;
        let key = match &der {
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            _ => return Err(bad("its private_key is not an RSA key".into())),
        }
        .map_err(|e| bad(format!("its private_key cannot sign ({e})")))?;
        Ok(ServiceAccount {
            client_email,
            token_uri: k.token_uri,
            key_id: k.private_key_id,
            key,
        })
    }

    /// The JWT bearer grant's assertion (RFC 7523 §2.1, Google's form): the service
    /// account as `iss`, the mailbox to act as as `sub`, for `scope`, at `aud` (the token
    /// endpoint), for at most an hour.
    /// https://developers.google.com/identity/protocols/oauth2/service-account#authorizingrequests
    pub fn assertion(&self, sub: &str, scope: &str, aud: &str, now: u64) -> Result<Secret> {
        let mut header = serde_json::json!({ "alg": "RS256", "typ": "JWT" });
        if let Some(kid) = &self.key_id {
            header["kid"] = kid.clone().into();
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "sub": sub,
            "scope": scope,
            "aud": aud,
            "iat": now,
            "exp": now + 3600,
        });
        sign(&self.key, &header, &claims)
    }
}

/// `header.claims.signature`, RS256 (RFC 7515 §7.1, RFC 7518 §3.3).
fn sign(
    key: &RsaKeyPair,
    header: &serde_json::Value,
    claims: &serde_json::Value,
) -> Result<Secret> {
    let mut jwt = Zeroizing::new(format!(
        "{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string())
    ));
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        jwt.as_bytes(),
        &mut signature,
    )
    .map_err(|_| Error::software("signing the client assertion failed"))?;
    jwt.push('.');
    jwt.push_str(&B64URL.encode(signature));
    Ok(Secret::new(jwt.as_str()))
}

fn jti() -> Result<String> {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| Error::software("no randomness for the assertion's jti"))?;
    Ok(B64URL.encode(b))
}

fn time(t: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t)).to_string()
}

/// Reads a file of the config (`what` names its key). One that holds a secret gets a
/// warning on stderr, at each read, when other users may read it too.
pub fn read_file(path: &Path, what: &str, secret: bool) -> Result<Zeroizing<Vec<u8>>> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::config(format!("{what} {}: {e}", path.display()))
            .with_remedy("Check the path in the config, and that this user may read the file.")
    })?;
    if secret {
        warn_if_readable_by_others(path, what);
    }
    Ok(Zeroizing::new(bytes))
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        let mode = m.permissions().mode() & 0o777;
        if mode & 0o044 != 0 {
            eprintln!(
                "mailtoken: warning: {what} {} has mode {mode:04o}: other users can read it. Run `chmod 600 {}` (or 640 with a group of the services that need it).",
                path.display(),
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path, _: &str) {}

/// The certificate's validity, (notBefore, notAfter) in Unix seconds, read from its DER
/// (RFC 5280 §4.1: Certificate → TBSCertificate → [version], serial, signature,
/// issuer, validity).
pub fn validity(cert: &[u8]) -> Option<(u64, u64)> {
    let (_, tbs, _) = der(cert, 0x30)?; // Certificate
    let (_, tbs, _) = der(tbs, 0x30)?; // TBSCertificate
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = der(rest, 0xa0)?.2; // [0] version
    }
    rest = der(rest, 0x02)?.2; // serialNumber
    rest = der(rest, 0x30)?.2; // signature
    rest = der(rest, 0x30)?.2; // issuer
    let (_, validity, _) = der(rest, 0x30)?;
    let (tag, not_before, after) = der_any(validity)?;
    let from = asn1_time(tag, not_before)?;
    let (tag, not_after, _) = der_any(after)?;
    Some((from, asn1_time(tag, not_after)?))
}

/// One DER element with `tag`: (tag, contents, what follows).
fn der(input: &[u8], tag: u8) -> Option<(u8, &[u8], &[u8])> {
    let e = der_any(input)?;
    (e.0 == tag).then_some(e)
}

fn der_any(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)? as usize;
    let (len, start) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let len = input
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, 2 + n)
    };
    let end = start.checked_add(len)?;
    Some((tag, input.get(start..end)?, input.get(end..)?))
}

/// UTCTime (`YYMMDDHHMMSSZ`, tag 23) or GeneralizedTime (`YYYYMMDDHHMMSSZ`, tag 24).
fn asn1_time(tag: u8, s: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(s).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        23 => {
            let yy: u64 = s.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, s.get(2..)?)
        }
        24 => (s.get(..4)?.parse().ok()?, s.get(4..)?),
        _ => return None,
    };
    let field = |i: usize| -> Option<u64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day, hour, min, sec) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day)? * 86_400 + hour * 3600 + min * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let y = if m <= 2 { y.checked_sub(1)? } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asn1_times_are_read_as_unix_seconds() {
        assert_eq!(asn1_time(23, b"700101000000Z"), Some(0));
        assert_eq!(asn1_time(23, b"261201223000Z"), Some(1_796_164_200));
        assert_eq!(asn1_time(24, b"20261201223000Z"), Some(1_796_164_200));
        assert_eq!(asn1_time(24, b"20000229000000Z"), Some(951_782_400));
        assert_eq!(asn1_time(23, b"261301000000Z"), None);
        assert_eq!(asn1_time(23, b"2612010000"), None);
    }

    #[test]
    fn the_validity_of_a_certificate_is_found_in_its_der() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["app".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2026, 1, 2);
        params.not_after = rcgen::date_time_ymd(2051, 6, 30);
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(validity(cert.der()), Some((1_767_312_000, 2_571_696_000)));
        assert_eq!(validity(b"\x30\x03\x02\x01"), None);
    }
}
