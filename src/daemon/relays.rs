//! The accounts' relays (`[accounts.NAME.relay]`), listening from the daemon's start:
//! each connection is served by `relay::smtp` or `relay::imap` with credentials from
//! the daemon's memory, like any `token` request.

use super::accounts::{Daemon, FromMemory};
use crate::credential::{self, Request};
use crate::error::{Error, Result};
use crate::relay::{self, Listen, upstream::Relay};
use crate::server::Proto;
use std::sync::Arc;

/// Binds every relay of the config, or says which cannot be bound.
pub async fn start(daemon: &Arc<Daemon>) -> Result<()> {
    let config = daemon.broker().config.clone();
    for account in config.accounts.values() {
        let Some(r) = &account.relay else { continue };
        let d = daemon.clone();
        let credential: relay::upstream::CredentialFn = Arc::new(move |a| {
            let d = d.clone();
            Box::pin(async move {
                credential::answer(&FromMemory(&d), &a, &Request::new(a.name.clone())).await
            })
        });
        let d = daemon.clone();
        let renew: relay::upstream::RenewFn = Arc::new(move |a, rejected| {
            let d = d.clone();
            Box::pin(async move { d.renew_rejected(&a, &rejected).await })
        });
        let relay = Arc::new(Relay {
            account: account.clone(),
            access: r.access.clone(),
            credential,
            renew,
        });
        for (proto, listen) in [
            (Proto::Smtp, &r.smtp),
            (Proto::Imap, &r.imap),
            (Proto::Pop, &r.pop),
        ] {
            let Some(listen) = listen else { continue };
            bind(listen, proto, relay.clone()).await?;
            eprintln!(
                "mailtoken: {} relay of {} on {listen}{}",
                proto.title(),
                account.name,
                if r.access == relay::Access::Anyone {
                    " (no login: anyone on this machine may use the account)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}

async fn bind(listen: &Listen, proto: Proto, relay: Arc<Relay>) -> Result<()> {
    let cannot = |e: std::io::Error| {
        Error::unavailable(format!(
            "cannot listen on {listen} for the {} relay of {}: {e}",
            proto.title(),
            relay.account.name
        ))
        .with_remedy("Choose another address in [accounts.NAME.relay], or stop what uses it.")
    };
    match listen {
        Listen::Tcp(addr) => {
            let l = tokio::net::TcpListener::bind(addr).await.map_err(cannot)?;
            tokio::spawn(async move {
                loop {
                    if let Ok((s, _)) = l.accept().await {
                        tokio::spawn(serve(proto, relay.clone(), s));
                    }
                }
            });
        }
        Listen::Unix(path) => {
            let _ = std::fs::remove_file(path);
            let l = tokio::net::UnixListener::bind(path).map_err(cannot)?;
            tokio::spawn(async move {
                loop {
                    if let Ok((s, _)) = l.accept().await {
                        tokio::spawn(serve(proto, relay.clone(), s));
                    }
                }
            });
        }
    }
    Ok(())
}

async fn serve<S>(proto: Proto, relay: Arc<Relay>, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    match proto {
        Proto::Imap => relay::imap::serve(relay, stream).await,
        Proto::Pop => relay::pop::serve(relay, stream).await,
        Proto::Smtp => relay::smtp::serve(relay, stream).await,
    }
}
