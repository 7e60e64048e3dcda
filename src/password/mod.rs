//! App passwords, for providers that give mail programs no OAuth (iCloud, Fastmail,
//! Yahoo) and for Gmail users with 2-Step Verification who prefer one: an account with
//! `auth = "password"`. The password lives in the OS keyring under the attributes msmtp
//! looks it up by (`keyring.rs`), so msmtp finds it with no password line in its
//! config, and `mailtoken password` (or `token`) prints it for every other program.

pub mod input;
pub mod keyring;

use crate::config::Account;
use crate::error::{Error, Result};
use crate::secret::Secret;
use keyring::{AppPasswordStore, ItemKey};

/// The keyring attributes of the account's password: its SMTP host with service
/// `smtp`, as msmtp asks; an account without SMTP uses its IMAP host (`imap`) or POP3
/// host (`pop3`, what mpop asks).
pub fn item_key(account: &Account) -> Result<ItemKey> {
    let (server, service) = match (&account.smtp, &account.imap, &account.pop) {
        (Some(s), _, _) => (s, "smtp"),
        (None, Some(s), _) => (s, "imap"),
        (None, None, Some(s)) => (s, "pop3"),
        (None, None, None) => {
            return Err(Error::config(format!(
                "account {} has no server to file its app password under",
                account.name
            ))
            .with_remedy(format!(
                "Add smtp = {{ host = \"...\" }} to [accounts.{}].",
                account.name
            )));
        }
    };
    Ok(ItemKey {
        host: server.host.to_string(),
        service,
        user: account.user.clone(),
    })
}

/// The account must be an app-password one: for the commands that make sense only
/// there (`password`, `set-password`).
pub fn require_app_password(account: &Account) -> Result<()> {
    if account.uses_app_password() {
        return Ok(());
    }
    let n = &account.name;
    Err(Error::usage(format!(
        "account {n} signs in with OAuth, not an app password: `mailtoken token {n}` prints its access token"
    ))
    .with_remedy(format!(
        "To use an app password instead, set auth = \"password\" in [accounts.{n}] (and remove the OAuth keys), then run `mailtoken set-password {n}`."
    )))
}

fn not_stored(account: &Account, store: &dyn AppPasswordStore, key: &ItemKey) -> Error {
    let n = &account.name;
    Error::noperm(format!(
        "no app password for {n} in the {} yet (nothing under {})",
        store.describe(),
        key.describe()
    ))
    .with_remedy(format!("Run `mailtoken set-password {n}` to store it."))
}

/// The account's stored password; 77 when there is none.
pub fn lookup(account: &Account) -> Result<Secret> {
    require_app_password(account)?;
    let key = item_key(account)?;
    let store = keyring::open()?;
    lookup_in(&*store, account, &key)
}

fn lookup_in(store: &dyn AppPasswordStore, account: &Account, key: &ItemKey) -> Result<Secret> {
    match store.get(key)? {
        Some(p) if !p.is_empty() => Ok(p),
        _ => Err(not_stored(account, store, key)),
    }
}

/// `mailtoken set-password ACCOUNT`: reads the password (a hidden prompt on a terminal,
/// else the first line of stdin) and stores it. Returns what to tell the person.
pub fn set_password(account: &Account) -> Result<String> {
    require_app_password(account)?;
    let key = item_key(account)?;
    let prompt = format!("App password for {} ({}): ", account.user, account.name);
    if std::io::IsTerminal::is_terminal(&std::io::stdin())
        && let Some(at) = account.provider.and_then(|p| p.app_passwords)
    {
        eprintln!("Create an app password at {at}, then paste it here (it is not shown).");
    }
    // Read before the keyring is opened: its D-Bus connection starts threads, and the
    // terminal's signals must reach the reader (see input.rs).
    let password = input::read_password(&prompt)?;
    let store = keyring::open()?;
    store_in(&*store, account, &key, &password)
}

/// Stores an app password read earlier (by `add`, which asks everything before it
/// writes anything). Returns what to tell the person.
pub fn store_password(account: &Account, password: &Secret) -> Result<String> {
    require_app_password(account)?;
    let key = item_key(account)?;
    let store = keyring::open()?;
    store_in(&*store, account, &key, password)
}

