//! HTTP proxies for token requests: the `proxy` key of the config (an account's, else
//! the top level's) and then the environment's `HTTPS_PROXY`, `HTTP_PROXY`,
//! `ALL_PROXY` and `NO_PROXY` (upper or lower case, as curl reads them). Only `http://`
//! proxies: https endpoints go through them with CONNECT (RFC 9110 §9.3.6). A proxy's
//! credentials (in its URL) are used and never shown.

use crate::error::{Error, Result};
use url::Url;

/// What the config says about proxies for an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// `proxy = "none"`: straight to the provider, whatever the environment says.
    Direct,
    Via(Url),
}

impl Setting {
    /// A `proxy` value of the config; the error says what is wrong with it.
    pub fn parse(text: &str) -> std::result::Result<Setting, String> {
        if text.trim().eq_ignore_ascii_case("none") {
            return Ok(Setting::Direct);
        }
        proxy_url(text).map(Setting::Via)
    }
}

/// The way to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The proxy, credentials included; `None`: direct.
    pub proxy: Option<Url>,
    /// Where the choice came from: `the config`, `HTTPS_PROXY`, ...
    pub source: &'static str,
}

impl Route {
    /// `http://proxy.corp:3128 (from HTTPS_PROXY)`, or `direct`: never credentials.
    pub fn shown(&self) -> String {
        match &self.proxy {
            Some(p) => format!("the HTTP proxy {} (from {})", redact(p), self.source),
            None => format!(
                "direct (no proxy{})",
                match self.source {
                    "" => String::new(),
                    s => format!(": {s}"),
                }
            ),
        }
    }

    /// The proxy's password, to keep out of any message that might quote it.
    pub fn password(&self) -> Option<&str> {
        self.proxy.as_ref().and_then(Url::password)
    }
}

/// `url` without its user name and password.
pub fn redact(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.as_str().trim_end_matches('/').to_owned()
}

