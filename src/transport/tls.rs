//! TLS termination on the proxy listener: a certificate chain and key from PEM files,
//! offered with ALPN `h2` and `http/1.1`.
//!
//! The certificate in force sits behind an `ArcSwap` that every handshake reads, so a
//! reload (the config, or the files changing) swaps it without touching open
//! connections: they keep the session they negotiated, new handshakes get the new one.

use std::path::Path;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

/// A certificate and key read from their files, with the bytes they came from (a reload
/// with the same bytes changes nothing).
pub struct LoadedCert {
    key: Arc<CertifiedKey>,
    source: Vec<u8>,
}

/// Read and check `tls.cert` and `tls.key`: a chain of at least one certificate, a
/// private key rustls can sign with, and the two belonging together.
pub fn load(tls: &TlsConfig) -> Result<LoadedCert, String> {
    let read = |what: &str, path: &Path| {
        std::fs::read(path).map_err(|e| format!("tls.{what}: cannot read {}: {e}", path.display()))
    };
    let cert_pem = read("cert", &tls.cert)?;
    let key_pem = read("key", &tls.key)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.cert: {} is not PEM: {e}", tls.cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "tls.cert: no CERTIFICATE block in {}",
            tls.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("tls.key: no private key in {}: {e}", tls.key.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
        format!(
            "tls: the key in {} does not fit the certificate in {}: {e}",
            tls.key.display(),
            tls.cert.display()
        )
    })?;
    let mut source = cert_pem;
    source.extend_from_slice(&key_pem);
    Ok(LoadedCert {
        key: Arc::new(certified),
        source,
    })
}

/// Hands every handshake the certificate in force.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
    source: Mutex<Vec<u8>>,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl CertResolver {
    /// Put `loaded` in force; false if it is the one already in force.
    pub fn install(&self, loaded: LoadedCert) -> bool {
        let mut source = self
            .source
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *source == loaded.source {
            return false;
        }
        self.current.store(loaded.key);
        *source = loaded.source;
        true
    }
}

/// The rustls acceptor of the proxy listener, and the resolver reloads go through.
pub struct Terminator {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub resolver: Arc<CertResolver>,
}

impl Terminator {
    pub fn new(first: LoadedCert) -> Terminator {
        let resolver = Arc::new(CertResolver {
            current: ArcSwap::new(first.key),
            source: Mutex::new(first.source),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Terminator {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            resolver,
        }
    }
}
