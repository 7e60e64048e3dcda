//! Adding an account to the config file without touching anything else in it: the new
//! block is made with `toml_edit` (so every value is quoted as TOML wants) and appended
//! after the file's last byte; what was there stays byte for byte, comments, order and
//! blank lines included. The result must load as a config before it replaces the file
//! (atomically, by rename), and the file stays 0600.

use crate::config::Config;
use crate::error::{Error, Result};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use toml_edit::{DocumentMut, InlineTable, Item, Table, Value};

/// One key of the new account, in the order written.
pub enum Field {
    Str(&'static str, String),
    List(&'static str, Vec<String>),
    Map(&'static str, Vec<(String, String)>),
    Server(&'static str, String, u16, &'static str),
}

/// The account's block, as TOML text: `[accounts.NAME]` and its keys; with `store`, a
/// `[store]` table after it.
pub fn block(name: &str, fields: &[Field], store: Option<&str>) -> String {
    let mut doc = DocumentMut::new();
    let mut accounts = Table::new();
    accounts.set_implicit(true);
    let mut t = Table::new();
    for f in fields {
        match f {
            Field::Str(k, v) => {
                t.insert(k, toml_edit::value(v.as_str()));
            }
            Field::List(k, v) => {
                let a: toml_edit::Array = v.iter().map(String::as_str).collect();
                t.insert(k, Item::Value(Value::Array(a)));
            }
            Field::Map(k, v) => {
                let mut m = InlineTable::new();
                for (a, b) in v {
                    m.insert(a, b.as_str().into());
                }
                t.insert(k, Item::Value(Value::InlineTable(m)));
            }
            Field::Server(k, host, port, tls) => {
                let mut m = InlineTable::new();
                m.insert("host", host.as_str().into());
                m.insert("port", i64::from(*port).into());
                m.insert("tls", (*tls).into());
                t.insert(k, Item::Value(Value::InlineTable(m)));
            }
        }
    }
    accounts.insert(name, Item::Table(t));
    doc.insert("accounts", Item::Table(accounts));
    if let Some(kind) = store {
        let mut s = Table::new();
        s.insert("kind", toml_edit::value(kind));
        doc.insert("store", Item::Table(s));
    }
    doc.to_string()
}

/// What the file holds now: its text, or `None` when there is no file yet.
pub fn read_existing(path: &Path) -> Result<Option<String>> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
            Error::config(format!("{}: not UTF-8 text", path.display()))
                .with_remedy("A TOML file is UTF-8; fix or move it, then run mailtoken add again.")
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}: {e}", path.display()))),
    }
}

/// Refuses a name the file already has, and a file that does not load (its error
/// names the line and column).
pub fn check_existing(path: &Path, text: &str, name: &str) -> Result<Config> {
    let config = Config::parse(path, text)?;
    if config.accounts.contains_key(name) {
        return Err(Error::usage(format!(
            "{} already has an account named {name}",
            path.display()
        ))
        .with_remedy(format!(
            "mailtoken add never replaces an account: give another name (mailtoken add ADDRESS NAME), or edit [accounts.{name}] by hand."
        )));
    }
    Ok(config)
}

/// The whole new text: the old one unchanged, a blank line, the block.
pub fn appended(old: Option<&str>, block: &str) -> String {
    match old {
        None | Some("") => block.to_owned(),
        Some(t) if t.ends_with("\n\n") => format!("{t}{block}"),
        Some(t) if t.ends_with('\n') => format!("{t}\n{block}"),
        Some(t) => format!("{t}\n\n{block}"),
    }
}

/// Writes `text` to `path` through a temporary file beside it, keeping the old file's
/// mode (0600 for a new one, in a 0700 directory made if needed).
pub fn replace(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.as_os_str().is_empty() && !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(format!("creating {}: {e}", dir.display())))?;
    }
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o600);
    let mut tmp = tempfile::Builder::new()
        .prefix(".config.toml.")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })
        .map_err(|e| Error::io(format!("creating a file in {}: {e}", dir.display())))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::io(format!("writing {}: {e}", path.display())))?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("{}: {e}", path.display())))?;
    tmp.persist(path)
        .map_err(|e| Error::io(format!("replacing {}: {}", path.display(), e.error)))?;
    Ok(())
}

/// Opens a file for appending only if it does not exist yet (for backups).
pub fn create_new(path: &Path, mode: u32) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_quotes_values_as_toml() {
        let b = block(
            "work",
            &[
                Field::Str("provider", "microsoft".into()),
                Field::Str("user", "bob \"the\" o'neil@contoso.example".into()),
                Field::List("scopes", vec!["openid".into(), "mail".into()]),
                Field::Map("auth_params", vec![("prompt".into(), "consent".into())]),
                Field::Server("imap", "imap.example".into(), 993, "implicit"),
            ],
            Some("file"),
        );
        assert!(b.starts_with("[accounts.work]\n"), "{b}");
        let v: toml::Value = toml::from_str(&b).unwrap();
        let a = &v["accounts"]["work"];
        assert_eq!(
            a["user"].as_str(),
            Some("bob \"the\" o'neil@contoso.example")
        );
        assert_eq!(a["imap"]["port"].as_integer(), Some(993));
        assert_eq!(a["auth_params"]["prompt"].as_str(), Some("consent"));
        assert_eq!(v["store"]["kind"].as_str(), Some("file"));
        // Names that are not bare keys are quoted.
        assert!(block("a.b", &[], None).starts_with("[accounts.\"a.b\"]"));
    }

    #[test]
    fn appending_keeps_every_old_byte() {
        let old = "# mine\n[accounts.a]   # odd  spacing\nuser='x'";
        let new = appended(Some(old), "[accounts.b]\n");
        assert!(new.starts_with(old));
        assert_eq!(&new[old.len()..], "\n\n[accounts.b]\n");
        assert_eq!(appended(Some("x = 1\n\n"), "B"), "x = 1\n\nB");
        assert_eq!(appended(None, "B"), "B");
    }
}
