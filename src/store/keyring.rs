//! The keyring store: each account's record as compact JSON in one secret of the OS
//! keyring (service `mailtoken`, user = the account name): the Secret Service on Linux
//! and the BSDs, the login Keychain on macOS.
//!
//! Every call is a blocking IPC round trip; `load` makes one search and one read, since
//! `mailtoken token` runs it on every call of a mail program. Each is bounded by
//! `[store] timeout` (60 s by default, as for store commands): a keyring daemon that
//! stops answering (stopped, wedged, an unlock prompt nobody sees) ends in an error a
//! person reads, and a refresh's new tokens then go to the rescue record, instead of a
//! mail program waiting forever. The call runs on a thread of its own, which is left to
//! finish by itself when the bound passes.

use super::{TokenStore, json_error};
use crate::error::{Error, Result};
use crate::record::TokenRecord;
use keyring_core::{CredentialStore, Entry, Error as KError};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use zeroize::Zeroizing;

const SERVICE: &str = "mailtoken";

/// The user of the entry `open` looks up. Not a valid account name (it has spaces), so it
/// can never exist: the lookup only proves that the keyring answers searches.
const PROBE_USER: &str = "mailtoken probe (never stored)";

pub struct KeyringStore {
    inner: Arc<Inner>,
    /// How long one call may take.
    timeout: Duration,
}

/// The connection, shared with the thread of the call in progress.
struct Inner {
    store: Mutex<Arc<CredentialStore>>,
    /// Connect again when the platform's service fails (only for the real one).
    reconnect: bool,
}

/// Why the keyring could not be opened. `auto` falls back to the file store only when no
/// keyring is reachable at all.
pub(crate) enum OpenError {
    Unreachable(String),
    Failed(Error),
}

impl From<OpenError> for Error {
    fn from(e: OpenError) -> Error {
        match e {
            OpenError::Unreachable(reason) => {
                Error::unavailable(format!("the keyring is not reachable: {reason}")).with_remedy(
                    "Set `[store] kind = \"file\"` in the config to keep tokens in a 0600 file, \
                     or start a Secret Service such as gnome-keyring.",
                )
            }
            OpenError::Failed(e) => e,
        }
    }
}

impl KeyringStore {
    /// Connects to the platform keyring and checks that it answers, each call bounded
    /// by `timeout`.
    pub fn open(timeout: Duration) -> Result<Self> {
        Ok(Self::try_open(timeout)?)
    }

    pub(crate) fn try_open(timeout: Duration) -> Result<Self, OpenError> {
        // On Linux this connects to the session bus and opens a Secret Service session (a
        // real method call), so "no bus" and "no org.freedesktop.secrets" fail here, fast.
        let opened = bounded(timeout, "connecting", PROBE_USER, || {
            platform_store().map_err(|e| OpenError::Unreachable(unreachable_reason(&e)))
        })
        .map_err(OpenError::Failed)??;
        let keyring = KeyringStore {
            inner: Arc::new(Inner {
                store: Mutex::new(opened),
                reconnect: true,
            }),
            timeout,
        };
        // One search round trip: a provider that accepts sessions but cannot search
        // (or refuses access) is caught before any token is trusted to it. A locked
        // collection without our items still passes; `save` then reports it as locked.
        // A keyring that does not answer in time is not "unreachable": `auto` must not
        // fall back to the file store while the keyring may hold the tokens.
        match keyring
            .call("checking", PROBE_USER, |i| {
                i.with_entry(PROBE_USER, Entry::get_password)
            })
            .map_err(OpenError::Failed)?
        {
            Ok(_) | Err(KError::NoEntry) => Ok(keyring),
            Err(KError::PlatformFailure(e)) => Err(OpenError::Unreachable(e.to_string())),
            Err(e) => Err(OpenError::Failed(keyring_error(e, "checking", PROBE_USER))),
        }
    }

    /// A keyring store on top of any keyring-core store (tests use the mock store).
    pub fn with_store(store: Arc<CredentialStore>) -> Self {
        KeyringStore {
            inner: Arc::new(Inner {
                store: Mutex::new(store),
                reconnect: false,
            }),
            timeout: super::command::DEFAULT_TIMEOUT,
        }
    }