fn store_in(
    store: &dyn AppPasswordStore,
    account: &Account,
    key: &ItemKey,
    password: &Secret,
) -> Result<String> {
    let label = format!(
        "App password for {} on {} (mailtoken account {})",
        account.user, key.host, account.name
    );
    store.set(key, &label, password)?;
    let mut note = format!(
        "Stored the app password of {} in the {}, under {}.",
        account.name,
        store.describe(),
        key.describe()
    );
    if key.service == "smtp" && store.describe().contains("Secret Service") {
        note.push_str(
            " msmtp finds it there by itself: leave password and passwordeval out of its account.",
        );
    }
    Ok(note)
}

/// `logout` of an app-password account: forgets the stored password.
pub fn forget(account: &Account) -> Result<(bool, String)> {
    let key = item_key(account)?;
    let store = keyring::open()?;
    Ok((store.delete(&key)?, store.describe()))
}

/// For `status`: whether a password is stored, where, and under which attributes.
pub struct Stored {
    pub stored: Result<bool>,
    pub store: String,
}

pub fn stored(account: &Account) -> Stored {
    let key = match item_key(account) {
        Ok(k) => k,
        Err(e) => {
            return Stored {
                stored: Err(e),
                store: "keyring".into(),
            };
        }
    };
    match keyring::open() {
        Ok(store) => Stored {
            stored: store.get(&key).map(|p| p.is_some_and(|p| !p.is_empty())),
            store: format!("{}, {}", store.describe(), key.describe()),
        },
        Err(e) => Stored {
            stored: Err(e),
            store: format!("keyring, {}", key.describe()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExitCode;
    use keyring::EntryStore;

    use crate::config::test_account as account;

    #[test]
    fn the_item_is_filed_under_the_smtp_host_as_msmtp_looks_it_up() {
        let a = account("[accounts.c]\nprovider = \"icloud\"\nuser = \"carol@icloud.com\"\n");
        assert_eq!(
            item_key(&a).unwrap(),
            ItemKey {
                host: "smtp.mail.me.com".into(),
                service: "smtp",
                user: "carol@icloud.com".into()
            }
        );
        let a = account(
            "[accounts.c]\nauth = \"password\"\nuser = \"u@x.org\"\npop = { host = \"pop.x.org\" }\n",
        );
        assert_eq!(item_key(&a).unwrap().service, "pop3");
        let a = account(
            "[accounts.c]\nauth = \"password\"\nuser = \"u@x.org\"\nimap = { host = \"imap.x.org\" }\npop = { host = \"pop.x.org\" }\n",
        );
        let k = item_key(&a).unwrap();
        assert_eq!((k.host.as_str(), k.service), ("imap.x.org", "imap"));
    }

    #[test]
    fn store_lookup_and_a_missing_password() {
        let a = account("[accounts.c]\nprovider = \"fastmail\"\nuser = \"c@fastmail.com\"\n");
        let key = item_key(&a).unwrap();
        let store = EntryStore::new(keyring_core::mock::Store::new().unwrap());
        let e = lookup_in(&store, &a, &key).unwrap_err();
        assert_eq!(e.code, ExitCode::NoPerm);
        assert!(
            e.remedy.unwrap().contains("mailtoken set-password c"),
            "{}",
            e.message
        );
        let note = store_in(&store, &a, &key, &Secret::new("abcd efgh")).unwrap();
        assert!(
            note.contains("host=smtp.fastmail.com service=smtp"),
            "{note}"
        );
        assert!(!note.contains("abcd"), "{note}");
        assert_eq!(lookup_in(&store, &a, &key).unwrap().expose(), "abcd efgh");
    }

    #[test]
    fn oauth_accounts_are_pointed_at_token() {
        let a = account(
            "[accounts.g]\nprovider = \"google\"\nuser = \"g@gmail.com\"\nclient_id = \"i\"\nclient_secret = \"s\"\n",
        );
        let e = lookup(&a).unwrap_err();
        assert_eq!(e.code, ExitCode::Usage);
        assert!(e.message.contains("mailtoken token g"), "{}", e.message);
        assert_eq!(set_password(&a).unwrap_err().code, ExitCode::Usage);
    }
}
