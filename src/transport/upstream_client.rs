//! The keep-alive client of one upstream.
//!
//! Its connector always dials the upstream's configured address, whatever the request
//! URI says: the URI's authority is then free to carry the `Host` an HTTP/2 upstream
//! must get as `:authority`. For an `https://` upstream the connector speaks TLS with
//! SNI and verification by the URL's host, trusting the system's roots or `ca_file`,
//! and offers ALPN `h2` (when `http2: true`) or `http/1.1`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use crate::config::{PoolConfig, Upstream};
use crate::transport::request_body::UpstreamRequestBody;

/// Cloning it shares the pool.
pub type UpstreamClient = Client<Connector, UpstreamRequestBody>;

/// The rustls settings of an `https://` upstream: its roots and ALPN. Read when a config
/// is prepared, so an unreadable `ca_file` refuses the config.
pub fn tls_config(upstream: &Upstream) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
    if !upstream.tls {
        return Ok(None);
    }
    let roots = match &upstream.ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                format!(
                    "upstreams.{}.ca_file: cannot read {}: {e}",
                    upstream.name,
                    path.display()
                )
            })?;
            let mut roots = rustls::RootCertStore::empty();
            use rustls::pki_types::pem::PemObject;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| {
                    format!(
                        "upstreams.{}.ca_file: {}: {e}",
                        upstream.name,
                        path.display()
                    )
                })?;
                roots.add(cert).map_err(|e| {
                    format!(
                        "upstreams.{}.ca_file: {}: {e}",
                        upstream.name,
                        path.display()
                    )
                })?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "upstreams.{}.ca_file: no CERTIFICATE block in {}",
                    upstream.name,
                    path.display()
                ));
            }
            Arc::new(roots)
        }
        None => system_roots(),
    };
    let alpn: &[u8] = if upstream.http2 { b"h2" } else { b"http/1.1" };
    Ok(Some(client_config(roots, alpn)))
}

/// rustls client settings (the ring provider) trusting `roots`, offering the one ALPN
/// protocol `alpn`: the upstreams' and the webhook's.
pub fn client_config(roots: Arc<rustls::RootCertStore>, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// The system's trusted roots, read once per process (an unreadable one is skipped).
pub fn system_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for err in &found.errors {
                tracing::warn!("system CA certificates: {err}");
            }
            let mut roots = rustls::RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            tracing::debug!("system CA certificates: {added} trusted, {ignored} unparsable");
            Arc::new(roots)
        })
        .clone()
}

/// The client's settings, all written out: hyper's defaults are documented as unstable.
pub fn build(
    upstream: &Upstream,
    tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
    pool: PoolConfig,
) -> UpstreamClient {
    let host = dial_host(upstream);
    let tls = tls.map(|config| {
        let name = ServerName::try_from(host.to_string())
            .expect("a parsed URL host is a DNS name or an IP address");
        (tokio_rustls::TlsConnector::from(config), name)
    });
    let connector = Connector {
        host,
        port: upstream.port(),
        connect_timeout,
        tls,
    };
    Client::builder(TokioExecutor::new())
        // Without a timer the idle timeout is silently ignored.
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(pool.idle_timeout)
        .pool_max_idle_per_host(pool.max_idle_per_host)
        // A request that never reached a pooled connection the upstream had just closed
        // is retried once on a fresh one; nothing the upstream saw is ever replayed.
        .retry_canceled_requests(true)
        // We always set Host ourselves (see `HostPolicy`); the client must not guess.
        .set_host(false)
        .http1_title_case_headers(false)
        .http1_preserve_header_case(false)
        .http2_only(upstream.http2)
        .build(connector)
}

/// The upstream's host as it is dialed and named in TLS: `[::1]` in a URL is `::1` to
/// connect to, and never a TLS server name.
pub fn dial_host(upstream: &Upstream) -> Arc<str> {
    let host = upstream.origin.host();
    host.trim_start_matches('[').trim_end_matches(']').into()
}

/// Dials one upstream (see the module docs).
#[derive(Clone)]
pub struct Connector {
    host: Arc<str>,
    port: u16,
    /// Covers the TCP connect and, for TLS, the handshake.
    connect_timeout: Duration,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

impl tower::Service<Uri> for Connector {
    type Response = UpstreamStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<UpstreamStream>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let connect = async {
                let tcp = TcpStream::connect((&*this.host, this.port)).await?;
                // Small requests must not wait for Nagle's algorithm.
                tcp.set_nodelay(true)?;
                match &this.tls {
                    None => Ok(UpstreamStream::Plain(TokioIo::new(tcp))),
                    Some((connector, name)) => {
                        let tls = connector.connect(name.clone(), tcp).await?;
                        Ok(UpstreamStream::Tls(TokioIo::new(tls)))
                    }
                }
            };
            tokio::time::timeout(this.connect_timeout, connect)
                .await
                .unwrap_or_else(|_| {
                    Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
                })
        })
    }
}

/// A client connection, cleartext or TLS: to an upstream, or the webhook's.
pub enum UpstreamStream {
    Plain(TokioIo<TcpStream>),
    Tls(TokioIo<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Connection for UpstreamStream {
    fn connected(&self) -> Connected {
        match self {
            UpstreamStream::Tls(tls) if tls.inner().get_ref().1.alpn_protocol() == Some(b"h2") => {
                Connected::new().negotiated_h2()
            }
            _ => Connected::new(),
        }
    }
}

impl hyper::rt::Read for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamStream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamStream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamStream::Plain(s) => s.is_write_vectored(),
            UpstreamStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamStream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }
}