    /// `op` on the connection, on a thread of its own, given up after the timeout.
    fn call<T: Send + 'static>(
        &self,
        what: &'static str,
        account: &str,
        op: impl FnOnce(&Inner) -> T + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        bounded(self.timeout, what, account, move || op(&inner))
    }
}

/// Runs `op` on a thread of its own and waits for it up to `timeout`; after that the
/// thread is left to end by itself (its result, when it comes, is dropped).
fn bounded<T: Send + 'static>(
    timeout: Duration,
    what: &'static str,
    account: &str,
    op: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("keyring".into())
        .spawn(move || {
            let _ = tx.send(op());
        })
        .map_err(|e| Error::io(format!("cannot start a thread for the keyring: {e}")))?;
    match rx.recv_timeout(timeout) {
        Ok(r) => Ok(r),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::temp(format!(
            "the keyring did not answer within {} ({what}{})",
            humantime::format_duration(timeout),
            if account == PROBE_USER {
                String::new()
            } else {
                format!(" the entry {}", entry_name(account))
            }
        ))
        .with_remedy(
            "See whether it waits for you (an unlock prompt), or restart it (`gnome-keyring-daemon --replace`); `timeout` in [store] sets the limit.",
        )),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Err(Error::software("the keyring call's thread died"))
        }
    }
}

impl Inner {
    /// Runs `op` on the account's entry. When the platform's service fails (the Secret
    /// Service restarted, say by `gnome-keyring-daemon --replace`, so the session this
    /// store opened is gone: "NoSession"), it connects again once and retries, so a
    /// long-running daemon does not stay broken until it is restarted itself.
    fn with_entry<T>(
        &self,
        account: &str,
        op: impl Fn(&Entry) -> keyring_core::Result<T>,
    ) -> keyring_core::Result<T> {
        let store = self.store.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match store.build(SERVICE, account, None).and_then(|e| op(&e)) {
            Err(KError::PlatformFailure(_)) if self.reconnect => {
                let fresh = platform_store()?;
                *self.store.lock().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
                fresh.build(SERVICE, account, None).and_then(|e| op(&e))
            }
            other => other,
        }
    }
}

#[cfg(all(
    unix,
    not(any(target_os = "macos", target_os = "ios", target_os = "android"))
))]
pub(crate) fn platform_store() -> keyring_core::Result<Arc<CredentialStore>> {
    Ok(zbus_secret_service_keyring_store::Store::new()?)
}

#[cfg(target_os = "macos")]
pub(crate) fn platform_store() -> keyring_core::Result<Arc<CredentialStore>> {
    Ok(apple_native_keyring_store::keychain::Store::new()?)
}

#[cfg(not(any(
    all(
        unix,
        not(any(target_os = "macos", target_os = "ios", target_os = "android"))
    ),
    target_os = "macos"
)))]
pub(crate) fn platform_store() -> keyring_core::Result<Arc<CredentialStore>> {
    Err(KError::NotSupportedByStore(
        "no keyring is supported on this platform".into(),
    ))
}

/// The platform's words for why it could not connect, minus keyring-core's prefix.
fn unreachable_reason(e: &KError) -> String {
    match e {
        KError::PlatformFailure(inner) => {
            let text = inner.to_string();
            if text.contains("ServiceUnknown") {
                format!("no Secret Service on the session bus: {text}")
            } else {
                text
            }
        }
        other => other.to_string(),
    }
}

fn locked_remedy() -> &'static str {
    if cfg!(target_os = "macos") {
        "Unlock the login keychain (log in to the desktop session, or `security unlock-keychain`)."
    } else {
        "Unlock it: log in to the desktop session, or run `gnome-keyring-daemon --unlock` \
         (it reads the password on stdin). Or set `[store] kind = \"file\"` in the config."
    }
}

