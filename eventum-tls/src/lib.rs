//! `wss://` for eventum's adapters: a [`rustls`] server configuration read from PEM files,
//! with TLS 1.2 and 1.3 and ALPN `http/1.1`, ready for `eventum_smol::Server::tls` or
//! `eventum_std::Server::tls`.
//!
//! ```no_run
//! let config = eventum_tls::server_config("cert.pem", "key.pem").unwrap();
//! assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
//! ```
//!
//! Bring your own [`rustls::ServerConfig`] instead when you need client certificates,
//! another crypto provider or certificate reloading: the adapters take any.
//!
//! [`TlsStream`] runs rustls over a non-blocking `std` socket, for eventum-std's
//! connection threads (eventum-smol uses futures-rustls).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::path::Path;
use std::sync::Arc;

mod stream;

pub use rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
pub use stream::TlsStream;

/// The ALPN protocol a WebSocket upgrade runs over (RFC 6455 is HTTP/1.1 only).
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Why a TLS configuration could not be made.
#[derive(Debug)]
pub enum TlsError {
    /// The certificate file could not be read or holds no PEM certificate.
    Certificate(String),
    /// The key file could not be read or holds no PEM private key.
    Key(String),
    /// rustls refused the pair (a key that does not match the certificate, say).
    Rustls(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Certificate(e) => write!(f, "TLS certificate: {e}"),
            TlsError::Key(e) => write!(f, "TLS private key: {e}"),
            TlsError::Rustls(e) => write!(f, "TLS configuration: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

impl From<TlsError> for std::io::Error {
    fn from(e: TlsError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    }
}

/// A server configuration from a PEM certificate chain (leaf first) and a PEM private key
/// (PKCS#8, PKCS#1 or SEC1) read from files.
pub fn server_config(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Arc<ServerConfig>, TlsError> {
    let (cert, key) = (cert.as_ref(), key.as_ref());
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certificate(format!("{}: {e}", cert.display())))?;
    let chain = non_empty(chain, &cert.display().to_string())?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key(format!("{}: {e}", key.display())))?;
    config_of(chain, key)
}

/// A server configuration from a PEM certificate chain and a PEM private key in memory.
///
/// ```
/// let error = eventum_tls::server_config_from_pem(b"not a certificate", b"").unwrap_err();
/// assert!(error.to_string().starts_with("TLS certificate"));
/// ```
pub fn server_config_from_pem(cert: &[u8], key: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    let chain = non_empty(chain, "the PEM input")?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::Key(e.to_string()))?;
    config_of(chain, key)
}

/// A chain with at least one certificate (PEM parsing skips what is not PEM).
fn non_empty(chain: Vec<CertificateDer<'static>>, source: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    if chain.is_empty() {
        return Err(TlsError::Certificate(format!("no PEM certificate in {source}")));
    }
    Ok(chain)
}

fn config_of(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(TlsError::Rustls)?;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}
