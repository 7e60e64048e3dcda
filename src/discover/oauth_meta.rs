//! An authorization server's metadata: RFC 8414 (`/.well-known/oauth-authorization-server`)
//! and OpenID Connect Discovery 1.0 (`/.well-known/openid-configuration`), which share
//! the field names. Pure: where to ask, and what the answer means.

use serde::Deserialize;
use url::Url;

/// The endpoints `add` writes into a custom OAuth account.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoints {
    pub issuer: String,
    pub auth_url: Url,
    pub token_url: Url,
    pub device_url: Option<Url>,
    pub revoke_url: Option<Url>,
    pub scopes_supported: Vec<String>,
}

#[derive(Deserialize)]
struct Raw {
    issuer: String,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    device_authorization_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
    #[serde(default)]
    scopes_supported: Vec<String>,
}

/// The issuer as a URL: autoconfig files often name only its host
/// (`<issuer>accounts.google.com</issuer>`), which means `https://HOST`.
pub fn issuer_url(issuer: &str) -> Result<Url, String> {
    let text = if issuer.contains("://") {
        issuer.to_owned()
    } else {
        format!("https://{issuer}")
    };
    let u = Url::parse(&text).map_err(|e| format!("issuer {issuer:?} is not a URL: {e}"))?;
    check_scheme(&u).map_err(|e| format!("issuer {issuer:?}: {e}"))?;
    if u.query().is_some() || u.fragment().is_some() {
        // RFC 8414 §2: "no query or fragment components".
        return Err(format!(
            "issuer {issuer:?} has a query or fragment (RFC 8414 §2)"
        ));
    }
    Ok(u)
}

/// https, or http to a loopback address (a server on this machine; nothing crosses a
/// network, as with RFC 8252 §7.3's loopback redirect).
pub fn check_scheme(u: &Url) -> Result<(), String> {
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback(u) => Ok(()),
        s => Err(format!(
            "{s}:// is not allowed; an authorization server is reached over https"
        )),
    }
}

fn loopback(u: &Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Where to ask, in order: OpenID Connect's location (the issuer's path with
/// `/.well-known/openid-configuration` appended, OIDC Discovery §4), then RFC 8414 §3's
/// (the well-known part inserted between host and path).
pub fn metadata_urls(issuer: &Url) -> Vec<Url> {
    let path = issuer.path().trim_end_matches('/');
    let mut base = issuer.clone();
    base.set_query(None);
    let mut out = Vec::new();
    let mut oidc = base.clone();
    oidc.set_path(&format!("{path}/.well-known/openid-configuration"));
    out.push(oidc);
    let mut rfc = base;
    rfc.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    out.push(rfc);
    out
}

/// Reads a metadata document fetched for `issuer`. RFC 8414 §3.3: the `issuer` in it must
/// be the one asked for, or the document is not to be used (a mix-up or an attack).
pub fn parse(body: &[u8], issuer: &Url) -> Result<Endpoints, String> {
    let raw: Raw = serde_json::from_slice(body).map_err(|e| {
        format!(
            "not an authorization server's metadata: {}",
            crate::store::json_error(&e)
        )
    })?;
    let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
    if !same(&raw.issuer, issuer.as_str()) {
        return Err(format!(
            "it names the issuer {:?}, not {:?} (RFC 8414 §3.3: such metadata must not be used)",
            raw.issuer,
            issuer.as_str()
        ));
    }
    let url = |field: &str, v: Option<String>| -> Result<Option<Url>, String> {
        let Some(v) = v else { return Ok(None) };
        let u = Url::parse(&v).map_err(|e| format!("{field} is not a URL: {e}"))?;
        check_scheme(&u).map_err(|e| format!("{field}: {e}"))?;
        Ok(Some(u))
    };
    let need = |field: &str, v: Option<Url>| v.ok_or_else(|| format!("it has no {field}"));
    Ok(Endpoints {
        issuer: raw.issuer,
        auth_url: need(
            "authorization_endpoint",
            url("authorization_endpoint", raw.authorization_endpoint)?,
        )?,
        token_url: need("token_endpoint", url("token_endpoint", raw.token_endpoint)?)?,
        device_url: url(
            "device_authorization_endpoint",
            raw.device_authorization_endpoint,
        )?,
        revoke_url: url("revocation_endpoint", raw.revocation_endpoint)?,
        scopes_supported: raw.scopes_supported,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_spellings() {
        assert_eq!(
            issuer_url("accounts.google.com").unwrap().as_str(),
            "https://accounts.google.com/"
        );
        assert!(issuer_url("http://127.0.0.1:3000").is_ok());
        assert!(issuer_url("http://auth.example.com").is_err());
        assert!(issuer_url("https://a.example/?x=1").is_err());
    }

    #[test]
    fn where_to_ask() {
        let u = issuer_url("https://login.example.com/tenant1").unwrap();
        let got: Vec<String> = metadata_urls(&u).iter().map(|u| u.to_string()).collect();
        assert_eq!(
            got,
            [
                "https://login.example.com/tenant1/.well-known/openid-configuration",
                "https://login.example.com/.well-known/oauth-authorization-server/tenant1",
            ]
        );
        let root = issuer_url("accounts.google.com").unwrap();
        assert_eq!(
            metadata_urls(&root)[1].as_str(),
            "https://accounts.google.com/.well-known/oauth-authorization-server"
        );
    }

    #[test]
    fn metadata_is_checked() {
        let iss = issuer_url("https://as.example").unwrap();
        let ok = br#"{"issuer":"https://as.example","authorization_endpoint":"https://as.example/auth",
            "token_endpoint":"https://as.example/token","device_authorization_endpoint":"https://as.example/device",
            "scopes_supported":["openid","offline_access"]}"#;
        let e = parse(ok, &iss).unwrap();
        assert_eq!(e.token_url.as_str(), "https://as.example/token");
        assert!(e.revoke_url.is_none());
        assert_eq!(e.scopes_supported.len(), 2);
        let other = br#"{"issuer":"https://evil.example","authorization_endpoint":"https://as.example/a","token_endpoint":"https://as.example/t"}"#;
        assert!(parse(other, &iss).unwrap_err().contains("§3.3"));
        let no_token =
            br#"{"issuer":"https://as.example","authorization_endpoint":"https://as.example/a"}"#;
        assert!(
            parse(no_token, &iss)
                .unwrap_err()
                .contains("token_endpoint")
        );
        let http = br#"{"issuer":"https://as.example","authorization_endpoint":"http://as.example/a","token_endpoint":"https://as.example/t"}"#;
        assert!(parse(http, &iss).is_err());
        // A secret-looking value in a wrong-typed field is not repeated.
        let e = parse(br#"{"issuer": 12345678}"#, &iss).unwrap_err();
        assert!(!e.contains("12345678"), "{e}");
    }
}
