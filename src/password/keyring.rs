//! Where app passwords live: the OS keyring, under names other mail programs know.
//!
//! On the Secret Service (Linux, the BSDs) an app password is one item in the default
//! collection with the attributes msmtp searches for: `host` (the SMTP host), `service`
//! = `smtp`, `user`. msmtp 1.8.23 (Debian 12, built with libsecret) sends exactly these
//! three in its SearchItems call, with no `xdg:schema`, so it finds such an item
//! whatever else the item carries (watched on the bus with dbus-monitor; and
//! tests/integration/app_password.rs has the real msmtp send with no password in its config). Our
//! own lookup searches the same three attributes, so a password stored the way msmtp's
//! manual says (`secret-tool store --label=msmtp host H service smtp user U`) is found
//! too.
//!
//! keyring-core's Secret Service store cannot make such an item: it always sets
//! `service` and `username` itself and finds its items by those two alone, so the same
//! user on a second SMTP host would overwrite the first item, and other attributes can
//! only be added once the item exists (a second call that can fail halfway). The
//! `secret-service` crate that store is built on (the same version, already in the
//! dependency tree) creates the item with exactly our attributes in one call.
//!
//! Elsewhere (the macOS Keychain, Windows) keyring-core's platform store keeps the
//! password as an ordinary entry; msmtp on macOS looks in the Keychain's internet
//! passwords instead, so there only `mailtoken password` finds it.

use crate::error::{Error, Result};
use crate::secret::Secret;
use std::collections::HashMap;

/// The attributes an app password is stored and found by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemKey {
    pub host: String,
    /// `smtp` (what msmtp asks for), or `imap` / `pop3` for an account without SMTP.
    pub service: &'static str,
    pub user: String,
}

impl ItemKey {
    pub fn attributes(&self) -> HashMap<&str, &str> {
        HashMap::from([
            ("host", self.host.as_str()),
            ("service", self.service),
            ("user", self.user.as_str()),
        ])
    }

    /// For people: `host=smtp.mail.me.com service=smtp user=carol@icloud.com`.
    pub fn describe(&self) -> String {
        format!(
            "host={} service={} user={}",
            self.host, self.service, self.user
        )
    }
}

/// A place that keeps app passwords.
pub trait AppPasswordStore {
    /// The password stored under `key`, or `None`.
    fn get(&self, key: &ItemKey) -> Result<Option<Secret>>;
    /// Stores `password` under `key`, replacing what was there; `label` is for people
    /// (keyring managers such as seahorse show it).
    fn set(&self, key: &ItemKey, label: &str, password: &Secret) -> Result<()>;
    /// Forgets the password; `Ok(false)` when none was stored.
    fn delete(&self, key: &ItemKey) -> Result<bool>;
    /// For people: "keyring (Secret Service)".
    fn describe(&self) -> String;
}

/// Connects to the platform's keyring.
pub fn open() -> Result<Box<dyn AppPasswordStore>> {
    #[cfg(all(
        unix,
        not(any(target_os = "macos", target_os = "ios", target_os = "android"))
    ))]
    let store = ss_store::SecretServiceStore::open()?;
    #[cfg(not(all(
        unix,
        not(any(target_os = "macos", target_os = "ios", target_os = "android"))
    )))]
    let store = EntryStore::new(
        crate::store::keyring::platform_store().map_err(|e| unreachable(&e.to_string()))?,
    );
    Ok(Box::new(store))
}

fn unreachable(reason: &str) -> Error {
    Error::unavailable(format!("the keyring is not reachable: {reason}")).with_remedy(
        "App passwords live in the OS keyring, where msmtp looks for them too: start a Secret \
         Service such as gnome-keyring (it runs in most desktop sessions).",
    )
}

fn locked(reason: &str) -> Error {
    Error::noperm(format!("the keyring is locked ({reason})")).with_remedy(
        "Unlock it: log in to the desktop session, or run `gnome-keyring-daemon --unlock` \
         (it reads the keyring password on stdin).",
    )
}

fn not_text(key: &ItemKey) -> Error {
    Error::data(format!(
        "the keyring item {} does not hold text",
        key.describe()
    ))
    .with_remedy("Store the app password again with `mailtoken set-password ACCOUNT`.")
}

#[cfg(all(
    unix,
    not(any(target_os = "macos", target_os = "ios", target_os = "android"))
))]
mod ss_store {
    use super::{AppPasswordStore, ItemKey, locked, not_text, unreachable};
    use crate::error::{Error, Result};
    use crate::secret::Secret;
    use secret_service::blocking::{Item, SecretService};
    use secret_service::{EncryptionType, Error as SsError};
    use zeroize::Zeroizing;

