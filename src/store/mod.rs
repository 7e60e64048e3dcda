//! Where tokens live between runs: the OS keyring, a 0600 JSON file, or a pair of user
//! commands (such as `pass`). Every store keeps one [`TokenRecord`] per account, and every
//! write is all-or-nothing: a crash or kill at any moment leaves the old record or the new
//! one, never a broken store.

use crate::error::Result;
use crate::record::TokenRecord;
use serde::Deserialize;
use std::path::PathBuf;

pub mod command;
pub mod file;
pub mod keyring;

/// The `[store]` table of the config file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default)]
    pub kind: StoreKind,
    /// file: where the JSON file lives (default `$XDG_STATE_HOME/mailtoken/tokens.json`).
    pub path: Option<PathBuf>,
    /// command: prints the account's record on stdout; `{account}` is replaced.
    pub read: Option<String>,
    /// command: takes the account's record on stdin.
    pub write: Option<String>,
    /// command: forgets the account's record (optional).
    pub delete: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The keyring where a Secret Service / Keychain answers, else the file store.
    #[default]
    Auto,
    Keyring,
    File,
    Command,
}

/// A place that keeps one record per account.
pub trait TokenStore: Send + Sync {
    /// The account's record, or `None` when nothing is stored for it.
    fn load(&self, account: &str) -> Result<Option<TokenRecord>>;
    /// Replaces the account's record, atomically.
    fn save(&self, account: &str, record: &TokenRecord) -> Result<()>;
    /// Forgets the account; `Ok(false)` when there was nothing to forget.
    fn delete(&self, account: &str) -> Result<bool>;
    /// For people: "file /home/a/.local/state/mailtoken/tokens.json", "keyring (Secret Service)".
    fn describe(&self) -> String;
}
