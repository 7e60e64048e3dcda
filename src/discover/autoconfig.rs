//! Thunderbird's autoconfig file (`config-v1.1.xml`): the servers of a mail domain, how
//! to log in to each, and for OAuth the issuer and endpoints. Format:
//! <https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat>, now
//! draft-ietf-mailmaint-autoconfig (§4, "Config file format"). Pure: the text in, the
//! findings out; the fetching is in `mod.rs`.
//!
//! Only what mailtoken can use is read: `incomingServer` of type `imap` and `pop3`,
//! `outgoingServer` of type `smtp`, their `hostname`, `port`, `socketType`, `username`
//! and `authentication`, and the `oAuth2` element. Everything else (webmail, addressbook,
//! documentation, unknown elements) is passed over, as Thunderbird does.

use crate::server::{Proto, Server, Tls};
use quick_xml::events::Event;
use std::borrow::Cow;

/// Anything longer is not an autoconfig file (the ISPDB's largest is a few KiB).
pub const MAX_LEN: usize = 256 * 1024;

#[derive(Debug, Default, PartialEq)]
pub struct Autoconfig {
    /// `emailProvider`'s `displayName`, or its `id`.
    pub provider_name: Option<String>,
    /// The domains the file says it is for.
    pub domains: Vec<String>,
    /// In the file's order, which is its order of preference.
    pub servers: Vec<AcServer>,
    pub oauth2: Option<AcOAuth>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AcServer {
    pub proto: Proto,
    pub server: Server,
    /// The user name with the placeholders filled in.
    pub username: Option<String>,
    /// The file's `authentication` values, in order (`OAuth2`, `password-cleartext`, ...).
    pub auth: Vec<String>,
}

impl AcServer {
    pub fn oauth(&self) -> bool {
        self.auth.iter().any(|a| a.eq_ignore_ascii_case("OAuth2"))
    }

    /// A password the user types (plain over TLS, or CRAM-MD5): an app password here.
    pub fn password(&self) -> bool {
        self.auth.is_empty()
            || self.auth.iter().any(|a| {
                a.eq_ignore_ascii_case("password-cleartext")
                    || a.eq_ignore_ascii_case("password-encrypted")
                    || a.eq_ignore_ascii_case("plain")
            })
    }
}

/// The `oAuth2` element (Thunderbird's extension, ISPDB files carry it).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AcOAuth {
    /// A host name (`accounts.google.com`) or an issuer URL.
    pub issuer: Option<String>,
    pub scopes: Vec<String>,
    pub auth_url: Option<String>,
    pub token_url: Option<String>,
}

