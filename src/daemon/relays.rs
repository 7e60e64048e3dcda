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
    let broker = daemon.broker();
    for account in broker.config.accounts.values() {
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
            tls: std::sync::OnceLock::new(),
        });
        for (proto, listen) in [
            (Proto::Smtp, &r.smtp),
            (Proto::Imap, &r.imap),
            (Proto::Pop, &r.pop),
        ] {
            let Some(listen) = listen else { continue };
            bind(listen, proto, relay.clone(), r.max_connections).await?;
            super::accounts::say(&format!(
                "{} relay of {} on {listen}{}",
                proto.title(),
                account.name,
                match &r.access {
                    relay::Access::Anyone =>
                        " (no login: anyone on this machine may use the account)",
                    relay::Access::Users(_) => " (no login, for the listed local users)",
                    relay::Access::Password => "",
                }
            ));
        }
    }
    Ok(())
}

async fn bind(listen: &Listen, proto: Proto, relay: Arc<Relay>, max: usize) -> Result<()> {
    let room = Arc::new(tokio::sync::Semaphore::new(max));
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
                        // Replies are small and awaited: do not hold them back.
                        let _ = s.set_nodelay(true);
                        admit(proto, &relay, &room, s, true);
                    }
                }
            });
        }
        Listen::Unix(path) => {
            let _ = std::fs::remove_file(path);
            let l = tokio::net::UnixListener::bind(path).map_err(cannot)?;
            // Who may connect: with a login or a uid list, any local user (the relay
            // decides); with no login at all, only the daemon's own user.
            let mode = if relay.access == relay::Access::Anyone {
                0o600
            } else {
                0o666
            };
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(cannot)?;
            tokio::spawn(async move {
                loop {
                    if let Ok((s, _)) = l.accept().await {
                        // auth = "users": the kernel says who connected.
                        let allowed = match &relay.access {
                            relay::Access::Users(uids) => {
                                s.peer_cred().is_ok_and(|c| uids.contains(&c.uid()))
                            }
                            _ => true,
                        };
                        admit(proto, &relay, &room, s, allowed);
                    }
                }
            });
        }
    }
    Ok(())
}

/// Serves a client when it may use the relay and there is room; otherwise tells it so
/// in its protocol's words and hangs up.
fn admit<S>(
    proto: Proto,
    relay: &Arc<Relay>,
    room: &Arc<tokio::sync::Semaphore>,
    stream: S,
    allowed: bool,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let permit = room.clone().try_acquire_owned();
    let relay = relay.clone();
    tokio::spawn(async move {
        let refusal = match (allowed, permit) {
            (true, Ok(_permit)) => {
                // The whole session, however long; the permit goes with it.
                let _ = tokio::time::timeout(SESSION_LIMIT, serve(proto, relay, stream)).await;
                return;
            }
            (false, _) => match proto {
                Proto::Smtp => "554 5.7.1 this relay does not serve this local user",
                Proto::Imap => "* BYE this relay does not serve this local user",
                Proto::Pop => "-ERR [AUTH] this relay does not serve this local user",
            },
            (true, Err(_)) => match proto {
                Proto::Smtp => "421 4.3.2 too many connections to the relay, try again later",
                Proto::Imap => "* BYE [UNAVAILABLE] too many connections to the relay",
                Proto::Pop => "-ERR [SYS/TEMP] too many connections to the relay",
            },
        };
        let mut stream = stream;
        let _ =
            tokio::io::AsyncWriteExt::write_all(&mut stream, format!("{refusal}\r\n").as_bytes())
                .await;
    });
}

/// The longest a relayed session may last (an IMAP client idling all day reconnects).
const SESSION_LIMIT: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

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
