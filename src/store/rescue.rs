//! The rescue record: when the store refuses the tokens a refresh has just obtained (a
//! locked keyring, a full disk, a failing store command), they are kept here instead,
//! so that a rotated refresh token outlives the process that received it. One file
//! store of its own per account (0600, atomic replace, see `file.rs`), in the state
//! directory, else in the runtime directory (another file system, usually a tmpfs,
//! which still takes a file when the disk is full).
//!
//! The broker prefers a rescued record that is newer than the stored one and removes it
//! once the store has taken the tokens again.

use super::TokenStore;
use super::file::FileStore;
use crate::error::{Error, Result};
use crate::paths;
use crate::record::TokenRecord;
use std::path::{Path, PathBuf};

pub struct Rescue {
    dirs: Vec<PathBuf>,
}

impl Default for Rescue {
    fn default() -> Self {
        Rescue::new()
    }
}

impl Rescue {
    /// `$XDG_STATE_HOME/mailtoken/rescue`, then `$XDG_RUNTIME_DIR/mailtoken/rescue`.
    pub fn new() -> Rescue {
        Rescue::in_dirs(vec![
            paths::state_dir().join("rescue"),
            paths::runtime_dir().join("rescue"),
        ])
    }

    pub fn in_dirs(mut dirs: Vec<PathBuf>) -> Rescue {
        dirs.dedup();
        Rescue { dirs }
    }

    fn file(dir: &Path, account: &str) -> FileStore {
        FileStore::new(dir.join(format!("{account}.json")))
    }

    /// Keeps `record`; returns the file it went to, or why no place took it.
    pub fn save(&self, account: &str, record: &TokenRecord) -> Result<PathBuf> {
        let mut why = Vec::new();
        for dir in &self.dirs {
            let f = Rescue::file(dir, account);
            match f.save(account, record) {
                Ok(()) => return Ok(f.path().to_owned()),
                Err(e) => why.push(e.message),
            }
        }
        Err(Error::io(why.join("; ")))
    }

    /// The newest rescued record of `account`, and where it is. A file that cannot be
    /// read is passed over: the store's record is then the best there is.
    pub fn load(&self, account: &str) -> Option<(TokenRecord, PathBuf)> {
        self.dirs
            .iter()
            .filter_map(|dir| {
                let f = Rescue::file(dir, account);
                let rec = f.load(account).ok().flatten()?;
                Some((rec, f.path().to_owned()))
            })
            .max_by_key(|(r, _)| r.obtained_at)
    }

    /// Forgets the rescued record (the store has the tokens, or they were logged out).
    pub fn remove(&self, account: &str) {
        for dir in &self.dirs {
            let f = Rescue::file(dir, account);
            // Best effort: a file left behind is older than the store's record and
            // is never preferred to it.
            let _ = std::fs::remove_file(f.path());
            let _ = std::fs::remove_file(dir.join(format!("{account}.json.lock")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::record;

    #[test]
    fn a_record_is_kept_found_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let r = Rescue::in_dirs(vec![dir.path().join("a"), dir.path().join("b")]);
        assert!(r.load("alice").is_none());
        let path = r.save("alice", &record("rt1")).unwrap();
        assert_eq!(path, dir.path().join("a/alice.json"));
        assert_eq!(r.load("alice").unwrap().0, record("rt1"));
        r.remove("alice");
        assert!(r.load("alice").is_none());
        assert!(!dir.path().join("a/alice.json.lock").exists());
    }

    #[test]
    fn the_second_place_takes_it_when_the_first_refuses() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the first directory should be: nothing can be created in it.
        std::fs::write(dir.path().join("a"), "not a directory").unwrap();
        let r = Rescue::in_dirs(vec![dir.path().join("a"), dir.path().join("b")]);
        let path = r.save("alice", &record("rt1")).unwrap();
        assert_eq!(path, dir.path().join("b/alice.json"));
        assert_eq!(r.load("alice").unwrap().0, record("rt1"));
        let nowhere = Rescue::in_dirs(vec![dir.path().join("a")]);
        let e = nowhere.save("alice", &record("rt1")).unwrap_err();
        assert!(e.message.contains("cannot create"), "{e}");
        assert!(!e.to_string().contains("rt1"));
    }

    #[test]
    fn the_newest_of_two_places_wins() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        Rescue::in_dirs(vec![b.clone()])
            .save(
                "alice",
                &TokenRecord {
                    obtained_at: 2000,
                    ..record("newer")
                },
            )
            .unwrap();
        Rescue::in_dirs(vec![a.clone()])
            .save("alice", &record("older"))
            .unwrap();
        let (rec, path) = Rescue::in_dirs(vec![a, b.clone()]).load("alice").unwrap();
        assert_eq!(rec.refresh_token.unwrap().expose(), "newer");
        assert_eq!(path, b.join("alice.json"));
    }
}
