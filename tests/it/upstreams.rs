//! Upstreams over TLS and HTTP/2: `https://` with a configured CA (SNI and verification
//! by the URL's host), h2 over TLS by ALPN, and h2c with prior knowledge.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::support::*;
use crate::tls::certificate;

/// What the test upstream saw of each request: (version, URI authority, Host field,
/// the SNI the client sent).
type Seen = Arc<
    Mutex<
        Vec<(
            http::Version,
            Option<String>,
            Option<String>,
            Option<String>,
        )>,
    >,
>;

/// An upstream answering `upstream`, over TLS with `cert` (PEM chain, PEM key) if given,
/// in HTTP/2 if `h2` (ALPN `h2` over TLS, prior knowledge in cleartext).
async fn upstream(cert: Option<(String, String)>, h2: bool) -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let acceptor = cert.map(|(chain, key)| {
        use rustls::pki_types::pem::PemObject;
        let chain = rustls::pki_types::CertificateDer::pem_slice_iter(chain.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        config.alpn_protocols = vec![if h2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    let recorded = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let recorded = recorded.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let (io, sni): (Box<dyn IoStream>, Option<String>) = match acceptor {
                    None => (Box::new(tcp), None),
                    Some(acceptor) => {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let sni = tls.get_ref().1.server_name().map(str::to_string);
                        (Box::new(tls), sni)
                    }
                };
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        recorded.lock().unwrap().push((
                            request.version(),
                            request.uri().authority().map(|a| a.to_string()),
                            request
                                .headers()
                                .get("host")
                                .map(|h| h.to_str().unwrap().to_string()),
                            sni.clone(),
                        ));
                        async {
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from_static(b"upstream"),
                            )))
                        }
                    },
                );
                let io = TokioIo::new(io);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
    (addr, seen)
}

trait IoStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> IoStream for T {}

/// A proxy whose default upstream is `url` with `options` (YAML flow-map entries).
async fn proxy_to(url: &str, options: &str) -> TestProxy {
    TestProxy::start(&format!(
        "upstreams:\n  app: {{ url: \"{url}\"{options} }}\ndefault_upstream: app\n"
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_are_verified_by_the_url_host_against_ca_file() {
    let (chain, key, _) = certificate();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &chain).unwrap();
    let (addr, seen) = upstream(Some((chain, key)), false).await;
    let url = format!("https://localhost:{}", addr.port());

    let ca = format!(", ca_file: {}", dir.path().join("ca.pem").display());
    let proxy = proxy_to(&url, &ca).await;
    let (status, _, body) = get(&proxy.url("/secure"), &[("host", "shop.example")]).await;
    assert_eq!((status.as_u16(), &body[..]), (200, &b"upstream"[..]));
    let (version, _, host, sni) = seen.lock().unwrap()[0].clone();
    assert_eq!(version, http::Version::HTTP_11);
    assert_eq!(host.as_deref(), Some("shop.example"), "Host by the policy");
    assert_eq!(sni.as_deref(), Some("localhost"), "SNI is the URL's host");
    proxy.stop().await;

    // Without the CA, the self-signed upstream is not trusted: 502, nothing sent.
    let untrusted = proxy_to(&url, "").await;
    let (status, _, body) = get(&untrusted.url("/secure"), &[]).await;
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
    assert_eq!(seen.lock().unwrap().len(), 1, "no request reached it");
    let m = untrusted.metrics().await;
    assert_eq!(
        m[r#"abproxy_upstream_errors_total{kind="refused",upstream="app"}"#],
        1.0
    );
    untrusted.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_upstreams_over_tls_and_h2c_get_the_host_as_authority() {
    let (chain, key, _) = certificate();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &chain).unwrap();
    let (tls_addr, tls_seen) = upstream(Some((chain, key)), true).await;
    let (h2c_addr, h2c_seen) = upstream(None, true).await;
    let ca = format!(
        ", http2: true, ca_file: {}",
        dir.path().join("ca.pem").display()
    );
    for (url, options, seen) in [
        (
            format!("https://localhost:{}", tls_addr.port()),
            ca,
            tls_seen,
        ),
        (
            format!("http://{h2c_addr}"),
            ", http2: true".to_string(),
            h2c_seen,
        ),
    ] {
        let proxy = proxy_to(&url, &options).await;
        for i in 0..3 {
            let (status, _, body) = get(&proxy.url("/h2"), &[("host", "shop.example")]).await;
            assert_eq!(
                (status.as_u16(), &body[..]),
                (200, &b"upstream"[..]),
                "{url} #{i}"
            );
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3);
        for (version, authority, host, _) in seen {
            assert_eq!(version, http::Version::HTTP_2, "{url}");
            assert_eq!(
                authority.as_deref(),
                Some("shop.example"),
                "{url}: :authority"
            );
            assert_eq!(host, None, "{url}: no Host beside :authority");
        }
        proxy.stop().await;
    }
}
