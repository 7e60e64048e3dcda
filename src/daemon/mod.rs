//! `mailtoken serve`: the broker daemon. It answers token requests on a unix socket
//! from memory, refreshes every account ahead of expiry so that no mail program waits
//! on the network, and shares the per-account lock and the store with daemonless CLI
//! calls.
//!
//! - `accounts.rs`: the per-account state in memory, and the work done on it;
//! - `refresher.rs`: one task per account, waking when its next job is due;
//! - `connection.rs`: a client's requests and their replies;
//! - `admission.rs`: how many clients at once, and which one goes when full;
//! - `reload.rs`: SIGHUP;
//! - `socket.rs`, `timer.rs`: the listening socket and wall-clock sleeps (telling the
//!   user that an account needs a login is `crate::notify`).

mod accounts;
mod admission;
mod connection;
mod peer;
mod refresher;
mod relays;
mod reload;
pub mod socket;
pub mod timer;

use crate::broker::Broker;
use crate::config::Config;
use crate::error::{Error, Result};
use accounts::Daemon;
use std::sync::Arc;
use std::time::Duration;

pub fn serve(allow_group: Option<&str>) -> Result<()> {
    let allow_gid = allow_group.map(peer::group_id).transpose()?;
    let config = Config::load_default()?;
    let mut broker = Broker::open(config)?;
    // The daemon's callers give up on a refresh after their timeout; the refresh
    // waits on for a sent request's answer (`oauth::ANSWER_PATIENCE`).
    broker.wait_for_answers();
    if let Some(n) = &broker.store_notice {
        accounts::say(n);
    }
    one_malloc_arena();
    let rt = tokio::runtime::Builder::new_current_thread()
        // Blocking work is store reads and refreshes, a few at a time. Without a cap, 50
        // accounts loading at start grow the pool to ~45 threads, whose stacks and malloc
        // arenas glibc keeps after they exit (about 1 MiB of idle RSS). Two: a refresh
        // waiting on a slow endpoint leaves one thread for everything else, and each
        // thread more costs idle memory (docs/benchmarks.md, section 3: 4 threads 5.95
        // MiB, 2 threads 5.59 MiB, 1 thread 5.75 MiB, with 50 accounts).
        .max_blocking_threads(2)
        // The blocking work comes in bursts (the start, a refresh, a login), hours apart;
        // tokio's 10 s keep-alive only put the threads' exit, with the pages and CPU it
        // takes, into the quiet that follows (docs/benchmarks.md, section 3).
        .thread_keep_alive(Duration::from_secs(1))
        .enable_all()
        .build()
        .map_err(|e| Error::software(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(run(broker, allow_gid))
}

async fn run(broker: Broker, allow_gid: Option<u32>) -> Result<()> {
    let socket = socket::Socket::open(&crate::ipc::client::socket_path())?;
    let mut daemon = Daemon::new(broker);
    daemon.allow_gid = allow_gid;
    let daemon = Arc::new(daemon);
    let names: Vec<String> = daemon.broker().config.accounts.keys().cloned().collect();
    let slots: Vec<_> = names.iter().filter_map(|n| daemon.add_slot(n)).collect();
    // The records in one read, then the refreshers: each loading its own would read
    // the whole file store once per account (docs/benchmarks.md, section 8).
    let d = daemon.clone();
    tokio::spawn(async move {
        d.load_all(&slots).await;
        for slot in &slots {
            refresher::spawn(&d, slot);
        }
        // The records stay, the parse's temporaries are gone: give their pages back.
        release_free_memory();
    });
    relays::start(&daemon).await?;
    let listener = socket.listener()?;
    socket::notify_ready();
    accounts::say(&format!(
        "serving {} account(s) on {}",
        names.len(),
        socket.path.display()
    ));
    let signal = |k| {
        tokio::signal::unix::signal(k)
            .map_err(|e| Error::software(format!("cannot watch signals: {e}")))
    };
    use tokio::signal::unix::SignalKind;
    let (mut term, mut int, mut hup) = (
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
        signal(SignalKind::hangup())?,
    );
    // How many clients at once, and who goes when that many are there (admission.rs).
    let admission = admission::Admission::new(admission::limit(admission::nofile()));
    tokio::spawn(admission.clone().trim_when_quiet());
    loop {
        let accept = async {
            admission.room().await;
            listener.accept().await
        };
        tokio::select! {
            accepted = accept => match accepted {
                Ok((stream, _)) => {
                    let ticket = admission.admit();
                    tokio::spawn(connection::serve(daemon.clone(), stream, ticket));
                }
                Err(e) => {
                    accounts::say(&format!("accept failed: {e}"));
                    // EMFILE and friends: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = hup.recv() => reload::reload(&daemon).await,
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    accounts::say("shutting down");
    drop(socket);
    // A refresh whose request is out may hold the only copy of a rotated refresh
    // token in its answer: it ends (stored) before the daemon does, within the longest
    // a refresh may take (its wait for the account lock, then its answer). The service
    // units allow for this (TimeoutStopSec, ExitTimeOut).
    let running = daemon.in_flight.count();
    if running > 0 {
        let timeout = daemon.broker().config.timeout;
        let bound = crate::oauth::patience(timeout) + timeout + Duration::from_secs(5);
        accounts::say(&format!(
            "waiting for {running} refresh(es) in flight to end, so that their tokens are kept (at most {})",
            humantime::format_duration(bound)
        ));
        daemon
            .in_flight
            .until_idle(std::time::Instant::now() + bound)
            .await;
    }
    Ok(())
}

/// Returns the allocator's free pages to the system after a burst (the start's loads,
/// a flood of connections): glibc keeps freed memory in its arenas, and with the
/// long-lived records scattered among the burst's freed temporaries only
/// `malloc_trim` gives back the pages between them (with 1,000 accounts, 2.7 MiB of
/// 6.4 MiB the allocator held was free: docs/benchmarks.md, section 8). It walks the
/// free lists once, in well under a millisecond.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; 0 keeps no padding at the heap's top.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// One malloc arena for the whole daemon, before any thread starts. glibc gives each
/// thread that allocates its own arena; the blocking threads parse the store, and what
/// they keep (the records) stays scattered among the parse's freed temporaries, in an
/// arena of its own that `malloc_trim` cannot shrink: with 1,000 accounts 220 KB in
/// use held 990 KB resident, 0.8 KiB an account (docs/benchmarks.md, section 8). The
/// daemon's threads seldom allocate at once, so one arena costs no waiting. The
/// tunable: https://www.gnu.org/software/libc/manual/html_node/Memory-Allocation-Tunables.html
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator; no thread runs yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
