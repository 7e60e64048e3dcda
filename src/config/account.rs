//! An account as the rest of mailtoken sees it: the config's table with the provider
//! preset applied, and what its way of signing in needs.

use crate::error::{Error, Result};
use crate::providers::Provider;
use crate::secret::Secret;
use crate::server::{Proto, Server};
use std::path::PathBuf;
use url::Url;

/// The account's way of signing in, with what it needs.
#[derive(Debug, Clone)]
pub enum Auth {
    OAuth(Box<OAuth>),
    /// The password itself lives in the OS keyring, never in the config.
    Password,
}

/// One account, with the provider preset already applied.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub user: String,
    pub provider: Option<&'static Provider>,
    pub auth: Auth,
    pub imap: Option<Server>,
    pub pop: Option<Server>,
    pub smtp: Option<Server>,
    pub ca_file: Option<PathBuf>,
    /// The config's proxy for token requests (the account's, else the top level's);
    /// `None`: the environment decides.
    pub proxy: Option<crate::proxy::Setting>,
    /// Local relays `mailtoken serve` runs for the account.
    pub relay: Option<crate::relay::Relay>,
}

#[derive(Debug, Clone)]
pub struct OAuth {
    /// How tokens are obtained: a person's login, or the app's own credentials.
    pub grant: Grant,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub client_secret_cmd: Option<String>,
    /// `None` for app-only grants, where nobody is sent to a browser.
    pub auth_url: Option<Url>,
    pub token_url: Url,
    pub device_url: Option<Url>,
    pub revoke_url: Option<Url>,
    pub scopes: Vec<String>,
    pub auth_params: Vec<(String, String)>,
    /// Microsoft's tenant (`common`, `organizations`, ...), in the endpoint URLs.
    pub tenant: Option<String>,
    pub redirect: Redirect,
}

/// How an OAuth account gets its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// A person logs in (browser or device code, `mailtoken login`); the refresh token
    /// renews access from then on.
    Login,
    /// The client credentials grant (RFC 6749 §4.4): the app itself, with its secret
    /// or its certificate, gets a token for the mailbox it was granted. Nobody logs in;
    /// a new token is simply asked for.
    ClientCredentials(ClientAuth),
    /// A Google service account acting as the mailbox `user` (domain-wide delegation):
    /// its key signs an assertion for the JWT bearer grant (RFC 7523 §2.1).
    ServiceAccount {
        key: KeySource,
        /// The account sets token_url; otherwise the key's `token_uri` is used.
        own_token_url: bool,
    },
}

/// Where a service account's JSON key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    /// A command that prints the key (`key_cmd`).
    Command(String),
}

/// How an app proves who it is at the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret` / `client_secret_cmd`.
    Secret,
    /// A certificate and its private key sign a client assertion (RFC 7523 §2.2,
    /// `private_key_jwt`).
    Certificate(KeyMaterial),
}

/// Where a certificate and its key come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    Files {
        certificate: PathBuf,
        private_key: PathBuf,
    },
    /// A command that prints both PEM blocks (`certificate_cmd`).
    Command(String),
}

impl OAuth {
    /// Tokens come from the app's own credentials: no login, no refresh token.
    pub fn app_only(&self) -> bool {
        self.grant != Grant::Login
    }
}

/// The loopback redirect URI as the client registered it (RFC 8252 §7.3): scheme, host
/// and path; the port is the listener's, unless the registration fixed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// `https://localhost` registrations (Thunderbird's public Microsoft one, say): the
    /// listener speaks TLS with a certificate made for the one login.
    pub https: bool,
    /// `127.0.0.1`, `localhost` or `[::1]`.
    pub host: String,
    /// A port the registration fixes; otherwise any free one (or `--port`).
    pub port: Option<u16>,
    /// As the client registered it, `/...` or empty: Microsoft compares the rest of a
    /// localhost redirect as a string, so `https://localhost` must not become
    /// `https://localhost/`.
    pub path: String,
}

impl Redirect {
    pub fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }

    /// The URI sent to the provider, spelled as registered, for a listener on `port`
    /// (`None`: no port at all, the redirect of a pasted `https://localhost` login).
    pub fn uri(&self, port: Option<u16>) -> Result<String> {
        let (scheme, host, path) = (self.scheme(), &self.host, &self.path);
        let text = match port {
            Some(p) => format!("{scheme}://{host}:{p}{path}"),
            None => format!("{scheme}://{host}{path}"),
        };
        Url::parse(&text).map_err(|e| Error::config(format!("redirect URI {text}: {e}")))?;
        Ok(text)
    }

    /// The path the listener answers on (an empty one is `/` on the wire).
    pub fn route(&self) -> &str {
        if self.path.is_empty() {
            "/"
        } else {
            &self.path
        }
    }

    /// For `status` and `providers`: `https://localhost:PORT/` and what listens there.
    pub fn describe(&self) -> String {
        let port = self.port.map_or("PORT".to_owned(), |p| p.to_string());
        let what = if self.https {
            "TLS loopback listener with a certificate made for each login; or --paste"
        } else {
            "loopback listener; or --paste"
        };
        format!(
            "{}://{}:{port}{} ({what})",
            self.scheme(),
            self.host,
            self.path
        )
    }
}

impl Account {
    /// The OAuth settings; for an app-password account, a usage error that says what
    /// to run instead (`login` and `verify --mechanism xoauth2` end up here).
    pub fn oauth(&self) -> Result<&OAuth> {
        match &self.auth {
            Auth::OAuth(o) => Ok(o.as_ref()),
            Auth::Password => Err(Error::usage(format!(
                "account {} signs in with an app password (auth = \"password\"), not OAuth",
                self.name
            ))
            .with_remedy(format!(
                "Store the app password with `mailtoken set-password {}`; `mailtoken password {}` prints it.",
                self.name, self.name
            ))),
        }
    }

    pub fn uses_app_password(&self) -> bool {
        matches!(self.auth, Auth::Password)
    }

    /// An OAuth account whose tokens the app gets by itself (client credentials).
    pub fn app_only(&self) -> bool {
        matches!(&self.auth, Auth::OAuth(o) if o.app_only())
    }

    /// The OAuth settings of an account a person logs in to; for the others, a usage
    /// error that says what to run instead.
    pub fn login_oauth(&self) -> Result<&OAuth> {
        let o = self.oauth()?;
        if o.app_only() {
            let how = match o.grant {
                Grant::ServiceAccount { .. } => "as a service account",
                _ => "with the client credentials grant",
            };
            return Err(Error::usage(format!(
                "account {} gets its tokens {how}: nobody logs in",
                self.name
            ))
            .with_remedy(format!(
                "`mailtoken token {}` asks the provider for a token with the app's credentials whenever one is needed.",
                self.name
            )));
        }
        Ok(o)
    }

    pub fn server(&self, proto: Proto) -> Option<&Server> {
        match proto {
            Proto::Imap => self.imap.as_ref(),
            Proto::Pop => self.pop.as_ref(),
            Proto::Smtp => self.smtp.as_ref(),
        }
    }
}
