//! From an address to its provider and servers, the way Thunderbird finds them, each
//! finding with where it came from: mailtoken's own table of provider domains, the
//! domain's MX records (Google Workspace or Microsoft 365 behind a custom domain),
//! Thunderbird's autoconfig files (the domain's own, then the ISPDB) with their OAuth
//! hints and the issuer's metadata (RFC 8414 / OpenID Connect Discovery), and RFC 6186
//! SRV records. Used by `mailtoken add`; changes nothing anywhere.

pub mod autoconfig;
pub mod dns;
pub mod domains;
pub mod oauth_meta;

use crate::error::{Error, Result};
use crate::server::{Proto, Server, Tls};
use autoconfig::Autoconfig;
use dns::{Answer, Dns};
use domains::Hit;
use oauth_meta::Endpoints;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

pub struct Options {
    /// `--dns HOST:PORT`: this server answers every name instead of the system's.
    pub dns: Option<SocketAddr>,
    /// Trusted beside the system's authorities for the HTTPS fetches (`--ca-file`).
    pub ca_file: Option<PathBuf>,
    /// Each DNS query and each HTTPS fetch.
    pub timeout: Duration,
    /// Ask Thunderbird's ISPDB (autoconfig.thunderbird.net) when the domain has no
    /// autoconfig file of its own.
    pub ispdb: bool,
}

/// A value and where it came from, in words for people.
#[derive(Debug, Clone)]
pub struct Found<T> {
    pub value: T,
    pub source: String,
}

/// OAuth endpoints for a provider without a preset, and the scopes to ask for.
#[derive(Debug, Clone)]
pub struct CustomOAuth {
    pub endpoints: Endpoints,
    pub scopes: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Discovery {
    pub address: String,
    pub domain: String,
    /// A built-in preset (its servers and endpoints need not be written).
    pub preset: Option<Found<Hit>>,
    /// OAuth for a provider without a preset (autoconfig, then issuer metadata).
    pub oauth: Option<Found<CustomOAuth>>,
    /// The servers say they take a password (autoconfig), or nothing says how they
    /// take a login (SRV records only).
    pub password: bool,
    pub imap: Option<Found<Server>>,
    pub pop: Option<Found<Server>>,
    pub smtp: Option<Found<Server>>,
    /// The login name the autoconfig file gives, when it is not the address.
    pub user: Option<Found<String>>,
    /// Every lookup made, with what it gave: printed as it goes, and in the message
    /// when nothing was found.
    pub tried: Vec<String>,
}

impl Discovery {
    pub fn server(&self, p: Proto) -> Option<&Found<Server>> {
        match p {
            Proto::Imap => self.imap.as_ref(),
            Proto::Pop => self.pop.as_ref(),
            Proto::Smtp => self.smtp.as_ref(),
        }
    }

    fn slot(&mut self, p: Proto) -> &mut Option<Found<Server>> {
        match p {
            Proto::Imap => &mut self.imap,
            Proto::Pop => &mut self.pop,
            Proto::Smtp => &mut self.smtp,
        }
    }

