//! DNS for `add`: MX and SRV records, and the addresses of the hosts it fetches
//! autoconfig files from. The system's resolver (`/etc/resolv.conf`) unless `--dns
//! HOST:PORT` names another one, which then answers every name `add` looks up, the
//! HTTPS fetches' included (split-horizon networks; the tests' dnsmasq).

use crate::error::{Error, Result};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

pub struct Dns {
    resolver: TokioResolver,
    /// For messages: "the system's resolver", "127.0.0.1:5353".
    pub describe: String,
    /// `--dns` was given: the HTTPS fetches resolve through it too.
    pub custom: bool,
}

/// One SRV answer (RFC 2782): the target host and port.
#[derive(Debug, Clone, PartialEq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub host: String,
    pub port: u16,
}

/// What a lookup found: records, none (the name or the type does not exist), or a
/// failure (no answer, a refusal), which is worth telling apart in messages.
pub enum Answer<T> {
    Records(Vec<T>),
    None,
    Failed(String),
}

impl Answer<RData> {
    /// The records made into `T`s by `f`; none left is `None`, as no records were.
    fn then<T>(self, f: impl FnOnce(Vec<RData>) -> Vec<T>) -> Answer<T> {
        match self {
            Answer::Records(r) => match f(r) {
                v if v.is_empty() => Answer::None,
                v => Answer::Records(v),
            },
            Answer::None => Answer::None,
            Answer::Failed(e) => Answer::Failed(e),
        }
    }
}

impl Dns {
    pub fn new(at: Option<SocketAddr>, timeout: Duration) -> Result<Dns> {
        let mut b = match at {
            Some(addr) => {
                let conn = |mut c: ConnectionConfig| {
                    c.port = addr.port();
                    c
                };
                let ns = NameServerConfig::new(
                    addr.ip(),
                    true,
                    vec![conn(ConnectionConfig::udp()), conn(ConnectionConfig::tcp())],
                );
                TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, vec![], vec![ns]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio().map_err(|e| {
                Error::unavailable(format!("cannot read the system's DNS settings: {e}"))
                    .with_remedy("Name a DNS server with --dns HOST:PORT.")
            })?,
        };
        let o = b.options_mut();
        o.timeout = timeout;
        o.attempts = 2;
        // Names are asked as given (they are whole domains), never with a search suffix.
        o.ndots = 0;
        let resolver = b
            .build()
            .map_err(|e| Error::software(format!("DNS resolver: {e}")))?;
        Ok(Dns {
            resolver,
            describe: match at {
                Some(a) => format!("the DNS server {a}"),
                None => "the system's DNS resolver".into(),
            },
            custom: at.is_some(),
        })
    }

    async fn records(&self, name: &str, kind: RecordType) -> Answer<RData> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match self.resolver.lookup(fqdn.as_str(), kind).await {
            Ok(l) => Answer::Records(l.answers().iter().map(|r| r.data.clone()).collect()),
            Err(e) if e.is_no_records_found() => Answer::None,
            Err(e) => Answer::Failed(e.to_string()),
        }
    }

    /// The mail exchangers of `domain`, most preferred first.
    pub async fn mx(&self, domain: &str) -> Answer<(u16, String)> {
        self.records(domain, RecordType::MX).await.then(|r| {
            let mut v: Vec<(u16, String)> = r
                .into_iter()
                .filter_map(|d| match d {
                    RData::MX(mx) => Some((mx.preference, name(&mx.exchange.to_ascii()))),
                    _ => None,
                })
                .collect();
            v.sort();
            v
        })
    }

    /// The SRV records of `name` (`_imaps._tcp.example.com`) in the order of RFC 2782:
    /// lowest priority first, then highest weight (a client has no load to spread).
    /// A lone target of "." means the service is decidedly not offered (RFC 2782,
    /// RFC 6186 §3.4): `None`.
    pub async fn srv(&self, name_: &str) -> Answer<Srv> {
        self.records(name_, RecordType::SRV).await.then(|r| {
            let mut v: Vec<Srv> = r
                .into_iter()
                .filter_map(|d| match d {
                    RData::SRV(s) => Some(Srv {
                        priority: s.priority,
                        weight: s.weight,
                        host: name(&s.target.to_ascii()),
                        port: s.port,
                    }),
                    _ => None,
                })
                .collect();
            v.sort_by_key(|s| (s.priority, std::cmp::Reverse(s.weight)));
            v.retain(|s| !s.host.is_empty() && s.port != 0);
            v
        })
    }

    pub async fn ips(&self, host: &str) -> std::result::Result<Vec<IpAddr>, String> {
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        self.resolver
            .lookup_ip(fqdn.as_str())
            .await
            .map(|l| l.iter().collect())
            .map_err(|e| {
                if e.is_no_records_found() {
                    format!("{host} does not exist in DNS")
                } else {
                    e.to_string()
                }
            })
    }
}

/// A name as DNS gives it, without the root's dot; the root itself is "".
fn name(n: &str) -> String {
    n.trim_end_matches('.').to_ascii_lowercase()
}

/// reqwest's name resolution through `--dns`, so that an autoconfig host is looked up
/// where its MX and SRV records were.
pub struct HttpResolver(pub Arc<Dns>);

impl reqwest::dns::Resolve for HttpResolver {
    fn resolve(&self, host: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let dns = self.0.clone();
        let host = host.as_str().to_owned();
        Box::pin(async move {
            let ips = dns
                .ips(&host)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}