    /// What secret-tool stores too; keyring managers show such secrets as text.
    const CONTENT_TYPE: &str = "text/plain";

    pub struct SecretServiceStore {
        ss: SecretService<'static>,
    }

    /// Maps an error met while `op` ("reading", ...) the item of `key`.
    fn ss_error(e: SsError, op: &str, key: &ItemKey) -> Error {
        match e {
            SsError::Locked | SsError::Prompt | SsError::PromptDisconnected | SsError::NoResult => {
                locked(&format!("{op} the item {}: {e}", key.describe()))
            }
            SsError::Unavailable => unreachable(&e.to_string()),
            other => Error::io(format!(
                "the keyring failed while {op} the item {}: {}",
                key.describe(),
                crate::error::chain(&other)
            )),
        }
    }

    impl SecretServiceStore {
        pub fn open() -> Result<Self> {
            // Dh: the secret is encrypted on the bus, as keyring-core's store does it.
            SecretService::connect(EncryptionType::Dh)
                .map(|ss| SecretServiceStore { ss })
                .map_err(|e| {
                    let text = crate::error::chain(&e);
                    if text.contains("ServiceUnknown") {
                        unreachable(&format!("no Secret Service on the session bus: {text}"))
                    } else {
                        unreachable(&text)
                    }
                })
        }

        /// Every item with the key's attributes (and perhaps others), unlocked.
        fn items(&self, key: &ItemKey, op: &str) -> Result<Vec<Item<'_>>> {
            let found = self
                .ss
                .search_items(key.attributes())
                .map_err(|e| ss_error(e, op, key))?;
            if !found.locked.is_empty() {
                // Where a desktop session runs, this asks for the keyring password.
                let refs: Vec<&Item> = found.locked.iter().collect();
                self.ss
                    .unlock_all(&refs)
                    .map_err(|e| ss_error(e, op, key))?;
            }
            Ok(found.unlocked.into_iter().chain(found.locked).collect())
        }
    }

    impl AppPasswordStore for SecretServiceStore {
        fn get(&self, key: &ItemKey) -> Result<Option<Secret>> {
            let items = self.items(key, "reading")?;
            // Several only when made by hand (set-password keeps one): take the newest.
            let newest = items.iter().max_by_key(|i| i.get_modified().unwrap_or(0));
            let Some(item) = newest else {
                return Ok(None);
            };
            let bytes = Zeroizing::new(item.get_secret().map_err(|e| ss_error(e, "reading", key))?);
            let text = std::str::from_utf8(&bytes).map_err(|_| not_text(key))?;
            Ok(Some(Secret::new(text)))
        }

        fn set(&self, key: &ItemKey, label: &str, password: &Secret) -> Result<()> {
            let items = self.items(key, "writing")?;
            let secret = password.expose().as_bytes();
            if let Some((first, rest)) = items.split_first() {
                // Keep the existing item (and its label, perhaps msmtp's own), and only
                // it: msmtp takes whichever item the keyring lists first.
                first
                    .set_secret(secret, CONTENT_TYPE)
                    .map_err(|e| ss_error(e, "writing", key))?;
                for extra in rest {
                    extra
                        .delete()
                        .map_err(|e| ss_error(e, "removing a second copy of", key))?;
                }
                return Ok(());
            }
            let collection = self
                .ss
                .get_default_collection()
                .map_err(|e| ss_error(e, "writing", key))?;
            collection
                .ensure_unlocked()
                .map_err(|e| ss_error(e, "writing", key))?;
            collection
                .create_item(label, key.attributes(), secret, true, CONTENT_TYPE)
                .map_err(|e| ss_error(e, "writing", key))?;
            Ok(())
        }

        fn delete(&self, key: &ItemKey) -> Result<bool> {
            let items = self.items(key, "deleting")?;
            for item in &items {
                item.delete().map_err(|e| ss_error(e, "deleting", key))?;
            }
            Ok(!items.is_empty())
        }

        fn describe(&self) -> String {
            "keyring (Secret Service)".into()
        }
    }
}

/// An app password as one entry of a keyring-core store: the Keychain on macOS, the
/// Credential Manager on Windows (and the mock store in the tests below).
#[cfg(any(
    test,
    not(all(
        unix,
        not(any(target_os = "macos", target_os = "ios", target_os = "android"))
    ))
))]
pub struct EntryStore {
    store: std::sync::Arc<keyring_core::CredentialStore>,
}

