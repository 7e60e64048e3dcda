//! `mailtoken serve`: the broker daemon. It answers token requests on a unix socket
//! from memory, refreshes every account ahead of expiry so that no mail program waits
//! on the network, and shares the per-account lock and the store with daemonless CLI
//! calls.
//!
//! - `accounts.rs`: the per-account state in memory, and the work done on it;
//! - `refresher.rs`: one task per account, waking when its next job is due;
//! - `connection.rs`: a client's requests and their replies;
//! - `reload.rs`: SIGHUP;
//! - `socket.rs`, `timer.rs`: the listening socket and wall-clock sleeps (telling the
//!   user that an account needs a login is `crate::notify`).

mod accounts;
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
    let broker = Broker::open(config)?;
    if let Some(n) = &broker.store_notice {
        eprintln!("mailtoken: {n}");
    }
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
    for name in &names {
        if let Some(slot) = daemon.add_slot(name) {
            refresher::spawn(&daemon, &slot);
        }
    }
    relays::start(&daemon).await?;
    let listener = socket.listener()?;
    socket::notify_ready();
    eprintln!(
        "mailtoken: serving {} account(s) on {}",
        names.len(),
        socket.path.display()
    );
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
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => { tokio::spawn(connection::serve(daemon.clone(), stream)); }
                Err(e) => {
                    eprintln!("mailtoken: accept failed: {e}");
                    // EMFILE and friends: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = hup.recv() => reload::reload(&daemon).await,
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    eprintln!("mailtoken: shutting down");
    drop(socket);
    Ok(())
}