/// Maps a keyring error met while `op` ("reading", ...) the account's entry. Never shows
/// secret bytes: the variants that carry them (`BadEncoding`, `BadDataFormat`) get our words.
fn keyring_error(e: KError, op: &str, account: &str) -> Error {
    let entry = entry_name(account);
    let login = format!("Run `mailtoken login {account}` to replace it.");
    match e {
        KError::NoStorageAccess(inner) => {
            Error::noperm(format!("the keyring is locked ({op} the entry {entry}: {inner})"))
                .with_remedy(locked_remedy())
        }
        KError::BadEncoding(_) | KError::BadDataFormat(..) => {
            Error::data(format!("the keyring entry {entry} does not hold text")).with_remedy(login)
        }
        KError::Ambiguous(entries) => Error::data(format!("{} keyring entries match {entry}", entries.len()))
            .with_remedy(format!(
                "Remove the extra ones (e.g. with seahorse, or all of them with \
                 `secret-tool clear service {SERVICE} username {account}`), then run `mailtoken login {account}`."
            )),
        KError::TooLong(what, limit) => {
            Error::io(format!("the record of {account} is too large for this keyring ({what} is limited to {limit})"))
                .with_remedy("Set `[store] kind = \"file\"` in the config.")
        }
        // PlatformFailure (the service failed or vanished) and anything newer.
        other => Error::io(format!("the keyring failed while {op} the entry {entry}: {other}")),
    }
}

/// Names an entry for messages: `service "mailtoken", user "alice"`.
fn entry_name(account: &str) -> String {
    format!("(service \"{SERVICE}\", user \"{account}\")")
}

impl TokenStore for KeyringStore {
    fn load(&self, account: &str) -> Result<Option<TokenRecord>> {
        let a = account.to_owned();
        let read = self.call("reading", account, move |i| {
            i.with_entry(&a, Entry::get_password).map(Zeroizing::new)
        })?;
        let text = match read {
            Ok(t) => t,
            Err(KError::NoEntry) => return Ok(None),
            Err(e) => return Err(keyring_error(e, "reading", account)),
        };
        let record = serde_json::from_str(&text).map_err(|e| {
            Error::data(format!(
                "the keyring entry {} is not a mailtoken record: {}",
                entry_name(account),
                json_error(&e)
            ))
            .with_remedy(format!("Run `mailtoken login {account}` to replace it."))
        })?;
        Ok(Some(record))
    }

    fn save(&self, account: &str, record: &TokenRecord) -> Result<()> {
        let json = Zeroizing::new(
            serde_json::to_string(record)
                .map_err(|e| Error::software(format!("serializing a record: {e}")))?,
        );
        let a = account.to_owned();
        self.call("writing", account, move |i| {
            i.with_entry(&a, |e| e.set_password(&json))
        })?
        .map_err(|e| keyring_error(e, "writing", account))
    }

    fn delete(&self, account: &str) -> Result<bool> {
        let a = account.to_owned();
        match self.call("deleting", account, move |i| {
            i.with_entry(&a, Entry::delete_credential)
        })? {
            Ok(()) => Ok(true),
            Err(KError::NoEntry) => Ok(false),
            Err(e) => Err(keyring_error(e, "deleting", account)),
        }
    }

