//! One task per account that keeps its token fresh: it sleeps on the wall clock (so
//! across a suspend) until the state's next job is due (a refresh ahead of expiry, a
//! retry after a failure, a save the store refused), does it, and starts over; any
//! change to the account wakes it early to recompute.

use super::accounts::{Daemon, Slot, lock};
use super::timer::sleep_until_wall;
use crate::record;
use crate::state::Job;
use std::sync::Arc;

/// Starts the refresher of `slot`.
pub fn spawn(daemon: &Arc<Daemon>, slot: &Arc<Slot>) {
    let task = tokio::spawn(run(daemon.clone(), slot.clone()));
    *lock(&slot.refresher) = Some(task);
}

async fn run(daemon: Arc<Daemon>, slot: Arc<Slot>) {
    let mut changes = slot.changed.subscribe();
    loop {
        changes.borrow_and_update();
        let Ok(account) = daemon.broker().account(&slot.name).cloned() else {
            return;
        };
        if account.uses_app_password() {
            // Nothing to refresh; a reload may turn it into an OAuth account.
            if changes.changed().await.is_err() {
                return;
            }
            continue;
        }
        if daemon.load(&slot, &account).await.is_err() {
            // The store is unreadable now; a request or a reload will try again.
            if changes.changed().await.is_err() {
                return;
            }
            continue;
        }
        let next = lock(&slot.state).next_job(slot.longest_min_valid());
        let Some((at, _)) = next else {
            if changes.changed().await.is_err() {
                return;
            }
            continue;
        };
        if at > record::now() {
            tokio::select! {
                r = changes.changed() => { if r.is_err() { return; } continue; }
                _ = sleep_until_wall(at) => {}
            }
        }
        // Still due? A request may have refreshed while we slept.
        let due = lock(&slot.state)
            .next_job(slot.longest_min_valid())
            .filter(|&(at, _)| at <= record::now());
        match due {
            Some((_, Job::Refresh)) => daemon.refresh(&slot, &account).await,
            Some((_, Job::Save)) => daemon.save(&slot, &account).await,
            None => {}
        }
    }
}
