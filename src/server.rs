//! A mail server an account talks to: the protocol, the host and port, and how TLS
//! starts. Plain data shared by the config, the provider presets, `verify`, `setup` and
//! the credential formats (OAUTHBEARER names the server it is for).

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// How TLS starts on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Tls {
    /// TLS from the first byte (IMAPS 993, POP3S 995, submissions 465).
    Implicit,
    /// Plain start, then STARTTLS / STLS (IMAP 143, POP3 110, submission 587).
    Starttls,
}

impl Tls {
    /// The mode a port implies when nothing says otherwise: 25, 110, 143 and 587 start
    /// plain and switch with STARTTLS; any other port is taken as implicit TLS.
    pub fn for_port(port: u16) -> Tls {
        match port {
            143 | 110 | 587 | 25 => Tls::Starttls,
            _ => Tls::Implicit,
        }
    }

    /// The name in the config and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Tls::Implicit => "implicit",
            Tls::Starttls => "starttls",
        }
    }

    /// For people: "implicit TLS", "STARTTLS".
    pub fn title(self) -> &'static str {
        match self {
            Tls::Implicit => "implicit TLS",
            Tls::Starttls => "STARTTLS",
        }
    }
}

/// The mail protocols an account may have a server for. Also the `--for` selector of
/// `mailtoken token`: whose host and port go into an OAUTHBEARER string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Proto {
    Imap,
    Pop,
    Smtp,
}

impl Proto {
    pub const ALL: [Proto; 3] = [Proto::Imap, Proto::Pop, Proto::Smtp];

    /// The name on the command line, in the daemon protocol and as the config key:
    /// `imap`, `pop`, `smtp`.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Imap => "imap",
            Proto::Pop => "pop",
            Proto::Smtp => "smtp",
        }
    }

    /// For people: "IMAP", "POP3", "SMTP".
    pub fn title(self) -> &'static str {
        match self {
            Proto::Imap => "IMAP",
            Proto::Pop => "POP3",
            Proto::Smtp => "SMTP",
        }
    }
}

crate::names::by_name!(Proto, "protocol");

/// The standard port of a protocol in a TLS mode (IMAP 993/143, POP3 995/110,
/// submission 465/587).
pub fn default_port(proto: Proto, tls: Tls) -> u16 {
    match (proto, tls) {
        (Proto::Imap, Tls::Implicit) => 993,
        (Proto::Imap, Tls::Starttls) => 143,
        (Proto::Pop, Tls::Implicit) => 995,
        (Proto::Pop, Tls::Starttls) => 110,
        (Proto::Smtp, Tls::Implicit) => 465,
        (Proto::Smtp, Tls::Starttls) => 587,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub host: Cow<'static, str>,
    pub port: u16,
    pub tls: Tls,
}

impl Server {
    pub const fn new(host: &'static str, port: u16, tls: Tls) -> Server {
        Server {
            host: Cow::Borrowed(host),
            port,
            tls,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn ports_and_modes() {
        assert_eq!(Tls::for_port(465), Tls::Implicit);
        assert_eq!(Tls::for_port(587), Tls::Starttls);
        assert_eq!(Tls::for_port(993), Tls::Implicit);
        assert_eq!(Tls::for_port(143), Tls::Starttls);
        assert_eq!(default_port(Proto::Pop, Tls::Implicit), 995);
        assert_eq!(default_port(Proto::Smtp, Tls::Starttls), 587);
    }

    #[test]
    fn names_are_the_same_everywhere() {
        for p in Proto::ALL {
            assert_eq!(p.to_possible_value().unwrap().get_name(), p.name());
            assert_eq!(p.name().parse::<Proto>(), Ok(p));
            let wire = serde_json::to_string(&p).unwrap();
            assert_eq!(wire, format!("\"{}\"", p.name()));
            assert_eq!(serde_json::from_str::<Proto>(&wire).unwrap(), p);
        }
        for t in Tls::value_variants() {
            assert_eq!(t.to_possible_value().unwrap().get_name(), t.name());
        }
        // The command line refuses other spellings, so the daemon does too.
        assert!("IMAP".parse::<Proto>().is_err());
        assert!(serde_json::from_str::<Proto>("\"Smtp\"").is_err());
    }
}
