//! SIGHUP: read the config again. Accounts whose security-relevant settings changed (or
//! that went away) lose what the daemon remembers of them; the others keep their tokens.

use super::accounts::{Daemon, blocking};
use super::refresher;
use crate::broker::Broker;
use crate::config::{Account, Config};
use std::sync::Arc;

pub async fn reload(daemon: &Arc<Daemon>) {
    let loaded = blocking(|| {
        let mut b = Config::load_default().and_then(Broker::open)?;
        b.wait_for_answers();
        Ok(b)
    })
    .await;
    let new = match loaded {
        Ok(b) => Arc::new(b),
        Err(e) => {
            super::accounts::say(&format!("reload failed, keeping the old config: {e}"));
            return;
        }
    };
    let old = daemon.broker();
    daemon.set_broker(new.clone());
    daemon.retain_slots(|name, slot| {
        match (old.config.accounts.get(name), new.config.accounts.get(name)) {
            (_, None) => return false,
            (Some(a), Some(b)) if fingerprint(a) == fingerprint(b) => slot.bump(),
            _ => slot.forget(),
        }
        true
    });
    for name in new.config.accounts.keys() {
        if let Some(slot) = daemon.add_slot(name) {
            refresher::spawn(daemon, &slot);
        }
    }
    super::accounts::say(&format!("reloaded {}", new.config.path.display()));
}

/// The settings that decide which tokens are valid for an account: if any changes, a
/// cached token may belong to another identity, client or scope.
fn fingerprint(a: &Account) -> String {
    let Ok(o) = a.oauth() else {
        return format!("{}|app password", a.user);
    };
    format!(
        "{}|{:?}|{}|{:?}|{}|{:?}|{}|{:?}|{:?}",
        a.user,
        o.grant,
        o.client_id,
        o.auth_url,
        o.token_url,
        o.scopes,
        o.client_secret.as_ref().map_or("", |s| s.expose()),
        o.client_secret_cmd,
        a.ca_file
    )
}
