//! The config file as written: what serde reads from the TOML, with the spans that
//! errors point at. Nothing here is checked yet; `resolve` does that.

use crate::providers::AuthKind;
use crate::server::Tls;
use crate::store::StoreConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) accounts: BTreeMap<Spanned<String>, Spanned<RawAccount>>,
    #[serde(default)]
    pub(super) store: StoreConfig,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) notify_cmd: Option<String>,
    /// The HTTP proxy for token requests of every account (`"none"`: direct).
    pub(super) proxy: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccount {
    pub(super) provider: Option<Spanned<String>>,
    pub(super) auth: Option<Spanned<AuthKind>>,
    pub(super) tenant: Option<Spanned<String>>,
    pub(super) user: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) client_secret: Option<String>,
    pub(super) client_secret_cmd: Option<String>,
    /// An app's certificate (PEM) for a signed client assertion, and its key.
    pub(super) certificate: Option<Spanned<String>>,
    pub(super) private_key: Option<Spanned<String>>,
    /// A command printing both PEM blocks (certificate and key), instead of files.
    pub(super) certificate_cmd: Option<Spanned<String>>,
    /// A Google service account's JSON key, or a command that prints it.
    pub(super) key_file: Option<Spanned<String>>,
    pub(super) key_cmd: Option<Spanned<String>>,
    pub(super) auth_url: Option<Spanned<String>>,
    pub(super) token_url: Option<Spanned<String>>,
    pub(super) device_url: Option<Spanned<String>>,
    pub(super) revoke_url: Option<Spanned<String>>,
    pub(super) scopes: Option<Vec<String>>,
    #[serde(default)]
    pub(super) auth_params: BTreeMap<String, String>,
    pub(super) redirect_uri: Option<Spanned<String>>,
    pub(super) redirect_host: Option<Spanned<String>>,
    pub(super) redirect_path: Option<Spanned<String>>,
    pub(super) imap: Option<RawServer>,
    pub(super) pop: Option<RawServer>,
    pub(super) smtp: Option<RawServer>,
    pub(super) ca_file: Option<PathBuf>,
    /// The HTTP proxy for this account's token requests; wins over the top level's.
    pub(super) proxy: Option<Spanned<String>>,
    /// Local relays for programs that know no OAuth (`[accounts.NAME.relay]`).
    pub(super) relay: Option<RawRelay>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRelay {
    pub(super) smtp: Option<Spanned<String>>,
    pub(super) imap: Option<Spanned<String>>,
    pub(super) pop: Option<Spanned<String>>,
    /// "password" (the default: the relay password), "users" (no login for the local
    /// users in `users`, unix sockets only) or "none".
    pub(super) auth: Option<Spanned<String>>,
    pub(super) users: Option<Vec<u32>>,
    pub(super) max_connections: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) host: String,
    pub(super) port: Option<u16>,
    pub(super) tls: Option<Tls>,
}
