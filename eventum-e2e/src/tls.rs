//! `wss://` in tests: a certificate made for the run, the server's configuration, and a
//! rustls client that trusts exactly that certificate.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use eventum_tls::rustls::pki_types::{CertificateDer, ServerName};
use eventum_tls::rustls::{self, ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::{TimeoutStream, WAIT};

/// A self-signed certificate for `localhost` and `127.0.0.1`, made for this run.
pub struct TestCertificate {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
    der: CertificateDer<'static>,
}

impl TestCertificate {
    /// Makes one (a fresh key pair each time).
    pub fn new() -> Self {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let certified = rcgen::generate_simple_self_signed(names).expect("make a test certificate");
        TestCertificate {
            cert_pem: certified.cert.pem(),
            key_pem: certified.signing_key.serialize_pem(),
            der: certified.cert.der().clone(),
        }
    }

    /// The server configuration eventum's adapters serve `wss://` with.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        eventum_tls::server_config_from_pem(self.cert_pem.as_bytes(), self.key_pem.as_bytes())
            .expect("a server configuration from the test certificate")
    }

    /// A client configuration that trusts only this certificate, offering ALPN `http/1.1`.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).expect("trust the test certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![eventum_tls::ALPN_HTTP11.to_vec()];
        Arc::new(config)
    }

    /// Connects to `addr` and completes the TLS handshake for `localhost`.
    pub fn connect(&self, addr: SocketAddr) -> TlsClientStream {
        let sock = TcpStream::connect_timeout(&addr, WAIT).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        sock.set_read_timeout(Some(WAIT)).expect("read timeout");
        sock.set_write_timeout(Some(WAIT)).expect("write timeout");
        let name = ServerName::try_from("localhost").expect("a server name");
        let conn = ClientConnection::new(self.client_config(), name).expect("a TLS client");
        let mut stream = StreamOwned::new(conn, sock);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .expect("the TLS handshake completes");
        }
        stream
    }
}

impl Default for TestCertificate {
    fn default() -> Self {
        Self::new()
    }
}

/// A TLS client stream over TCP.
pub type TlsClientStream = StreamOwned<ClientConnection, TcpStream>;

impl TimeoutStream for TlsClientStream {
    fn set_timeout(&mut self, timeout: Duration) {
        self.sock.set_read_timeout(Some(timeout)).expect("set read timeout");
    }
}
