//! TLS termination and HTTP/2 clients, with certificates generated here (rcgen): the
//! handshake, ALPN, `Secure` cookies, `X-Forwarded-Proto`, several `Cookie` fields,
//! trailers, and a certificate rotated under load without a failed request.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};

use crate::support::*;

/// A self-signed certificate for `localhost`: (PEM chain, PEM key, DER).
pub(crate) fn certificate() -> (String, String, CertificateDer<'static>) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    (
        generated.cert.pem(),
        generated.signing_key.serialize_pem(),
        generated.cert.der().clone(),
    )
}

fn write_certificate(dir: &Path, pem: &(String, String, CertificateDer<'static>)) {
    // As certbot and cert-manager do: new files renamed over the old ones.
    for (name, text) in [("cert.pem", &pem.0), ("key.pem", &pem.1)] {
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

/// A TLS proxy in front of `app` with the certificate in `dir/cert.pem`, `dir/key.pem`;
/// `more` is YAML appended to the config (more upstreams go in `upstreams_more`).
async fn tls_proxy(
    app: &MockUpstream,
    upstreams_more: &str,
    more: &str,
) -> (TestProxy, CertificateDer<'static>) {
    let dir = tempfile::tempdir().unwrap();
    let pem = certificate();
    write_certificate(dir.path(), &pem);
    let config_path = dir.path().join("abproxy.yaml");
    std::fs::write(
        &config_path,
        with_data_dir(
            &format!(
                "tls:\n  cert: {}\n  key: {}\nupstreams:\n  app: {}\n{upstreams_more}default_upstream: app\nexperiments:\n  moon_mars:\n    state: active\n    variants:\n      Moon: {{ weight: 1 }}\n      Mars: {{ weight: 1 }}\n    fallback: Moon\n{more}",
                dir.path().join("cert.pem").display(),
                dir.path().join("key.pem").display(),
                app.url()
            ),
            dir.path(),
        ),
    )
    .unwrap();
    (TestProxy::start_at(dir, config_path).await, pem.2)
}

/// A TLS connection that trusts only `root`, offering `alpn`; the certificate the
/// server presented comes back with it. An error says which step failed.
async fn try_tls_connect(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
    alpn: &[u8],
) -> Result<
    (
        tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
        CertificateDer<'static>,
    ),
    String,
> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).map_err(|e| e.to_string())?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let presented = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    Ok((stream, presented))
}

/// As [`try_tls_connect`], for a connection that must succeed with `alpn` agreed.
async fn tls_connect(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
    alpn: &[u8],
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    CertificateDer<'static>,
) {
    let (stream, presented) = try_tls_connect(addr, root, alpn)
        .await
        .expect("TLS handshake with the proxy");
    assert_eq!(
        stream.get_ref().1.alpn_protocol(),
        Some(alpn),
        "the proxy agreed to {}",
        String::from_utf8_lossy(alpn)
    );
    (stream, presented)
}

/// GET `path` on a new HTTP/1.1 TLS connection trusting only `root`: the response head,
/// the whole body and the certificate presented, or which step failed.
async fn try_h1_get(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
    path: &str,
) -> Result<(http::response::Parts, Bytes, CertificateDer<'static>), String> {
    let (stream, presented) = try_tls_connect(addr, root, b"http/1.1").await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let response = sender
        .send_request(
            http::Request::get(path)
                .header("host", "localhost")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((parts, body, presented))
}

/// As [`try_h1_get`], for a request that must succeed.
async fn h1_get(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
    path: &str,
) -> (http::response::Parts, Bytes, CertificateDer<'static>) {
    try_h1_get(addr, root, path)
        .await
        .unwrap_or_else(|e| panic!("GET {path} over TLS: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_terminates_with_secure_cookies_and_forwarded_proto_https() {
    let app = MockUpstream::start("app").await;
    let (proxy, root) = tls_proxy(&app, "", "").await;
    let (parts, body, _) = h1_get(proxy.addr, &root, "/page").await;
    assert_eq!(parts.status, 200);
    assert_eq!(body, "app");
    let cookies: Vec<&str> = parts
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(!cookies.is_empty());
    for cookie in &cookies {
        assert!(cookie.ends_with("; Secure"), "{cookie}");
    }
    let seen = &app.requests()[0];
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert_eq!(seen.headers["x-forwarded-host"], "localhost");

    // Plain HTTP on a TLS listener is not served.
    let mut plain = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut out)).await;
    assert!(!out.starts_with(b"HTTP/1.1 200"), "no cleartext answer");
    assert_eq!(app.count(), 1);
    proxy.stop().await;
}

/// A body of one data frame and then trailers.
struct WithTrailers {
    data: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
}

impl hyper::body::Body for WithTrailers {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let frame = match self.data.take() {
            Some(data) => Some(hyper::body::Frame::data(data)),
            None => self.trailers.take().map(hyper::body::Frame::trailers),
        };
        std::task::Poll::Ready(frame.map(Ok))
    }
}

/// An upstream whose chunked response ends with the trailer `x-checksum: abc123`.
async fn trailer_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |_request: http::Request<hyper::body::Incoming>| async move {
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("x-checksum", "abc123".parse().unwrap());
                        let body = WithTrailers {
                            data: Some(Bytes::from_static(b"payload")),
                            trailers: Some(trailers),
                        };
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("trailer", "x-checksum")
                                .body(body)
                                .unwrap(),
                        )
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_get_one_cookie_field_upstream_and_trailers_back() {
    let app = MockUpstream::start("app").await;
    let trailers_url = trailer_upstream().await;
    let (proxy, root) = tls_proxy(
        &app,
        &format!("  trailers: {trailers_url}\n"),
        "  with_trailers:\n    state: active\n    variants:\n      T: { weight: 1, upstream: trailers }\n    fallback: T\n    match:\n      path_prefix: /trailers\n",
    )
    .await;
    let (stream, _) = tls_connect(proxy.addr, &root, b"h2").await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut device = None;
    for round in 0..2 {
        let mut request = http::Request::get("https://localhost/h2")
            .body(Empty::<Bytes>::new())
            .unwrap();
        if let Some(id) = &device {
            // HTTP/2 sends each cookie as a field of its own.
            for cookie in [format!("device_id={id}"), "theme=dark".to_string()] {
                request
                    .headers_mut()
                    .append("cookie", cookie.parse().unwrap());
            }
        }
        sender.ready().await.unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        assert_eq!(response.status(), 200, "round {round}");
        for hop in ["connection", "keep-alive", "x-upstream-hop"] {
            assert!(
                response.headers().get(hop).is_none(),
                "{hop} must not reach an HTTP/2 client"
            );
        }
        if device.is_none() {
            device = set_device_id(response.headers());
        }
        let _ = response.into_body().collect().await.unwrap();
    }
    let seen = app.requests();
    let second = &seen[1];
    assert_eq!(
        second.version,
        http::Version::HTTP_11,
        "upstream speaks HTTP/1.1"
    );
    let fields: Vec<&str> = second
        .headers
        .get_all("cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [format!("device_id={}; theme=dark", device.unwrap())],
        "one Cookie field upstream"
    );
    assert_eq!(second.headers["host"], "localhost");

    // Trailers from an HTTP/1.1 upstream reach the HTTP/2 client.
    sender.ready().await.unwrap();
    let response = sender
        .send_request(
            http::Request::get("https://localhost/trailers")
                .header("te", "trailers")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected
        .trailers()
        .cloned()
        .expect("trailers passed through");
    assert_eq!(trailers["x-checksum"], "abc123");
    assert_eq!(collected.to_bytes(), "payload");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_without_a_failed_request() {
    let app = MockUpstream::start("app").await;
    let (proxy, first_root) = tls_proxy(&app, "", "").await;
    let dir = proxy.dir.path().to_path_buf();
    // A connection opened before the rotation keeps working after it.
    let (stream, _) = tls_connect(proxy.addr, &first_root, b"http/1.1").await;
    let (mut kept, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let get = |path: &str| {
        http::Request::get(path)
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    assert_eq!(
        kept.send_request(get("/before")).await.unwrap().status(),
        200
    );

    // Requests on new connections all along the rotation.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let roots = Arc::new(std::sync::Mutex::new(vec![first_root.clone()]));
        let addr = proxy.addr;
        (
            roots.clone(),
            tokio::spawn(async move {
                let mut done = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Trust both the old and the new certificate: what is checked here is
                    // that no request fails while the files change.
                    let trusted: Vec<_> = roots.lock().unwrap().clone();
                    let mut last_err = None;
                    let mut ok = false;
                    for root in &trusted {
                        match tokio::time::timeout(
                            Duration::from_secs(5),
                            try_h1_get(addr, root, "/load"),
                        )
                        .await
                        {
                            Ok(Ok((parts, _, _))) if parts.status == 200 => {
                                ok = true;
                                break;
                            }
                            other => last_err = Some(format!("{other:?}")),
                        }
                    }
                    assert!(
                        ok,
                        "request {done} failed during the rotation: {last_err:?}"
                    );
                    done += 1;
                }
                done
            }),
        )
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = certificate();
    load.0.lock().unwrap().push(second.2.clone());
    write_certificate(&dir, &second);
    eventually(
        Duration::from_secs(5),
        "new handshakes get the new certificate",
        || {
            let root = second.2.clone();
            async move {
                match try_h1_presented(proxy.addr, &root).await {
                    Some(presented) => presented == root,
                    None => false,
                }
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let done = load.1.await.expect("no request failed");
    assert!(done > 10, "only {done} requests during the rotation");
    kept.ready()
        .await
        .expect("the connection opened before the rotation is open");
    assert_eq!(
        kept.send_request(get("/after")).await.unwrap().status(),
        200,
        "the connection opened before the rotation is not dropped"
    );

    // A broken pair is refused; the new certificate keeps serving.
    std::fs::write(dir.join("key.pem"), "not a key").unwrap();
    eventually(
        Duration::from_secs(5),
        "the broken key is refused",
        || async {
            proxy.metrics().await[r#"abproxy_config_reloads_total{result="failure"}"#] >= 1.0
        },
    )
    .await;
    let (parts, _, presented) = h1_get(proxy.addr, &second.2, "/still").await;
    assert_eq!((parts.status.as_u16(), presented), (200, second.2.clone()));
    proxy.stop().await;
}

/// The certificate the proxy presents to a new handshake, if `root` verifies it.
async fn try_h1_presented(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
) -> Option<CertificateDer<'static>> {
    try_tls_connect(addr, root, b"http/1.1")
        .await
        .ok()
        .map(|(_, presented)| presented)
}
