//! An account's relays as the config sets them (`[accounts.NAME.relay]`): where each
//! listens, and who may use it. Only loopback addresses and unix sockets: a relay
//! hands out the account's mail access to whoever reaches it.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Where a relay listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "{a}"),
            Listen::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

impl Listen {
    /// `127.0.0.1:2587`, `[::1]:2587`, `localhost:2587` or an absolute socket path;
    /// the error says why another is refused.
    pub fn parse(text: &str) -> Result<Listen, String> {
        if text.starts_with('/') {
            return Ok(Listen::Unix(PathBuf::from(text)));
        }
        let text = text.replacen("localhost:", "127.0.0.1:", 1);
        let addr: SocketAddr = text.parse().map_err(|_| {
            format!("`{text}` is not an address:port or an absolute unix socket path")
        })?;
        if !addr.ip().is_loopback() {
            return Err(format!(
                "`{addr}` is not a loopback address: a relay lends the account's mail access to whoever reaches it, so it listens on 127.0.0.1, ::1 or a unix socket only"
            ));
        }
        Ok(Listen::Tcp(addr))
    }
}

/// Who may use a relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// A local login with the relay password (`mailtoken relay-password ACCOUNT`).
    Password,
    /// No login, for these local users only: unix sockets, whose peer the kernel names.
    Users(Vec<u32>),
    /// Anyone who can connect (loopback): `status` warns about it.
    Anyone,
}

impl Access {
    /// No local login is asked for (the peer check, if any, happened at the socket).
    pub fn no_login(&self) -> bool {
        !matches!(self, Access::Password)
    }
}

/// An account's relays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    pub smtp: Option<Listen>,
    pub imap: Option<Listen>,
    pub pop: Option<Listen>,
    pub access: Access,
    /// At most this many clients at once per relay; more are told to come back later.
    pub max_connections: usize,
}

/// The default of `max_connections`.
pub const MAX_CONNECTIONS: usize = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_unix_sockets_are_taken_and_nothing_else() {
        assert_eq!(
            Listen::parse("127.0.0.1:2587").unwrap(),
            Listen::Tcp("127.0.0.1:2587".parse().unwrap())
        );
        assert_eq!(
            Listen::parse("localhost:25").unwrap(),
            Listen::Tcp("127.0.0.1:25".parse().unwrap())
        );
        assert!(Listen::parse("[::1]:2587").is_ok());
        assert_eq!(
            Listen::parse("/run/mailtoken/smtp").unwrap(),
            Listen::Unix("/run/mailtoken/smtp".into())
        );
        assert!(
            Listen::parse("0.0.0.0:2587")
                .unwrap_err()
                .contains("not a loopback address")
        );
        assert!(
            Listen::parse("192.168.1.2:25")
                .unwrap_err()
                .contains("not a loopback")
        );
        assert!(
            Listen::parse("relay")
                .unwrap_err()
                .contains("is not an address")
        );
    }
}