/// Reads an autoconfig file for `address` (for the `%EMAIL...%` placeholders). An error
/// names what is wrong and where, never more of the file than the element's name.
pub fn parse(text: &str, address: &str) -> Result<Autoconfig, String> {
    if text.len() > MAX_LEN {
        return Err(format!("longer than {} KiB", MAX_LEN / 1024));
    }
    let mut reader = quick_xml::Reader::from_str(text);
    let mut path: Vec<String> = Vec::new();
    let mut out = Autoconfig::default();
    let mut current: Option<Partial> = None;
    let mut oauth: Option<AcOAuth> = None;
    let mut text_buf = String::new();
    let mut saw_root = false;
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| format!("not valid XML at byte {}: {e}", reader.error_position()))?;
        match ev {
            Event::Start(e) => {
                let name = e.local_name().as_ref().to_owned();
                if path.is_empty() {
                    if name != "clientConfig" {
                        return Err(format!(
                            "the root element is <{}>, not <clientConfig>",
                            shorten(&name)
                        ));
                    }
                    saw_root = true;
                }
                if path.len() > 16 {
                    return Err("elements nested too deeply".into());
                }
                let in_provider = path.len() == 2 && path[1] == "emailProvider";
                if in_provider && (name == "incomingServer" || name == "outgoingServer") {
                    let kind = attr(&e, "type").unwrap_or_default();
                    current = Some(Partial::new(&name, &kind));
                }
                if path.len() == 1
                    && name == "emailProvider"
                    && let Some(id) = attr(&e, "id")
                {
                    out.provider_name.get_or_insert(id);
                }
                if path.len() == 1 && name == "oAuth2" {
                    oauth = Some(AcOAuth::default());
                }
                path.push(name);
                text_buf.clear();
            }
            Event::Empty(_) => {}
            Event::Text(t) => text_buf.push_str(&t.xml10_content()),
            Event::CData(t) => text_buf.push_str(&t.xml10_content()),
            Event::GeneralRef(r) => {
                let name: String = (*r).to_owned();
                let ch = match name.as_str() {
                    "amp" => Some('&'),
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    _ => r.resolve_char_ref().ok().flatten(),
                };
                match ch {
                    Some(c) => text_buf.push(c),
                    None => return Err(format!("unknown entity &{};", shorten(&name))),
                }
            }
            Event::End(_) => {
                let Some(name) = path.pop() else {
                    return Err("an end tag without its start".into());
                };
                let value = text_buf.trim().to_owned();
                text_buf.clear();
                let parent = path.last().map(String::as_str);
                match (path.len(), parent, name.as_str()) {
                    (2, Some("emailProvider"), "domain") if !value.is_empty() => {
                        out.domains.push(value.to_ascii_lowercase())
                    }
                    (2, Some("emailProvider"), "displayName") if !value.is_empty() => {
                        out.provider_name = Some(value)
                    }
                    (3, Some("incomingServer" | "outgoingServer"), field) => {
                        if let Some(c) = current.as_mut() {
                            c.field(field, value, address);
                        }
                    }
                    (2, Some("emailProvider"), "incomingServer" | "outgoingServer") => {
                        if let Some(s) = current.take().and_then(Partial::finish) {
                            out.servers.push(s);
                        }
                    }
                    (2, Some("oAuth2"), field) => {
                        if let Some(o) = oauth.as_mut() {
                            match field {
                                "issuer" if !value.is_empty() => o.issuer = Some(value),
                                "scope" => {
                                    o.scopes = value.split_whitespace().map(str::to_owned).collect()
                                }
                                "authURL" if !value.is_empty() => o.auth_url = Some(value),
                                "tokenURL" if !value.is_empty() => o.token_url = Some(value),
                                _ => {}
                            }
                        }
                    }
                    (1, Some("clientConfig"), "oAuth2") => out.oauth2 = oauth.take(),
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_root {
        return Err("no <clientConfig> element".into());
    }
    if !path.is_empty() {
        return Err(format!(
            "<{}> is not closed",
            shorten(&path[path.len() - 1])
        ));
    }
    Ok(out)
}

fn attr(e: &quick_xml::events::BytesStart<'_>, key: &str) -> Option<String> {
    e.attributes().flatten().find_map(|a| {
        (a.key.local_name().as_ref() == key)
            .then(|| {
                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .map(Cow::into_owned)
                    .ok()
            })
            .flatten()
    })
}

/// A name from the file, cut short for a message.
fn shorten(s: &str) -> String {
    s.chars().take(40).collect()
}

/// A server element being read.
struct Partial {
    proto: Option<Proto>,
    host: Option<String>,
    port: Option<u16>,
    tls: Option<Option<Tls>>,
    username: Option<String>,
    auth: Vec<String>,
}

impl Partial {
    fn new(element: &str, kind: &str) -> Partial {
        let proto = match (element, kind) {
            ("incomingServer", "imap") => Some(Proto::Imap),
            ("incomingServer", "pop3") => Some(Proto::Pop),
            ("outgoingServer", "smtp") => Some(Proto::Smtp),
            // exchange, ews, jmap...: not protocols mailtoken's programs speak.
            _ => None,
        };
        Partial {
            proto,
            host: None,
            port: None,
            tls: None,
            username: None,
            auth: Vec::new(),
        }
    }

    fn field(&mut self, field: &str, value: String, address: &str) {
        match field {
            "hostname" => self.host = Some(fill(&value, address).to_ascii_lowercase()),
            "port" => self.port = value.parse().ok().filter(|&p| p != 0),
            // "plain" is no TLS at all: mailtoken sends no token over such a connection.
            "socketType" => {
                self.tls = Some(match value.to_ascii_uppercase().as_str() {
                    "SSL" | "TLS" => Some(Tls::Implicit),
                    "STARTTLS" => Some(Tls::Starttls),
                    _ => None,
                })
            }
            "username" => self.username = Some(fill(&value, address)),
            "authentication" if !value.is_empty() => self.auth.push(value),
            _ => {}
        }
    }

    fn finish(self) -> Option<AcServer> {
        let proto = self.proto?;
        let host = self.host.filter(|h| valid_host(h))?;
        let port = self.port?;
        // No socketType: the port says (Thunderbird guesses the same way).
        let tls = match self.tls {
            Some(Some(t)) => t,
            Some(None) => return None,
            None => Tls::for_port(port),
        };
        Some(AcServer {
            proto,
            server: Server {
                host: host.into(),
                port,
                tls,
            },
            username: self.username,
            auth: self.auth,
        })
    }
}

/// A DNS name as a config may hold it: letters, digits, `-`, `.`, at most 253 long.
pub fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The placeholders of the format: the address, its local part, its domain.
fn fill(value: &str, address: &str) -> String {
    let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    value
        .replace("%EMAILADDRESS%", address)
        .replace("%EMAILLOCALPART%", local)
        .replace("%EMAILDOMAIN%", domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of the ISPDB's file for gmail.com (abridged).
    const GMAIL: &str = r#"<?xml version="1.0"?>
<clientConfig version="1.1">
  <emailProvider id="googlemail.com">
    <domain>gmail.com</domain>
    <domain>googlemail.com</domain>
    <displayName>Google Mail</displayName>
    <incomingServer type="imap">
      <hostname>imap.gmail.com</hostname>
      <port>993</port>
      <socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>OAuth2</authentication>
      <authentication>password-cleartext</authentication>
    </incomingServer>
    <incomingServer type="pop3">
      <hostname>pop.gmail.com</hostname>
      <port>995</port>
      <socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>OAuth2</authentication>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>smtp.gmail.com</hostname>
      <port>465</port>
      <socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>OAuth2</authentication>
    </outgoingServer>
    <documentation url="http://mail.google.com/support/bin/answer.py?answer=13273">
      <descr>How to enable IMAP/POP3 in GMail</descr>
    </documentation>
  </emailProvider>
  <oAuth2>
    <issuer>accounts.google.com</issuer>
    <scope>https://mail.google.com/ https://www.googleapis.com/auth/carddav</scope>
    <authURL>https://accounts.google.com/o/oauth2/auth</authURL>
    <tokenURL>https://www.googleapis.com/oauth2/v3/token</tokenURL>
  </oAuth2>
</clientConfig>"#;

    #[test]
    fn reads_the_servers_and_the_oauth_element() {
        let a = parse(GMAIL, "alice@gmail.com").unwrap();
        assert_eq!(a.provider_name.as_deref(), Some("Google Mail"));
        assert_eq!(a.domains, ["gmail.com", "googlemail.com"]);
        assert_eq!(a.servers.len(), 3);
        let imap = &a.servers[0];
        assert_eq!(imap.proto, Proto::Imap);
        assert_eq!(
            imap.server,
            Server::new("imap.gmail.com", 993, Tls::Implicit)
        );
        assert_eq!(imap.username.as_deref(), Some("alice@gmail.com"));
        assert!(imap.oauth() && imap.password());
        assert_eq!(a.servers[1].proto, Proto::Pop);
        assert!(!a.servers[1].password());
        assert_eq!(a.servers[2].proto, Proto::Smtp);
        let o = a.oauth2.unwrap();
        assert_eq!(o.issuer.as_deref(), Some("accounts.google.com"));
        assert_eq!(o.scopes[0], "https://mail.google.com/");
        assert_eq!(
            o.token_url.as_deref(),
            Some("https://www.googleapis.com/oauth2/v3/token")
        );
    }

    #[test]
    fn placeholders_entities_and_defaults() {
        let xml = r#"<clientConfig><emailProvider id="x"><incomingServer type="imap">
            <hostname>imap.%EMAILDOMAIN%</hostname><port>143</port>
            <username>%EMAILLOCALPART%&amp;co&#33;</username></incomingServer>
            <outgoingServer type="smtp"><hostname>smtp.example.org</hostname><port>587</port>
            <socketType>plain</socketType></outgoingServer>
            <incomingServer type="exchange"><hostname>ews.example.org</hostname><port>443</port></incomingServer>
            </emailProvider></clientConfig>"#;
        let a = parse(xml, "bob@Example.ORG").unwrap();
        // The port says STARTTLS; the plain SMTP server and the Exchange one are left out.
        assert_eq!(a.servers.len(), 1);
        assert_eq!(a.servers[0].server.host, "imap.example.org");
        assert_eq!(a.servers[0].server.tls, Tls::Starttls);
        assert_eq!(a.servers[0].username.as_deref(), Some("bob&co!"));
        assert_eq!(a.provider_name.as_deref(), Some("x"));
    }

    #[test]
    fn refuses_what_is_not_an_autoconfig_file() {
        for (xml, want) in [
            (
                "<html><body>Not found</body></html>",
                "root element is <html>",
            ),
            ("", "no <clientConfig>"),
            ("<clientConfig><emailProvider>", "not closed"),
            ("<clientConfig>&bogus;</clientConfig>", "unknown entity"),
            ("<clientConfig></x>", "not valid XML"),
        ] {
            let e = parse(xml, "a@b.c").unwrap_err();
            assert!(e.contains(want), "{xml:?}: {e}");
        }
        assert!(parse(&"x".repeat(MAX_LEN + 1), "a@b").is_err());
    }

    #[test]
    fn server_without_a_usable_host_or_port_is_skipped() {
        let xml = r#"<clientConfig><emailProvider><incomingServer type="imap">
            <hostname>bad host!</hostname><port>993</port></incomingServer>
            <incomingServer type="imap"><hostname>ok.example</hostname><port>x</port></incomingServer>
            </emailProvider></clientConfig>"#;
        assert!(parse(xml, "a@b").unwrap().servers.is_empty());
    }
}