#[cfg(any(
    test,
    not(all(
        unix,
        not(any(target_os = "macos", target_os = "ios", target_os = "android"))
    ))
))]
impl EntryStore {
    /// Not `mailtoken`, the service of token records: an account name can never
    /// collide with a password entry.
    const SERVICE: &str = "mailtoken app password";

    pub fn new(store: std::sync::Arc<keyring_core::CredentialStore>) -> Self {
        EntryStore { store }
    }

    /// `smtp://carol@icloud.com@smtp.mail.me.com`, the way msmtp labels its items.
    fn entry(&self, key: &ItemKey) -> Result<keyring_core::Entry> {
        let user = format!("{}://{}@{}", key.service, key.user, key.host);
        self.store
            .build(Self::SERVICE, &user, None)
            .map_err(|e| entry_error(e, key))
    }
}

#[cfg(any(
    test,
    not(all(
        unix,
        not(any(target_os = "macos", target_os = "ios", target_os = "android"))
    ))
))]
fn entry_error(e: keyring_core::Error, key: &ItemKey) -> Error {
    use keyring_core::Error as K;
    match e {
        K::NoStorageAccess(inner) => locked(&inner.to_string()),
        K::BadEncoding(_) | K::BadDataFormat(..) => not_text(key),
        other => Error::io(format!(
            "the keyring failed on the entry {}: {other}",
            key.describe()
        )),
    }
}

#[cfg(any(
    test,
    not(all(
        unix,
        not(any(target_os = "macos", target_os = "ios", target_os = "android"))
    ))
))]
impl AppPasswordStore for EntryStore {
    fn get(&self, key: &ItemKey) -> Result<Option<Secret>> {
        match self.entry(key)?.get_password() {
            Ok(p) => Ok(Some(Secret::new(p))),
            Err(keyring_core::Error::NoEntry) => Ok(None),
            Err(e) => Err(entry_error(e, key)),
        }
    }

    fn set(&self, key: &ItemKey, _label: &str, password: &Secret) -> Result<()> {
        self.entry(key)?
            .set_password(password.expose())
            .map_err(|e| entry_error(e, key))
    }

    fn delete(&self, key: &ItemKey) -> Result<bool> {
        match self.entry(key)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring_core::Error::NoEntry) => Ok(false),
            Err(e) => Err(entry_error(e, key)),
        }
    }

    fn describe(&self) -> String {
        if cfg!(target_os = "macos") {
            "keyring (macOS Keychain)".into()
        } else if cfg!(target_os = "windows") {
            "keyring (Windows Credential Manager)".into()
        } else {
            "keyring".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExitCode;

    fn key(host: &str) -> ItemKey {
        ItemKey {
            host: host.into(),
            service: "smtp",
            user: "carol@icloud.com".into(),
        }
    }

    #[test]
    fn the_attributes_are_msmtps() {
        let k = key("smtp.mail.me.com");
        let a = k.attributes();
        assert_eq!(a.len(), 3);
        assert_eq!(a["host"], "smtp.mail.me.com");
        assert_eq!(a["service"], "smtp");
        assert_eq!(a["user"], "carol@icloud.com");
        assert_eq!(
            k.describe(),
            "host=smtp.mail.me.com service=smtp user=carol@icloud.com"
        );
    }

    #[test]
    fn entry_store_round_trip_keeps_hosts_apart() {
        let s = EntryStore::new(keyring_core::mock::Store::new().unwrap());
        let (a, b) = (key("smtp.a.example"), key("smtp.b.example"));
        assert_eq!(s.get(&a).unwrap(), None);
        s.set(&a, "l", &Secret::new("pw-a")).unwrap();
        s.set(&b, "l", &Secret::new("pw-b")).unwrap();
        assert_eq!(s.get(&a).unwrap().unwrap().expose(), "pw-a");
        s.set(&a, "l", &Secret::new("pw-a2")).unwrap();
        assert_eq!(s.get(&a).unwrap().unwrap().expose(), "pw-a2");
        assert_eq!(s.get(&b).unwrap().unwrap().expose(), "pw-b");
        assert!(s.delete(&a).unwrap());
        assert!(!s.delete(&a).unwrap());
        assert_eq!(s.get(&a).unwrap(), None);
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = locked("prompt dismissed");
        assert_eq!(e.code, ExitCode::NoPerm);
        assert!(e.remedy.unwrap().contains("--unlock"));
        let e = unreachable("no bus");
        assert_eq!(e.code, ExitCode::Unavailable);
        assert!(e.message.contains("no bus"));
        assert_eq!(not_text(&key("h")).code, ExitCode::DataErr);
    }
}