    /// Anything to build an account from.
    pub fn found_anything(&self) -> bool {
        self.preset.is_some() || self.imap.is_some() || self.smtp.is_some() || self.pop.is_some()
    }
}

/// The domain of an address, checked: `add` refuses what is not `local@domain`.
pub fn split_address(address: &str) -> Result<(String, String)> {
    let bad = || {
        Error::usage(format!("{address:?} is not a mail address"))
            .with_remedy("Give the whole address, as in `mailtoken add alice@example.com`.")
    };
    let (local, domain) = address.rsplit_once('@').ok_or_else(bad)?;
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if local.is_empty()
        || local.chars().any(|c| c.is_whitespace() || c.is_control())
        || !autoconfig::valid_host(&domain)
        || !domain.contains('.')
    {
        return Err(bad());
    }
    Ok((local.to_owned(), domain))
}

/// Looks the address up. `say` gets each step's line as it happens.
pub async fn discover(
    address: &str,
    opts: &Options,
    say: &mut dyn FnMut(&str),
) -> Result<Discovery> {
    let (_, domain) = split_address(address)?;
    let mut d = Discovery {
        address: address.to_owned(),
        domain: domain.clone(),
        ..Default::default()
    };
    let mut note = |d: &mut Discovery, line: String| {
        say(&line);
        d.tried.push(line);
    };
    if let Some(hit) = domains::by_domain(&domain) {
        note(
            &mut d,
            format!(
                "{domain}: {} (mailtoken's table of provider domains)",
                hit.provider.title
            ),
        );
        d.preset = Some(Found {
            value: hit,
            source: "mailtoken's table of provider domains".into(),
        });
        return Ok(d);
    }
    let dns = Arc::new(Dns::new(opts.dns, opts.timeout)?);
    match dns.mx(&domain).await {
        Answer::Records(mx) => {
            let list: Vec<&str> = mx.iter().map(|(_, h)| h.as_str()).collect();
            if let Some((host, hit)) = mx
                .iter()
                .find_map(|(_, h)| domains::by_mx(h, &domain).map(|hit| (h, hit)))
            {
                let source = format!("the MX record of {domain} names {host}");
                note(
                    &mut d,
                    format!("{domain}: {} ({source})", hit.provider.title),
                );
                d.preset = Some(Found { value: hit, source });
                return Ok(d);
            }
            note(
                &mut d,
                format!(
                    "MX records of {domain}: {} (no provider mailtoken knows)",
                    list.join(", ")
                ),
            );
        }
        Answer::None => note(&mut d, format!("MX records of {domain}: none")),
        Answer::Failed(e) => note(
            &mut d,
            format!(
                "MX records of {domain}: no answer from {} ({e})",
                dns.describe
            ),
        ),
    }
    let http = http_client(opts, &dns)?;
    let mut urls = vec![
        format!("https://autoconfig.{domain}/mail/config-v1.1.xml"),
        format!("https://{domain}/.well-known/autoconfig/mail/config-v1.1.xml"),
    ];
    if opts.ispdb {
        urls.push(format!("https://autoconfig.thunderbird.net/v1.1/{domain}"));
    }
    let mut ac: Option<(Autoconfig, String)> = None;
    for u in urls {
        match fetch(&http, &u, autoconfig::MAX_LEN).await {
            Ok(body) => match autoconfig::parse(&String::from_utf8_lossy(&body), address) {
                Ok(a) => {
                    note(
                        &mut d,
                        format!("autoconfig {u}: {} server(s)", a.servers.len()),
                    );
                    ac = Some((a, u));
                    break;
                }
                Err(e) => note(&mut d, format!("autoconfig {u}: not usable: {e}")),
            },
            Err(e) => note(&mut d, format!("autoconfig {u}: {e}")),
        }
    }
    if let Some((a, url)) = ac {
        let source = format!("the autoconfig file {url}");
        let oauth_servers = a.servers.iter().any(|s| s.oauth());
        if let (true, Some(o)) = (oauth_servers, &a.oauth2) {
            if let Some(hit) = o.issuer.as_deref().and_then(domains::by_issuer) {
                let why = format!(
                    "{source} names the OAuth issuer {}",
                    o.issuer.as_deref().unwrap_or("")
                );
                note(&mut d, format!("{domain}: {} ({why})", hit.provider.title));
                d.preset = Some(Found {
                    value: hit,
                    source: why,
                });
                return Ok(d);
            }
            match custom_oauth(&http, o, &mut |l| note(&mut d, l)).await {
                Some(c) => {
                    d.oauth = Some(Found {
                        value: c.0,
                        source: c.1,
                    })
                }
                None => note(
                    &mut d,
                    "the file offers OAuth, but without endpoints mailtoken can use".into(),
                ),
            }
        }
        // Per protocol, the first server of the file that takes the login chosen.
        for p in Proto::ALL {
            let pick = a.servers.iter().filter(|s| s.proto == p).find(|s| {
                if d.oauth.is_some() {
                    s.oauth()
                } else {
                    s.password()
                }
            });
            if let Some(s) = pick {
                *d.slot(p) = Some(Found {
                    value: s.server.clone(),
                    source: source.clone(),
                });
                if let Some(u) = &s.username
                    && u != address
                    && d.user.is_none()
                {
                    d.user = Some(Found {
                        value: u.clone(),
                        source: source.clone(),
                    });
                }
            }
        }
        d.password = d.oauth.is_none()
            && a.servers.iter().any(|s| s.password())
            && (d.imap.is_some() || d.smtp.is_some() || d.pop.is_some());
    }
    // RFC 6186 §3.1-3.3 and RFC 8314 §5.1: implicit TLS first, then STARTTLS.
    let services = [
        (Proto::Imap, "_imaps._tcp", Tls::Implicit),
        (Proto::Imap, "_imap._tcp", Tls::Starttls),
        (Proto::Smtp, "_submissions._tcp", Tls::Implicit),
        (Proto::Smtp, "_submission._tcp", Tls::Starttls),
        (Proto::Pop, "_pop3s._tcp", Tls::Implicit),
        (Proto::Pop, "_pop3._tcp", Tls::Starttls),
    ];
    let mut srv_found = false;
    for (proto, label, tls) in services {
        if d.server(proto).is_some() {
            continue;
        }
        let name = format!("{label}.{domain}");
        match dns.srv(&name).await {
            Answer::Records(r) => {
                let s = &r[0];
                let source = format!("the SRV record {name} (RFC 6186)");
                note(
                    &mut d,
                    format!("{} server: {}:{} ({source})", proto.title(), s.host, s.port),
                );
                *d.slot(proto) = Some(Found {
                    value: Server {
                        host: s.host.clone().into(),
                        port: s.port,
                        tls,
                    },
                    source,
                });
                srv_found = true;
            }
            Answer::None => note(&mut d, format!("SRV {name}: none")),
            Answer::Failed(e) => note(&mut d, format!("SRV {name}: no answer ({e})")),
        }
    }
    // SRV records say where, not how: RFC 6186 leaves the login to the client, and
    // without OAuth endpoints that is a password (an app password, in the keyring).
    if srv_found && d.oauth.is_none() {
        d.password = true;
    }
    Ok(d)
}

/// The issuer's endpoints: its metadata (RFC 8414 / OIDC Discovery), else the file's own
/// `authURL` and `tokenURL`. The scopes are the file's.
async fn custom_oauth(
    http: &reqwest::Client,
    o: &autoconfig::AcOAuth,
    note: &mut dyn FnMut(String),
) -> Option<(CustomOAuth, String)> {
    let mut scopes = o.scopes.clone();
    if let Some(issuer) = &o.issuer {
        match oauth_meta::issuer_url(issuer) {
            Ok(iss) => {
                for u in oauth_meta::metadata_urls(&iss) {
                    match fetch(http, u.as_str(), 256 * 1024).await {
                        Ok(body) => match oauth_meta::parse(&body, &iss) {
                            Ok(e) => {
                                note(format!("OAuth endpoints: {u} (the issuer's metadata)"));
                                // A refresh token needs offline_access where the server
                                // knows it (OpenID Connect Core §11).
                                if e.scopes_supported.iter().any(|s| s == "offline_access")
                                    && !scopes.iter().any(|s| s == "offline_access")
                                {
                                    scopes.push("offline_access".into());
                                }
                                let source = format!("{u}");
                                return Some((
                                    CustomOAuth {
                                        endpoints: e,
                                        scopes,
                                    },
                                    source,
                                ));
                            }
                            Err(e) => note(format!("OAuth metadata {u}: not usable: {e}")),
                        },
                        Err(e) => note(format!("OAuth metadata {u}: {e}")),
                    }
                }
            }
            Err(e) => note(e),
        }
    }
    let (a, t) = (o.auth_url.as_deref()?, o.token_url.as_deref()?);
    let parse = |s: &str| {
        Url::parse(s)
            .ok()
            .filter(|u| oauth_meta::check_scheme(u).is_ok())
    };
    let endpoints = Endpoints {
        issuer: o.issuer.clone().unwrap_or_default(),
        auth_url: parse(a)?,
        token_url: parse(t)?,
        device_url: None,
        revoke_url: None,
        scopes_supported: Vec::new(),
    };
    note("OAuth endpoints: the autoconfig file's authURL and tokenURL".into());
    Some((
        CustomOAuth { endpoints, scopes },
        "the autoconfig file's authURL and tokenURL".into(),
    ))
}

fn http_client(opts: &Options, dns: &Arc<Dns>) -> Result<reqwest::Client> {
    let tls = crate::tls::client_config(opts.ca_file.as_deref())?;
    let mut b = reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .timeout(opts.timeout)
        .connect_timeout(opts.timeout)
        // A few redirects, to https only: autoconfig hosts do move their files.
        .redirect(reqwest::redirect::Policy::custom(|a| {
            if a.previous().len() >= 3 || a.url().scheme() != "https" {
                a.stop()
            } else {
                a.follow()
            }
        }))
        .user_agent(concat!("mailtoken/", env!("CARGO_PKG_VERSION")));
    // The proxy the environment names (HTTPS_PROXY, NO_PROXY), chosen as for token
    // requests; reqwest's own reading of the environment is off.
    b = b.no_proxy();
    if let Ok(route) = crate::proxy::route(
        None,
        &Url::parse("https://autoconfig.invalid/").expect("url"),
    ) && let Some(p) = route.proxy
        && let Ok(proxy) = reqwest::Proxy::https(p.as_str())
    {
        let proxy = proxy.no_proxy(reqwest::NoProxy::from_env());
        b = b.proxy(proxy);
    }
    if dns.custom {
        b = b.dns_resolver(Arc::new(dns::HttpResolver(dns.clone())));
    }
    b.build()
        .map_err(|e| Error::software(format!("HTTP client: {}", crate::error::chain(&e))))
}

/// The body of a 200 answer, at most `limit` bytes; anything else is a short reason.
async fn fetch(
    http: &reqwest::Client,
    url: &str,
    limit: usize,
) -> std::result::Result<Vec<u8>, String> {
    let mut resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| short_http_error(&e))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| short_http_error(&e))? {
        body.extend_from_slice(&chunk);
        if body.len() > limit {
            return Err(format!("longer than {} KiB", limit / 1024));
        }
    }
    Ok(body)
}

/// reqwest's error chain says everything three times; the innermost cause is the news.
fn short_http_error(e: &reqwest::Error) -> String {
    let mut src: &dyn std::error::Error = e;
    while let Some(s) = src.source() {
        src = s;
    }
    if e.is_timeout() {
        "no answer in time".to_owned()
    } else if e.is_connect() {
        format!("cannot connect ({src})")
    } else {
        src.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            split_address("Alice@Example.COM").unwrap(),
            ("Alice".into(), "example.com".into())
        );
        assert_eq!(split_address("a@b@c.example").unwrap().1, "c.example");
        for bad in [
            "alice",
            "@example.com",
            "a@",
            "a b@example.com",
            "a@localhost",
            "a@ex ample.com",
        ] {
            assert!(split_address(bad).is_err(), "{bad}");
        }
    }
}