    fn describe(&self) -> String {
        let kind = if cfg!(target_os = "macos") {
            "macOS Keychain"
        } else {
            "Secret Service"
        };
        format!("keyring ({kind})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExitCode;
    use crate::store::tests::record;
    use keyring_core::mock;

    fn mock_store() -> (Arc<mock::Store>, KeyringStore) {
        let store = mock::Store::new().unwrap();
        (store.clone(), KeyringStore::with_store(store))
    }

    /// Makes the next call on the account's mock entry fail with `err`.
    fn fail_next(store: &mock::Store, account: &str, err: KError) {
        use keyring_core::api::CredentialStoreApi;
        let entry = store.build(SERVICE, account, None).unwrap();
        entry
            .as_any()
            .downcast_ref::<mock::Cred>()
            .unwrap()
            .set_error(err);
    }

    #[test]
    fn a_keyring_call_that_does_not_return_is_given_up_at_the_timeout() {
        let t = std::time::Instant::now();
        let e = bounded(Duration::from_millis(100), "writing", "alice", || {
            std::thread::sleep(Duration::from_secs(5))
        })
        .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert_eq!(e.code, ExitCode::TempFail);
        assert!(
            e.message
                .contains("did not answer within 100ms (writing the entry (service \"mailtoken\", user \"alice\"))"),
            "{}",
            e.message
        );
        assert!(e.remedy.unwrap().contains("`timeout` in [store]"));
        assert_eq!(
            bounded(Duration::from_secs(5), "reading", "alice", || 7).unwrap(),
            7
        );
    }

    #[test]
    fn round_trip_and_delete() {
        let (_m, ks) = mock_store();
        assert_eq!(ks.load("alice").unwrap(), None);
        ks.save("alice", &record("rt")).unwrap();
        assert_eq!(ks.load("alice").unwrap(), Some(record("rt")));
        assert!(ks.delete("alice").unwrap());
        assert!(!ks.delete("alice").unwrap());
        assert_eq!(ks.load("alice").unwrap(), None);
    }

    #[test]
    fn the_secret_is_the_record_as_json() {
        let (m, ks) = mock_store();
        ks.save("alice", &record("rt")).unwrap();
        use keyring_core::api::CredentialStoreApi;
        let raw = m
            .build(SERVICE, "alice", None)
            .unwrap()
            .get_password()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(v["refresh_token"], "rt");
    }

    #[test]
    fn a_value_that_is_not_a_record_is_a_data_error_naming_the_entry() {
        let (m, ks) = mock_store();
        use keyring_core::api::CredentialStoreApi;
        m.build(SERVICE, "alice", None)
            .unwrap()
            .set_password("ya29.not-json")
            .unwrap();
        let err = ks.load("alice").unwrap_err();
        assert_eq!(err.code, ExitCode::DataErr);
        let shown = err.to_string();
        assert!(
            shown.contains("(service \"mailtoken\", user \"alice\")"),
            "{shown}"
        );
        assert!(shown.contains("mailtoken login alice"), "{shown}");
        assert!(!shown.contains("ya29"), "{shown}");
    }

    #[test]
    fn a_locked_keyring_is_a_noperm_error_with_a_remedy() {
        let (m, ks) = mock_store();
        let locked = || KError::NoStorageAccess("SS error: prompt dismissed".into());
        fail_next(&m, "alice", locked());
        let err = ks.load("alice").unwrap_err();
        assert_eq!(err.code, ExitCode::NoPerm);
        assert!(
            err.message.starts_with("the keyring is locked"),
            "{}",
            err.message
        );
        assert!(err.remedy.unwrap().contains("unlock"));
        fail_next(&m, "alice", locked());
        assert_eq!(
            ks.save("alice", &record("rt")).unwrap_err().code,
            ExitCode::NoPerm
        );
    }

    #[test]
    fn undecodable_secrets_are_not_shown() {
        let (m, ks) = mock_store();
        fail_next(&m, "alice", KError::BadEncoding(b"ya29.\xff".to_vec()));
        let err = ks.load("alice").unwrap_err();
        assert_eq!(err.code, ExitCode::DataErr);
        assert!(!err.to_string().contains("ya29"), "{err}");
    }

    #[test]
    fn platform_failures_after_opening_are_io_errors() {
        let (m, ks) = mock_store();
        fail_next(
            &m,
            "alice",
            KError::PlatformFailure("zbus error: connection reset".into()),
        );
        let err = ks.delete("alice").unwrap_err();
        assert_eq!(err.code, ExitCode::IoErr);
        assert!(err.message.contains("connection reset"), "{}", err.message);
    }

    #[test]
    fn an_unreachable_keyring_is_unavailable_with_a_remedy() {
        let err = Error::from(OpenError::Unreachable("no bus".into()));
        assert_eq!(err.code, ExitCode::Unavailable);
        assert!(err.remedy.unwrap().contains("kind = \"file\""));
    }
}