/// An `http://` proxy URL (host required; a port defaults to 80, as curl's does).
fn proxy_url(text: &str) -> std::result::Result<Url, String> {
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| format!("is not a proxy URL ({e})"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "uses {}://: mailtoken speaks to http:// proxies only (https endpoints go through them with CONNECT)",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    Ok(url)
}

/// How a request to `target` goes, by the account's `setting` and the environment.
pub fn route(setting: Option<&Setting>, target: &Url) -> Result<Route> {
    route_with(setting, target, &|name| std::env::var(name).ok())
}

fn route_with(
    setting: Option<&Setting>,
    target: &Url,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Route> {
    let host = target.host_str().unwrap_or_default();
    let var = |upper: &'static str| -> Option<(&'static str, String)> {
        [upper, lower_case(upper)]
            .into_iter()
            .find_map(|n| env(n).filter(|v| !v.trim().is_empty()).map(|v| (upper, v)))
    };
    if let Some((_, list)) = var("NO_PROXY")
        && bypassed(&list, host)
    {
        return Ok(Route {
            proxy: None,
            source: "NO_PROXY",
        });
    }
    match setting {
        Some(Setting::Direct) => {
            return Ok(Route {
                proxy: None,
                source: "proxy = \"none\" in the config",
            });
        }
        Some(Setting::Via(u)) => {
            return Ok(Route {
                proxy: Some(u.clone()),
                source: "the config",
            });
        }
        None => {}
    }
    let first = if target.scheme() == "https" {
        "HTTPS_PROXY"
    } else {
        "HTTP_PROXY"
    };
    let Some((name, value)) = var(first).or_else(|| var("ALL_PROXY")) else {
        return Ok(Route {
            proxy: None,
            source: "",
        });
    };
    let url = proxy_url(value.trim()).map_err(|why| {
        Error::config(format!(
            "the environment's {name} {why}"
        ))
        .with_remedy(format!(
            "Set {name} to http://HOST:PORT (credentials may go in it: http://USER:PASSWORD@HOST:PORT), or set proxy in the config, which wins."
        ))
    })?;
    Ok(Route {
        proxy: Some(url),
        source: name,
    })
}

fn lower_case(upper: &'static str) -> &'static str {
    match upper {
        "NO_PROXY" => "no_proxy",
        "HTTPS_PROXY" => "https_proxy",
        "HTTP_PROXY" => "http_proxy",
        _ => "all_proxy",
    }
}

/// `NO_PROXY`: `*`, or host names and domains (`.corp.example` or `corp.example`,
/// both matching subdomains), and IP addresses, comma-separated; a `:port` is ignored.
fn bypassed(list: &str, host: &str) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let entry = entry.to_ascii_lowercase();
            let name = match entry.rsplit_once(':') {
                Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') => h,
                _ => entry.as_str(),
            };
            let name = name.trim_start_matches("*.").trim_start_matches('.');
            let name = name.trim_start_matches('[').trim_end_matches(']');
            host == name || host.ends_with(&format!(".{name}"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn the_environment_picks_the_proxy_by_the_endpoints_scheme() {
        let e = env(&[
            ("https_proxy", "http://s.example:3128"),
            ("HTTP_PROXY", "plain.example:8080"),
        ]);
        let r = route_with(None, &url("https://login.example/token"), &e).unwrap();
        assert_eq!(r.proxy.unwrap().as_str(), "http://s.example:3128/");
        assert_eq!(r.source, "HTTPS_PROXY");
        let r = route_with(None, &url("http://127.0.0.1:9/token"), &e).unwrap();
        assert_eq!(r.proxy.unwrap().as_str(), "http://plain.example:8080/");
        let e = env(&[("ALL_PROXY", "http://all.example:1")]);
        let r = route_with(None, &url("https://x.example/"), &e).unwrap();
        assert_eq!(r.source, "ALL_PROXY");
        let r = route_with(None, &url("https://x.example/"), &env(&[])).unwrap();
        assert_eq!(r.proxy, None);
    }

    #[test]
    fn the_config_wins_and_no_proxy_bypasses_both() {
        let e = env(&[
            ("HTTPS_PROXY", "http://env.example:1"),
            ("NO_PROXY", "localhost, .corp.example,10.0.0.1:443"),
        ]);
        let mine = Setting::parse("http://user:pw@mine.example:3128").unwrap();
        let r = route_with(Some(&mine), &url("https://login.example/"), &e).unwrap();
        assert_eq!(r.source, "the config");
        assert_eq!(
            r.shown(),
            "the HTTP proxy http://mine.example:3128 (from the config)"
        );
        assert_eq!(r.password(), Some("pw"));
        let r = route_with(Some(&Setting::Direct), &url("https://login.example/"), &e).unwrap();
        assert_eq!(r.proxy, None);
        for bypass in [
            "https://id.corp.example/t",
            "https://corp.example/t",
            "http://localhost:8/t",
            "https://10.0.0.1/t",
        ] {
            let r = route_with(Some(&mine), &url(bypass), &e).unwrap();
            assert_eq!((r.proxy, r.source), (None, "NO_PROXY"), "{bypass}");
        }
        assert!(!bypassed("corp.example", "notcorp.example"));
        assert!(bypassed("*", "anything"));
    }

    #[test]
    fn only_http_proxies_are_taken_and_a_bad_one_in_the_environment_is_named() {
        assert!(
            Setting::parse("socks5://x:1")
                .unwrap_err()
                .contains("http:// proxies only")
        );
        assert!(Setting::parse("http://").is_err());
        let e = env(&[("HTTPS_PROXY", "https://p.example:443")]);
        let err = route_with(None, &url("https://x.example/"), &e).unwrap_err();
        assert!(
            err.message
                .contains("the environment's HTTPS_PROXY uses https://"),
            "{err}"
        );
    }
}
