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
}

#[derive(Debug, Clone)]
pub struct OAuth {
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub client_secret_cmd: Option<String>,
    pub auth_url: Url,
    pub token_url: Url,
    pub device_url: Option<Url>,
    pub revoke_url: Option<Url>,
    pub scopes: Vec<String>,
    pub auth_params: Vec<(String, String)>,
    /// Host of the loopback redirect URI: `127.0.0.1`, `localhost` or `[::1]`.
    pub redirect_host: String,
    /// Path of the loopback redirect URI; must match what the client registered.
    pub redirect_path: String,
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

    pub fn server(&self, proto: Proto) -> Option<&Server> {
        match proto {
            Proto::Imap => self.imap.as_ref(),
            Proto::Pop => self.pop.as_ref(),
            Proto::Smtp => self.smtp.as_ref(),
        }
    }
}
