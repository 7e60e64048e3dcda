//! Where tokens live between runs: the OS keyring, a 0600 JSON file, or a pair of user
//! commands (such as `pass`). Every store keeps one [`TokenRecord`] per account, and every
//! write is all-or-nothing: a crash or kill at any moment leaves the old record or the new
//! one, never a broken store.

use crate::error::{Error, Result};
use crate::record::TokenRecord;
use serde::Deserialize;
use std::path::PathBuf;

pub mod command;
pub mod file;
pub mod keyring;
pub mod rescue;

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
    /// command: how long one command may run before it is stopped (default
    /// [`command::DEFAULT_TIMEOUT`]); as written, checked by `Config::parse`.
    pub timeout: Option<toml::Spanned<String>>,
    /// `timeout`, parsed: how long one store command or keyring call may take.
    #[serde(skip)]
    pub command_timeout: Option<std::time::Duration>,
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
    /// The records of several accounts, in their order: what `load` gives each. The
    /// file store reads its one file once for all (the daemon's start with 1,000
    /// accounts parsed the whole file 1,000 times: docs/benchmarks.md, section 8).
    fn load_each(&self, accounts: &[&str]) -> Vec<Result<Option<TokenRecord>>> {
        accounts.iter().map(|a| self.load(a)).collect()
    }
    /// Replaces the account's record, atomically.
    fn save(&self, account: &str, record: &TokenRecord) -> Result<()>;
    /// Forgets the account; `Ok(false)` when there was nothing to forget.
    fn delete(&self, account: &str) -> Result<bool>;
    /// For people: "file /home/a/.local/state/mailtoken/tokens.json", "keyring (Secret Service)".
    fn describe(&self) -> String;
}

/// An opened store, and a one-line notice for people when `auto` fell back to the file.
pub struct Opened {
    pub store: Box<dyn TokenStore>,
    pub notice: Option<String>,
}

/// Opens the store the config asks for. `auto` takes the keyring when one answers and
/// falls back to the file store (with a notice) only when none is reachable at all: a
/// keyring that answers but refuses (locked) is reported, since it may hold the tokens.
pub fn open(cfg: &StoreConfig) -> Result<Opened> {
    // How long one store command or keyring call may take.
    let timeout = cfg.command_timeout.unwrap_or(command::DEFAULT_TIMEOUT);
    let store: Box<dyn TokenStore> = match cfg.kind {
        StoreKind::Keyring => Box::new(keyring::KeyringStore::open(timeout)?),
        StoreKind::File => Box::new(file_store(cfg)),
        StoreKind::Command => {
            let (Some(read), Some(write)) = (&cfg.read, &cfg.write) else {
                return Err(Error::config(
                    "[store] kind = \"command\" needs `read` and `write`",
                ));
            };
            Box::new(
                command::CommandStore::new(read.clone(), write.clone(), cfg.delete.clone())
                    .with_timeout(timeout),
            )
        }
        StoreKind::Auto => match keyring::KeyringStore::try_open(timeout) {
            Ok(k) => Box::new(k),
            Err(keyring::OpenError::Unreachable(reason)) => {
                let file = file_store(cfg);
                let notice = format!(
                    "no keyring answered ({reason}); keeping tokens in {} (mode 0600). \
                     Set [store] kind = \"file\" to silence this, or \"keyring\" to require the keyring.",
                    file.path().display()
                );
                return Ok(Opened {
                    store: Box::new(file),
                    notice: Some(notice),
                });
            }
            Err(keyring::OpenError::Failed(e)) => return Err(e),
        },
    };
    Ok(Opened {
        store,
        notice: None,
    })
}

/// Why no keyring answers, or `None` when one does (it may still be locked): what
/// `auto` would fall back to the file store for. For `add`, before it asks.
pub fn keyring_unreachable() -> Option<String> {
    match keyring::KeyringStore::try_open(command::DEFAULT_TIMEOUT) {
        Err(keyring::OpenError::Unreachable(reason)) => Some(reason),
        _ => None,
    }
}

fn file_store(cfg: &StoreConfig) -> file::FileStore {
    match &cfg.path {
        Some(p) => file::FileStore::new(crate::paths::expand_home(p)),
        None => file::FileStore::new(file::FileStore::default_path()),
    }
}

