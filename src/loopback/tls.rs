//! TLS for an `https://localhost` redirect: some public client registrations (such as
//! Thunderbird's at Microsoft) list no other redirect URI, and Microsoft matches a
//! localhost redirect with any port (provider-facts.md, "Microsoft"). No CA can issue a
//! certificate for `localhost`, so each login makes its own self-signed one, valid for
//! the login's time only; the browser warns once, and the fingerprint shown in the
//! terminal lets the user see the certificate is the one mailtoken just made.

use crate::error::{Error, Result};
use axum::serve::Listener;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A browser that distrusts the certificate drops the handshake and shows its warning;
/// one that hangs must not hold anything up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate of one login and the server side of TLS with it.
pub struct LoginCert {
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the certificate, as browsers show it: `AB:CD:...`.
    pub fingerprint: String,
}

/// A self-signed certificate for `localhost`, 127.0.0.1 and ::1, valid from a few
/// minutes ago (clock skew) until `lifetime` from now, and the key that only this
/// process ever holds.
pub fn login_cert(lifetime: Duration) -> Result<LoginCert> {
    let failed =
        |e: rcgen::Error| Error::software(format!("cannot make the login's certificate: {e}"));
    let key = rcgen::KeyPair::generate().map_err(failed)?;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).map_err(failed)?;
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        params.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
    }
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "mailtoken login (this login only)",
    );
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + lifetime + time::Duration::minutes(5);
    let cert = params.self_signed(&key).map_err(failed)?;
    let der: CertificateDer<'static> = cert.der().clone();
    let fingerprint = ring::digest::digest(&ring::digest::SHA256, &der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::software(format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(
            vec![der],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(|e| Error::software(format!("TLS setup: {e}")))?;
    // The listener speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(LoginCert {
        config: Arc::new(config),
        fingerprint,
    })
}

/// A listener whose connections are TLS: each handshake runs in its own task, so a
/// browser's warning (it drops the handshake) or a stalled pre-connect delays nobody.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(16);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    // The server is gone (the login ended): let go of the port.
                    () = tx.closed() => return,
                    accepted = tcp.accept() => accepted,
                };
                let Ok((tcp, peer)) = accepted else {
                    // Out of descriptors, say: try again shortly, as axum does.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                    {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accepting task ended with the server: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_certificate_names_localhost_and_has_a_browser_style_fingerprint() {
        let c = login_cert(Duration::from_secs(300)).unwrap();
        assert_eq!(c.fingerprint.len(), 32 * 3 - 1, "{}", c.fingerprint);
        assert!(c.fingerprint.split(':').all(|b| b.len() == 2));
        let other = login_cert(Duration::from_secs(300)).unwrap();
        assert_ne!(
            c.fingerprint, other.fingerprint,
            "one certificate per login"
        );
    }
}
