//! One rustls client configuration (ring provider, the platform's trust store plus the
//! account's `ca_file`) shared by every TLS client: the token endpoint's HTTPS and the
//! IMAP/POP3/SMTP verifier. One provider only, so no process-default ever panics.

use crate::error::{Error, Result};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use std::path::Path;
use std::sync::Arc;

pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let extra: Vec<CertificateDer<'static>> = match ca_file {
        Some(p) => CertificateDer::pem_file_iter(p)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                Error::config(format!(
                    "ca_file {}: cannot read certificates: {e}",
                    p.display()
                ))
                .with_remedy("Point ca_file at a PEM file with one or more CERTIFICATE blocks.")
            })?,
        None => Vec::new(),
    };
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
        .map_err(|e| {
            Error::config(format!("cannot load trusted CA certificates: {e}")).with_remedy(
                "Install the system's CA bundle (Debian: ca-certificates), or set ca_file for the account.",
            )
        })?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::software(format!("TLS setup: {e}")))?
        // `dangerous` is rustls' name for "bring your own verifier"; ours is the platform one.
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}