/// A JSON error without the text it choked on: "invalid type" errors quote the offending
/// value, which may be a token, so those are reduced to their position.
pub(crate) fn json_error(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Data => {
            format!(
                "a value has the wrong type or shape at line {} column {}",
                e.line(),
                e.column()
            )
        }
        // Syntax and EOF messages name only what was expected, never the input.
        _ => e.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::error::ExitCode;
    use crate::secret::Secret;

    /// A record with refresh token `rt`, for the stores' round-trip tests.
    pub(crate) fn record(rt: &str) -> TokenRecord {
        TokenRecord {
            refresh_token: Some(Secret::new(rt)),
            access_token: Some(Secret::new("at")),
            expires_at: Some(4600),
            obtained_at: 1000,
            ..Default::default()
        }
    }

    #[test]
    fn a_command_store_needs_read_and_write() {
        let cfg = StoreConfig {
            kind: StoreKind::Command,
            read: Some("cat x".into()),
            ..Default::default()
        };
        let err = open(&cfg).err().unwrap();
        assert_eq!(err.code, ExitCode::Config);
        assert!(
            err.message.contains("needs `read` and `write`"),
            "{}",
            err.message
        );
        let cfg = StoreConfig {
            write: Some("cat > x".into()),
            ..cfg
        };
        assert!(open(&cfg).unwrap().store.describe().starts_with("command"));
    }

    #[test]
    fn the_file_store_path_may_start_with_a_tilde() {
        use crate::paths::expand_home;
        use std::path::Path;
        let home = PathBuf::from(std::env::var_os("HOME").unwrap());
        assert_eq!(
            expand_home(Path::new("~/t/tokens.json")),
            home.join("t/tokens.json")
        );
        assert_eq!(
            expand_home(Path::new("/abs/~/x")),
            PathBuf::from("/abs/~/x")
        );
        assert_eq!(
            expand_home(Path::new("~other/x")),
            PathBuf::from("~other/x")
        );
        let cfg = StoreConfig {
            kind: StoreKind::File,
            path: Some("~/t/tokens.json".into()),
            ..Default::default()
        };
        let opened = open(&cfg).unwrap();
        assert_eq!(
            opened.store.describe(),
            format!("file {}", home.join("t/tokens.json").display())
        );
        assert!(opened.notice.is_none());
    }

    #[test]
    fn json_errors_do_not_quote_values() {
        let e =
            serde_json::from_str::<TokenRecord>(r#"{"obtained_at": "ya29.secret"}"#).unwrap_err();
        let shown = json_error(&e);
        assert!(!shown.contains("ya29"), "{shown}");
        assert!(shown.contains("line 1 column"), "{shown}");
        let e = serde_json::from_str::<TokenRecord>("{\"obtained_at\": 1,}").unwrap_err();
        assert!(
            json_error(&e).contains("trailing comma at line 1 column"),
            "{}",
            json_error(&e)
        );
    }

    /// `auto` without any D-Bus session bus falls back to the file store, with a notice.
    /// Runs in a child process, since the bus address comes from the environment.
    #[cfg(all(
        unix,
        not(any(target_os = "macos", target_os = "ios", target_os = "android"))
    ))]
    #[test]
    fn auto_falls_back_to_the_file_store_without_a_keyring() {
        const NAME: &str = "store::tests::auto_falls_back_to_the_file_store_without_a_keyring";
        if std::env::var_os("MAILTOKEN_AUTO_CHILD").is_some() {
            let opened = open(&StoreConfig::default()).unwrap();
            let expected = file::FileStore::default_path();
            assert_eq!(
                opened.store.describe(),
                format!("file {}", expected.display())
            );
            let notice = opened.notice.expect("a notice");
            eprintln!("notice: {notice}");
            assert!(notice.starts_with("no keyring answered ("), "{notice}");
            assert!(notice.contains(&expected.display().to_string()), "{notice}");
            return;
        }
        let state = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env("MAILTOKEN_AUTO_CHILD", "1")
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
            .env("XDG_STATE_HOME", state.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "child failed:\n{text}"
        );
    }
}
