//! One task per account that keeps its token fresh: it sleeps on the wall clock (so
//! across a suspend) until the state's next job is due (a refresh ahead of expiry, a
//! retry after a failure, a save the store refused), does it, and starts over; any
//! change to the account wakes it early to recompute.
//!
//! What a sleeping refresher holds is small: the account's settings are looked up for
//! each step and not kept across the sleep, and the work (a load, a refresh, a save)
//! is a boxed future that exists only while it runs. With 1,000 accounts a refresher
//! holding its `Account` clone and the unboxed work cost about 2.5 KiB an account
//! (docs/benchmarks.md, section 8).

use super::accounts::{Daemon, Slot, lock};
use crate::record;
use crate::state::Job;
use std::sync::Arc;

/// Starts the refresher of `slot`.
pub fn spawn(daemon: &Arc<Daemon>, slot: &Arc<Slot>) {
    let task = tokio::spawn(run(daemon.clone(), slot.clone()));
    *lock(&slot.refresher) = Some(task);
}

/// What a refresher waits for after a step.
enum Next {
    /// The account is gone from the config.
    Stop,
    /// A change to the account (a request, a login, a reload).
    Change,
    /// A change, or wall-clock second `at`, when a job is due.
    Until(u64),
}

async fn run(daemon: Arc<Daemon>, slot: Arc<Slot>) {
    let mut changes = slot.changed.subscribe();
    loop {
        changes.borrow_and_update();
        let next = Box::pin(plan(&daemon, &slot)).await;
        let at = match next {
            Next::Stop => return,
            Next::Change => {
                changes.changed().await;
                continue;
            }
            Next::Until(at) => at,
        };
        if at > record::now() {
            tokio::select! {
                _ = changes.changed() => continue,
                _ = daemon.clock.sleep_until(at) => {}
            }
        }
        if !Box::pin(due(&daemon, &slot)).await {
            return;
        }
    }
}

/// Loads the account if it must be, and says when its next job is due.
async fn plan(daemon: &Arc<Daemon>, slot: &Arc<Slot>) -> Next {
    // A slot a reload has replaced or removed (its refresher was started by the
    // daemon's start after the reload had taken the slot away): its refresher ends, or
    // it would go on beside the new slot's when the account comes back.
    if !daemon.is_current(slot) {
        return Next::Stop;
    }
    let Ok(account) = daemon.broker().account(&slot.name).cloned() else {
        return Next::Stop;
    };
    if account.uses_app_password() {
        // Nothing to refresh; a reload may turn it into an OAuth account.
        return Next::Change;
    }
    if daemon.load(slot, &account).await.is_err() {
        // The store is unreadable now; a request or a reload will try again.
        return Next::Change;
    }
    let next = lock(&slot.state).next_job(slot.longest_min_valid(), record::Now::current());
    next.map_or(Next::Change, |(at, _)| Next::Until(at))
}

/// Does the job that is due, if one still is (a request may have refreshed while the
/// refresher slept); `false` when the account is gone.
async fn due(daemon: &Arc<Daemon>, slot: &Arc<Slot>) -> bool {
    let Ok(account) = daemon.broker().account(&slot.name).cloned() else {
        return false;
    };
    let due = lock(&slot.state)
        .next_job(slot.longest_min_valid(), record::Now::current())
        .filter(|&(at, _)| at <= record::now());
    match due {
        Some((_, Job::Refresh)) => daemon.refresh(slot, &account).await,
        Some((_, Job::Save)) => daemon.save(slot, &account).await,
        None => {}
    }
    true
}
