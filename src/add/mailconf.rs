//! `add --write`: the `setup` block put into the mail program's own config file, between
//! two marker lines, so that a later `add` of the same account replaces its block
//! instead of adding a second one. The file as it was is kept beside it first.

use super::write::{create_new, replace};
use crate::error::{Error, Result};
use crate::setup::Client;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file the program reads, where it looks first (its XDG place when that exists).
pub fn config_file(client: Client) -> Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or_else(|| Error::config("HOME is not set"))?;
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home.join(".config"));
    let first = |cands: &[PathBuf]| -> PathBuf {
        cands
            .iter()
            .find(|p| p.exists())
            .unwrap_or(&cands[cands.len() - 1])
            .clone()
    };
    Ok(match client {
        // msmtp(1): $XDG_CONFIG_HOME/msmtp/config, else ~/.msmtprc.
        Client::Msmtp => first(&[xdg.join("msmtp/config"), home.join(".msmtprc")]),
        Client::Neomutt => first(&[
            xdg.join("neomutt/neomuttrc"),
            home.join(".neomutt/neomuttrc"),
            home.join(".neomuttrc"),
        ]),
        Client::Mutt => first(&[home.join(".mutt/muttrc"), home.join(".muttrc")]),
        Client::Mbsync => first(&[xdg.join("isyncrc"), home.join(".mbsyncrc")]),
        Client::Aerc => xdg.join("aerc/accounts.conf"),
        Client::GitSendEmail => first(&[xdg.join("git/config"), home.join(".gitconfig")]),
        Client::Himalaya => xdg.join("himalaya/config.toml"),
        Client::Postfix | Client::Relay => {
            return Err(Error::usage(
                "--write is for a mail program's own config file; Postfix's setup is `mailtoken setup postfix ACCOUNT`",
            ));
        }
    })
}

fn markers(account: &str) -> (String, String) {
    (
        format!("# >>> mailtoken account {account} >>>"),
        format!("# <<< mailtoken account {account} <<<"),
    )
}

/// What happened, for people.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Created,
    Appended,
    Replaced,
    Unchanged,
}

/// The new text of the file: `block` between the markers, replacing an earlier block
/// of the same account, else appended.
pub fn merged(old: &str, account: &str, block: &str) -> (String, Outcome) {
    let (begin, end) = markers(account);
    let mut body = block.to_owned();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let wrapped = format!("{begin}\n{body}{end}\n");
    if let Some(b) = old.find(&format!("{begin}\n"))
        && let Some(e) = old[b..].find(&end).map(|e| b + e)
    {
        let mut stop = e + end.len();
        if old[stop..].starts_with('\n') {
            stop += 1;
        }
        if old[b..stop] == wrapped {
            return (old.to_owned(), Outcome::Unchanged);
        }
        return (
            format!("{}{wrapped}{}", &old[..b], &old[stop..]),
            Outcome::Replaced,
        );
    }
    if old.is_empty() {
        return (wrapped, Outcome::Created);
    }
    let sep = if old.ends_with("\n\n") {
        ""
    } else if old.ends_with('\n') {
        "\n"
    } else {
        "\n\n"
    };
    (format!("{old}{sep}{wrapped}"), Outcome::Appended)
}

/// Puts the block into the program's file; the old file goes to `FILE.mailtoken-backup`
/// (`.1`, `.2`, ... when that exists) before anything changes.
pub fn write(path: &Path, account: &str, block: &str) -> Result<(Outcome, Option<PathBuf>)> {
    let old = match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(format!("reading {}: {e}", path.display()))),
    };
    let (text, mut outcome) = merged(old.as_deref().unwrap_or(""), account, block);
    if outcome == Outcome::Unchanged {
        return Ok((outcome, None));
    }
    let mut backup = None;
    if let Some(old) = &old {
        let base = format!("{}.mailtoken-backup", path.display());
        let mut n = 0;
        let (file, p) = loop {
            let p = if n == 0 {
                PathBuf::from(&base)
            } else {
                PathBuf::from(format!("{base}.{n}"))
            };
            match create_new(&p, 0o600) {
                Ok(f) => break (f, p),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(Error::io(format!("backing up {}: {e}", path.display()))),
            }
        };
        let mut file = file;
        file.write_all(old.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io(format!("writing {}: {e}", p.display())))?;
        backup = Some(p);
    } else {
        outcome = Outcome::Created;
    }
    replace(path, &text)?;
    Ok((outcome, backup))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_added_once_and_replaced_after() {
        let old = "defaults\ntls on\n";
        let (one, o) = merged(old, "alice", "account alice\nhost smtp.example\n");
        assert_eq!(o, Outcome::Appended);
        assert!(one.starts_with(old));
        let (same, o) = merged(&one, "alice", "account alice\nhost smtp.example\n");
        assert_eq!((same.as_str(), o), (one.as_str(), Outcome::Unchanged));
        let (two, o) = merged(&one, "alice", "account alice\nhost smtp2.example\n");
        assert_eq!(o, Outcome::Replaced);
        assert_eq!(two.matches("\nhost smtp").count(), 1);
        assert_eq!(two.matches(">>> mailtoken account alice >>>").count(), 1);
        assert!(two.contains("smtp2") && two.starts_with(old));
        // Another account's block is its own.
        let (three, o) = merged(&two, "bob", "account bob\n");
        assert_eq!(o, Outcome::Appended);
        assert!(three.contains(">>> mailtoken account alice >>>") && three.contains("account bob"));
        assert_eq!(merged("", "a", "x").1, Outcome::Created);
    }
}
