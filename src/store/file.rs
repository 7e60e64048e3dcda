//! The file store: every account's record in one pretty-printed JSON file of mode 0600,
//! `{"version": 1, "accounts": {"NAME": {...}}}`.
//!
//! Reads take no lock, because every write replaces the whole file by an atomic rename.
//! Writers do their read-modify-write under an exclusive lock on `FILE.lock`, so two
//! processes saving different accounts never lose each other's update. A file this
//! version cannot read (hand-edited, or from a newer mailtoken) is never overwritten.

use super::{TokenStore, json_error};
use crate::error::{Error, Result};
use crate::lock::create_private_dir;
use crate::paths;
use crate::record::TokenRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The format version this code reads and writes.
const VERSION: u64 = 1;

pub struct FileStore {
    path: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Contents {
    version: u64,
    #[serde(default)]
    accounts: BTreeMap<String, TokenRecord>,
}

/// Read before the rest, so that a newer format is refused without being interpreted.
#[derive(Deserialize)]
struct Header {
    version: u64,
}

impl FileStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileStore { path: path.into() }
    }

    /// `$XDG_STATE_HOME/mailtoken/tokens.json`.
    pub fn default_path() -> PathBuf {
        paths::state_dir().join("tokens.json")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file_name(&self) -> String {
        self.path.file_name().map_or_else(
            || "tokens.json".into(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }

    /// Temp files are `.NAME.XXXXXX.tmp` next to the file: recognizable as ours, so that
    /// one left by a writer that was killed can be removed by the next writer.
    fn temp_prefix(&self) -> String {
        format!(".{}.", self.file_name())
    }

    /// All records; `account` only goes into the remedy of a parse error.
    fn read(&self, account: &str) -> Result<BTreeMap<String, TokenRecord>> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => zeroize::Zeroizing::new(t),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => {
                return Err(Error::io(format!(
                    "cannot read {}: {e}",
                    self.path.display()
                )));
            }
        };
        let unreadable = |why: String| {
            Error::data(format!("{} is not a token file this mailtoken can read: {why}", self.path.display()))
                .with_remedy(format!(
                    "It was left untouched. Fix it, or move it aside, then run `mailtoken login {account}`."
                ))
        };
        let header: Header = serde_json::from_str(&text).map_err(|e| unreadable(json_error(&e)))?;
        if header.version != VERSION {
            return Err(unreadable(format!(
                "it has format version {}, this mailtoken understands version {VERSION} (written by a newer mailtoken?)",
                header.version
            )));
        }
        let contents: Contents =
            serde_json::from_str(&text).map_err(|e| unreadable(json_error(&e)))?;
        Ok(contents.accounts)
    }

    /// Read-modify-write under the writers' lock; `change` says whether it changed anything.
    fn update(
        &self,
        account: &str,
        change: impl FnOnce(&mut BTreeMap<String, TokenRecord>) -> bool,
    ) -> Result<bool> {
        let dir = self.dir();
        create_private_dir(dir)
            .map_err(|e| Error::io(format!("cannot create {}: {e}", dir.display())))?;
        let lock_path = dir.join(format!("{}.lock", self.file_name()));
        // Waits without a timeout: holders keep it for one read-modify-write only, and
        // the kernel releases it if a holder dies.
        let lock = open_private(&lock_path)
            .and_then(|f| f.lock().map(|()| f))
            .map_err(|e| Error::io(format!("cannot lock {}: {e}", lock_path.display())))?;
        let mut accounts = self.read(account)?;
        let changed = change(&mut accounts);
        if changed {
            self.remove_stale_temp_files();
            self.write(&Contents {
                version: VERSION,
                accounts,
            })?;
        }
        drop(lock);
        Ok(changed)
    }

    /// Replaces the file atomically: a reader (or a crash) sees the old or the new file.
    fn write(&self, contents: &Contents) -> Result<()> {
        let dir = self.dir();
        let failed = |what: &str, e: io::Error| {
            Error::io(format!("cannot {what} {}: {e}", self.path.display()))
        };
        let mut json = zeroize::Zeroizing::new(
            serde_json::to_vec_pretty(contents)
                .map_err(|e| Error::software(format!("serializing tokens: {e}")))?,
        );
        json.push(b'\n');
        let prefix = self.temp_prefix();
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600));
        let mut tmp = builder
            .tempfile_in(dir)
            .map_err(|e| failed("create a temporary file next to", e))?;
        tmp.write_all(&json)
            .map_err(|e| failed("write a temporary file next to", e))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| failed("sync a temporary file next to", e))?;
        tmp.persist(&self.path)
            .map_err(|e| failed("replace", e.error))?;
        // The rename is durable only once the directory entry is on disk.
        #[cfg(unix)]
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| failed("sync the directory of", e))?;
        Ok(())
    }

    /// Removes temp files left by writers that were killed before their rename. Only
    /// called under the writers' lock, when no other writer can have one in progress.
    fn remove_stale_temp_files(&self) {
        let prefix = self.temp_prefix();
        let Ok(entries) = fs::read_dir(self.dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&prefix) && name.ends_with(".tmp") {
                // Best effort: a leftover only wastes space.
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

fn open_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

impl TokenStore for FileStore {
    fn load(&self, account: &str) -> Result<Option<TokenRecord>> {
        Ok(self.read(account)?.remove(account))
    }

    fn load_each(&self, accounts: &[&str]) -> Vec<Result<Option<TokenRecord>>> {
        match self.read(accounts.first().copied().unwrap_or_default()) {
            Ok(mut all) => accounts.iter().map(|a| Ok(all.remove(*a))).collect(),
            Err(e) => accounts.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    fn save(&self, account: &str, record: &TokenRecord) -> Result<()> {
        self.update(account, |accounts| {
            accounts.insert(account.to_owned(), record.clone());
            true
        })?;
        Ok(())
    }

    fn delete(&self, account: &str) -> Result<bool> {
        self.update(account, |accounts| accounts.remove(account).is_some())
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExitCode;
    use crate::secret::Secret;

    fn record(rt: &str) -> TokenRecord {
        TokenRecord {
            refresh_token: Some(Secret::new(rt)),
            access_token: Some(Secret::new(format!("at-{rt}"))),
            expires_at: Some(4600),
            obtained_at: 1000,
            logged_in_at: 900,
            scopes: vec!["https://mail.google.com/".into()],
            ..Default::default()
        }
    }

    fn store() -> (tempfile::TempDir, FileStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("state/mailtoken/tokens.json"));
        (dir, store)
    }

    #[test]
    fn a_missing_file_holds_no_records() {
        let (_dir, store) = store();
        assert_eq!(store.load("alice").unwrap(), None);
        assert!(!store.delete("alice").unwrap());
        assert!(
            !store.path().exists(),
            "a no-op delete must not create the file"
        );
    }

    #[test]
    fn round_trip() {
        let (_dir, store) = store();
        store.save("alice", &record("rt1")).unwrap();
        assert_eq!(store.load("alice").unwrap(), Some(record("rt1")));
        store.save("alice", &record("rt2")).unwrap();
        assert_eq!(store.load("alice").unwrap(), Some(record("rt2")));
        assert_eq!(store.describe(), format!("file {}", store.path().display()));
    }

    #[test]
    fn load_each_gives_what_load_gives_each_in_order() {
        let (dir, store) = store();
        assert_eq!(store.load_each(&["alice"]).pop().unwrap().unwrap(), None);
        store.save("alice", &record("a")).unwrap();
        store.save("bob", &record("b")).unwrap();
        let got: Vec<_> = store
            .load_each(&["bob", "carol", "alice"])
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(got, vec![Some(record("b")), None, Some(record("a"))]);
        // An unreadable file is every account's error, as it is for `load`.
        std::fs::write(store.path(), "{").unwrap();
        let got = store.load_each(&["alice", "bob"]);
        assert_eq!(got.len(), 2);
        assert!(
            got.iter()
                .all(|r| r.as_ref().is_err_and(|e| e.code == ExitCode::DataErr))
        );
        drop(dir);
    }

    #[test]
    fn two_accounts_live_side_by_side() {
        let (_dir, store) = store();
        store.save("alice", &record("a")).unwrap();
        store.save("bob@example.com", &record("b")).unwrap();
        assert_eq!(store.load("alice").unwrap(), Some(record("a")));
        assert_eq!(store.load("bob@example.com").unwrap(), Some(record("b")));
        let text = fs::read_to_string(store.path()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["accounts"]["alice"]["refresh_token"], "a");
        assert!(text.contains("\n  \"accounts\""), "pretty-printed: {text}");
    }

    #[test]
    fn delete_forgets_one_account_only() {
        let (_dir, store) = store();
        store.save("alice", &record("a")).unwrap();
        store.save("bob", &record("b")).unwrap();
        assert!(store.delete("alice").unwrap());
        assert!(!store.delete("alice").unwrap());
        assert_eq!(store.load("alice").unwrap(), None);
        assert_eq!(store.load("bob").unwrap(), Some(record("b")));
    }

    #[test]
    fn concurrent_saves_of_different_accounts_all_survive() {
        let (_dir, store) = store();
        let store = std::sync::Arc::new(store);
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for j in 0..10 {
                        store
                            .save(&format!("acct{i}"), &record(&format!("{i}-{j}")))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for i in 0..8 {
            assert_eq!(
                store.load(&format!("acct{i}")).unwrap(),
                Some(record(&format!("{i}-9")))
            );
        }
    }

    fn assert_refused(store: &FileStore, original: &[u8], what: &str) {
        let err = store.save("alice", &record("new-secret")).unwrap_err();
        assert_eq!(err.code, ExitCode::DataErr);
        let shown = err.to_string();
        assert!(
            shown.contains(&store.path().display().to_string()),
            "{shown}"
        );
        assert!(shown.contains(what), "{shown}");
        assert!(shown.contains("mailtoken login alice"), "{shown}");
        assert!(!shown.contains("new-secret"), "{shown}");
        assert_eq!(
            fs::read(store.path()).unwrap(),
            original,
            "the file must be left byte-identical"
        );
        assert_eq!(store.delete("alice").unwrap_err().code, ExitCode::DataErr);
        assert_eq!(store.load("alice").unwrap_err().code, ExitCode::DataErr);
        assert_eq!(fs::read(store.path()).unwrap(), original);
    }

    #[test]
    fn a_file_that_does_not_parse_is_never_overwritten() {
        let (_dir, store) = store();
        store.save("alice", &record("old")).unwrap();
        // A hand edit that lost a comma.
        let broken = fs::read_to_string(store.path())
            .unwrap()
            .replacen("\"old\",", "\"old\"", 1);
        fs::write(store.path(), &broken).unwrap();
        assert_refused(&store, broken.as_bytes(), "at line 6 column");
    }

    #[test]
    fn a_wrongly_typed_value_is_refused_without_showing_it() {
        let (_dir, store) = store();
        let text = r#"{"version":1,"accounts":{"alice":{"obtained_at":"ya29.leaked"}}}"#;
        fs::create_dir_all(store.dir()).unwrap();
        fs::write(store.path(), text).unwrap();
        assert_refused(&store, text.as_bytes(), "line 1 column");
        let err = store.load("alice").unwrap_err().to_string();
        assert!(!err.contains("ya29"), "{err}");
    }

    #[test]
    fn a_newer_format_version_is_never_overwritten() {
        let (_dir, store) = store();
        let text = r#"{"version":2,"accounts":{"alice":{"tokens":[]}}}"#;
        fs::create_dir_all(store.dir()).unwrap();
        fs::write(store.path(), text).unwrap();
        assert_refused(&store, text.as_bytes(), "format version 2");
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_0600_and_its_directory_0700() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, store) = store();
        store.save("alice", &record("a")).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(store.path()), 0o600);
        assert_eq!(mode(store.dir()), 0o700);
        assert_eq!(mode(&store.dir().join("tokens.json.lock")), 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn io_errors_name_the_path_and_the_os_error() {
        let (dir, _) = store();
        // A directory where the file should be: reading it fails with EISDIR.
        let store = FileStore::new(dir.path());
        let err = store.load("alice").unwrap_err();
        assert_eq!(err.code, ExitCode::IoErr);
        assert!(
            err.message.contains(&dir.path().display().to_string()),
            "{}",
            err.message
        );
        assert!(err.message.contains("os error"), "{}", err.message);
    }

    #[test]
    fn leftover_temp_files_are_removed_by_the_next_write() {
        let (_dir, store) = store();
        store.save("alice", &record("a")).unwrap();
        let stale = store.dir().join(".tokens.json.abc123.tmp");
        fs::write(&stale, "half a reco").unwrap();
        let unrelated = store.dir().join("notes.tmp");
        fs::write(&unrelated, "x").unwrap();
        store.save("bob", &record("b")).unwrap();
        assert!(!stale.exists());
        assert!(unrelated.exists());
    }
}
