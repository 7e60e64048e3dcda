//! The relay password of an account: made by mailtoken (`mailtoken relay-password`),
//! kept in a file of its own under the state directory (0600, in a 0700 directory),
//! read at each local login so that a rotation takes effect at once, and compared in
//! constant time. It opens the relay only, never the account itself.

use crate::error::{Error, Result};
use crate::secret::Secret;
use std::path::PathBuf;

const LEN: usize = 24;
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

fn path(account: &str) -> PathBuf {
    crate::paths::state_dir().join("relay").join(account)
}

/// The account's relay password, if one was made.
pub fn read(account: &str) -> Result<Option<Secret>> {
    match std::fs::read_to_string(path(account)) {
        Ok(s) => Ok(Some(Secret::new(s.trim()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!(
            "cannot read the relay password of {account} ({}): {e}",
            path(account).display()
        ))),
    }
}

/// The relay password, made now if there is none (or always, with `rotate`).
pub fn get_or_make(account: &str, rotate: bool) -> Result<Secret> {
    if !rotate && let Some(p) = read(account)? {
        return Ok(p);
    }
    let mut bytes = [0u8; LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| Error::software("no randomness for a relay password"))?;
    let made: String = bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    let file = path(account);
    let dir = file
        .parent()
        .expect("a relay password file has a directory");
    crate::lock::create_private_dir(dir)
        .map_err(|e| Error::io(format!("cannot create {}: {e}", dir.display())))?;
    // Written beside and renamed: a reader sees the old password or the new one.
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| Error::io(format!("cannot write in {}: {e}", dir.display())))?;
    std::fs::write(tmp.path(), format!("{made}\n"))
        .map_err(|e| Error::io(format!("cannot write the relay password: {e}")))?;
    tmp.persist(&file)
        .map_err(|e| Error::io(format!("cannot save {}: {e}", file.display())))?;
    Ok(Secret::new(made))
}

/// Whether `given` is the account's relay password (constant time in its length).
pub fn matches(account: &str, given: &str) -> Result<bool> {
    let Some(p) = read(account)? else {
        return Ok(false);
    };
    let (a, b) = (p.expose().as_bytes(), given.as_bytes());
    Ok(a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0)
}
