//! The sender against real receivers on 127.0.0.1:0, and its pure rules.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use prometheus::IntCounter;
use sha2::Sha256;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// Long enough for a busy machine wherever time is not what is tested.
const PATIENCE: Duration = Duration::from_secs(30);

/// Quick retries, patient attempts.
fn quick_policy() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        first_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        attempt_timeout: PATIENCE,
    }
}

fn counter() -> IntCounter {
    IntCounter::new("webhook_failures", "test").unwrap()
}

fn delivery(url: &str, id: &str, body: &str) -> Delivery {
    Delivery {
        url: url.to_string(),
        secret: None,
        body: body.as_bytes().to_vec(),
        id: id.to_string(),
    }
}

/// Wait until `done` holds, failing the test after [`PATIENCE`].
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What a receiver saw of one request.
#[derive(Clone)]
struct Seen {
    target: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// A webhook receiver answering the statuses of its script in turn (then the last one),
/// over TLS with `acceptor` if given.
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    async fn start(script: &[u16], acceptor: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let script: Arc<[u16]> = script.into();
        let recorded = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (recorded, script, acceptor) =
                    (recorded.clone(), script.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: http::Request<hyper::body::Incoming>| {
                            let (recorded, script) = (recorded.clone(), script.clone());
                            async move {
                                let (parts, body) = request.into_parts();
                                let body = body.collect().await?.to_bytes();
                                let mut recorded = recorded.lock().unwrap();
                                let status = script[recorded.len().min(script.len() - 1)];
                                recorded.push(Seen {
                                    target: parts.uri.to_string(),
                                    headers: parts.headers,
                                    body,
                                });
                                Ok::<_, hyper::Error>(
                                    http::Response::builder()
                                        .status(status)
                                        .body(Full::new(Bytes::from_static(b"  no such hook \n")))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let http = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                        }
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                let _ = http.serve_connection(TokioIo::new(tls), service).await;
                            }
                        }
                    }
                });
            }
        });
        Receiver { addr, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize) -> Vec<Seen> {
        eventually(&format!("{n} requests received"), || {
            self.seen.lock().unwrap().len() >= n
        })
        .await;
        self.seen()
    }
}

/// A listener that accepts connections and never answers; it keeps them open.
async fn silent_listener() -> (SocketAddr, Arc<Mutex<Vec<TcpStream>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let kept = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            kept.lock().unwrap().push(tcp);
        }
    });
    (addr, accepted)
}

/// The address of a port nothing listens on (bound, then closed).
async fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The receiver's check, written independently of [`signature`].
fn expected_signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    let tag: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={tag}")
}

#[tokio::test]
async fn the_body_arrives_as_sent_with_its_headers_and_a_signature_the_receiver_can_check() {
    let receiver = Receiver::start(&[200], None).await;
    let webhook = Webhook::start(counter(), quick_policy());
    let body = r#"{"experiment":"checkout","action":"promote","variant":"b"}"#;
    webhook.send(Delivery {
        secret: Some(b"s3cret".to_vec()),
        ..delivery(
            &receiver.url("/hooks/abc?team=growth"),
            "checkout-3-b",
            body,
        )
    });
    let seen = receiver.wait_for(1).await;
    let seen = &seen[0];
    assert_eq!(seen.body, body.as_bytes());
    assert_eq!(seen.target, "/hooks/abc?team=growth");
    assert_eq!(
        seen.header("host"),
        Some(receiver.addr.to_string().as_str())
    );
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(
        seen.header("user-agent"),
        Some(concat!("abproxy/", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(seen.header("x-abproxy-delivery"), Some("checkout-3-b"));
    assert_eq!(
        seen.header("x-abproxy-signature"),
        Some(expected_signature(b"s3cret", &seen.body).as_str())
    );
    webhook.stop().await;
}

#[tokio::test]
async fn without_a_secret_there_is_no_signature() {
    let receiver = Receiver::start(&[204], None).await;
    let webhook = Webhook::start(counter(), quick_policy());
    webhook.send(delivery(&receiver.url("/"), "id-1", "{}"));
    let seen = receiver.wait_for(1).await;
    assert_eq!(seen[0].header("x-abproxy-delivery"), Some("id-1"));
    assert_eq!(seen[0].header("x-abproxy-signature"), None);
    webhook.stop().await;
}

#[tokio::test]
async fn a_503_is_retried_with_the_same_id_and_the_next_delivery_waits_its_turn() {
    let receiver = Receiver::start(&[503, 503, 200], None).await;
    let failures = counter();
    let webhook = Webhook::start(failures.clone(), quick_policy());
    webhook.send(delivery(&receiver.url("/"), "first", "1"));
    webhook.send(delivery(&receiver.url("/"), "second", "2"));
    // The second is only sent once the first is done: all its attempts are in by then.
    let seen = receiver.wait_for(4).await;
    let ids: Vec<_> = seen
        .iter()
        .map(|s| s.header("x-abproxy-delivery").unwrap())
        .collect();
    assert_eq!(ids, ["first", "first", "first", "second"]);
    let bodies: Vec<_> = seen.iter().map(|s| s.body.clone()).collect();
    assert_eq!(bodies, ["1", "1", "1", "2"]);
    assert_eq!(failures.get(), 0);
    webhook.stop().await;
}

#[tokio::test]
async fn a_400_is_not_retried_and_counts_one_failure() {
    let receiver = Receiver::start(&[400, 200], None).await;
    let failures = counter();
    let webhook = Webhook::start(failures.clone(), quick_policy());
    webhook.send(delivery(&receiver.url("/"), "refused", "{}"));
    eventually("the failure counted", || failures.get() == 1).await;
    assert_eq!(receiver.seen().len(), 1);
    webhook.stop().await;
}

#[tokio::test]
async fn the_start_of_a_refusing_body_is_in_the_reason() {
    let receiver = Receiver::start(&[404], None).await;
    let tls = tokio_rustls::TlsConnector::from(upstream_client::client_config(
        Arc::new(rustls::RootCertStore::empty()),
        b"http/1.1",
    ));
    let given_up = deliver(
        &delivery(&receiver.url("/"), "x", "{}"),
        &quick_policy(),
        &tls,
    )
    .await
    .unwrap_err();
    assert_eq!(given_up.attempts, 1);
    assert!(
        given_up.reason.contains("404 Not Found: no such hook"),
        "{}",
        given_up.reason
    );
}

#[tokio::test]
async fn with_nothing_listening_every_attempt_is_made_then_one_failure_counted() {
    let url = format!("http://{}/", closed_port().await);
    let tls = tokio_rustls::TlsConnector::from(upstream_client::client_config(
        Arc::new(rustls::RootCertStore::empty()),
        b"http/1.1",
    ));
    let given_up = deliver(&delivery(&url, "x", "{}"), &quick_policy(), &tls)
        .await
        .unwrap_err();
    assert_eq!(given_up.attempts, 3);
    assert!(
        given_up.reason.contains("cannot connect"),
        "{}",
        given_up.reason
    );

    let failures = counter();
    let webhook = Webhook::start(failures.clone(), quick_policy());
    webhook.send(delivery(&url, "x", "{}"));
    eventually("the failure counted", || failures.get() == 1).await;
    webhook.stop().await;
    assert_eq!(failures.get(), 1);
}

#[tokio::test]
async fn an_attempt_without_an_answer_times_out_and_is_retried() {
    let (addr, accepted) = silent_listener().await;
    let policy = RetryPolicy {
        attempts: 2,
        attempt_timeout: Duration::from_millis(300),
        ..quick_policy()
    };
    let tls = tokio_rustls::TlsConnector::from(upstream_client::client_config(
        Arc::new(rustls::RootCertStore::empty()),
        b"http/1.1",
    ));
    let given_up = deliver(
        &delivery(&format!("http://{addr}/"), "x", "{}"),
        &policy,
        &tls,
    )
    .await
    .unwrap_err();
    assert_eq!(given_up.attempts, 2);
    assert!(
        given_up.reason.contains("no answer within 300 ms"),
        "{}",
        given_up.reason
    );
    assert_eq!(accepted.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn https_is_verified_against_the_trusted_roots() {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(generated.signing_key.serialize_der()).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![generated.cert.der().clone()], key)
    .unwrap();
    let receiver = Receiver::start(
        &[200],
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(server))),
    )
    .await;
    let url = format!("https://localhost:{}/slack", receiver.addr.port());

    // Not trusted: every attempt fails its handshake.
    let untrusted = tokio_rustls::TlsConnector::from(upstream_client::client_config(
        Arc::new(rustls::RootCertStore::empty()),
        b"http/1.1",
    ));
    let given_up = deliver(&delivery(&url, "x", "{}"), &quick_policy(), &untrusted)
        .await
        .unwrap_err();
    assert!(given_up.reason.contains("TLS"), "{}", given_up.reason);
    assert!(receiver.seen().is_empty());

    let mut roots = rustls::RootCertStore::empty();
    roots.add(generated.cert.der().clone()).unwrap();
    let failures = counter();
    let webhook = Webhook::start_trusting(
        failures.clone(),
        quick_policy(),
        upstream_client::client_config(Arc::new(roots), b"http/1.1"),
    );
    webhook.send(delivery(&url, "over-tls", r#"{"ok":true}"#));
    let seen = receiver.wait_for(1).await;
    assert_eq!(seen[0].body, r#"{"ok":true}"#.as_bytes());
    assert_eq!(seen[0].header("x-abproxy-delivery"), Some("over-tls"));
    webhook.stop().await;
    assert_eq!(failures.get(), 0);
}

#[tokio::test]
async fn a_url_neither_http_nor_https_is_a_failure_without_an_attempt() {
    let tls = tokio_rustls::TlsConnector::from(upstream_client::client_config(
        Arc::new(rustls::RootCertStore::empty()),
        b"http/1.1",
    ));
    let given_up = deliver(
        &delivery("ftp://example.com/hook", "x", "{}"),
        &quick_policy(),
        &tls,
    )
    .await
    .unwrap_err();
    assert_eq!(given_up.attempts, 0);
    assert!(
        given_up
            .reason
            .contains("must start with http:// or https://"),
        "{}",
        given_up.reason
    );

    let failures = counter();
    let webhook = Webhook::start(failures.clone(), quick_policy());
    webhook.send(delivery("hooks.example.com/x", "x", "{}"));
    eventually("the failure counted", || failures.get() == 1).await;
    webhook.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_drops_the_delivery_and_counts_it_without_waiting() {
    let (addr, _accepted) = silent_listener().await;
    let failures = counter();
    let webhook = Webhook::start(failures.clone(), quick_policy());
    let url = format!("http://{addr}/");
    // On this one thread the task cannot take any before the loop ends.
    for i in 0..QUEUE_CAPACITY {
        webhook.send(delivery(&url, &i.to_string(), "{}"));
    }
    assert_eq!(failures.get(), 0);
    webhook.send(delivery(&url, "one too many", "{}"));
    assert_eq!(failures.get(), 1);
    webhook.stop().await;
}

#[tokio::test]
async fn stop_cancels_the_attempt_in_flight() {
    let (addr, accepted) = silent_listener().await;
    let webhook = Webhook::start(counter(), quick_policy());
    webhook.send(delivery(&format!("http://{addr}/"), "x", "{}"));
    eventually("the attempt connected", || {
        !accepted.lock().unwrap().is_empty()
    })
    .await;
    webhook.stop().await;
    let mut connection = accepted.lock().unwrap().pop().unwrap();
    let mut request = Vec::new();
    // The client closed its side: the read ends instead of waiting for the timeout.
    tokio::time::timeout(PATIENCE, connection.read_to_end(&mut request))
        .await
        .expect("the connection was closed")
        .unwrap();
    assert!(request.starts_with(b"POST / HTTP/1.1\r\n"));
}

#[test]
fn answers_are_delivered_retried_or_refused() {
    for (status, expected) in [
        (200, Verdict::Delivered),
        (202, Verdict::Delivered),
        (204, Verdict::Delivered),
        (500, Verdict::Retry),
        (502, Verdict::Retry),
        (503, Verdict::Retry),
        (429, Verdict::Retry),
        (408, Verdict::Retry),
        (400, Verdict::Refused),
        (401, Verdict::Refused),
        (404, Verdict::Refused),
        (410, Verdict::Refused),
        (301, Verdict::Refused),
    ] {
        assert_eq!(
            verdict(StatusCode::from_u16(status).unwrap()),
            expected,
            "{status}"
        );
    }
}

#[test]
fn the_backoff_doubles_up_to_its_limit_and_heeds_retry_after_within_it() {
    let policy = RetryPolicy::default();
    let waits: Vec<u64> = (1..=7)
        .map(|failed| backoff(&policy, failed, None).as_secs())
        .collect();
    assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
    assert_eq!(backoff(&policy, 100, None), Duration::from_secs(30));
    let later = Some(Duration::from_secs(10));
    assert_eq!(backoff(&policy, 1, later), Duration::from_secs(10));
    assert_eq!(backoff(&policy, 5, later), Duration::from_secs(16));
    assert_eq!(
        backoff(&policy, 1, Some(Duration::from_secs(3600))),
        Duration::from_secs(30)
    );
}

#[test]
fn retry_after_is_read_in_seconds_only() {
    let with = |value: &str| {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", value.parse().unwrap());
        retry_after(&headers)
    };
    assert_eq!(with("120"), Some(Duration::from_secs(120)));
    assert_eq!(with("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    assert_eq!(retry_after(&HeaderMap::new()), None);
}

#[test]
fn the_signature_is_the_hex_hmac_of_the_body() {
    // RFC 4231 test case 2.
    assert_eq!(
        signature(b"Jefe", b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn targets_take_default_ports_and_unbracketed_hosts() {
    let t = parse_target("https://hooks.slack.com/services/T0/B0/XXXX").unwrap();
    assert_eq!((t.host.as_str(), t.port), ("hooks.slack.com", 443));
    assert!(t.tls.is_some());
    assert_eq!(t.authority, "hooks.slack.com");
    assert_eq!(t.path_and_query, "/services/T0/B0/XXXX");
    assert_eq!(t.origin, "https://hooks.slack.com");

    let t = parse_target("http://[::1]:8080").unwrap();
    assert_eq!((t.host.as_str(), t.port), ("::1", 8080));
    assert!(t.tls.is_none());
    assert_eq!(t.authority, "[::1]:8080");
    assert_eq!(t.path_and_query, "/");

    assert_eq!(parse_target("http://example.com/").unwrap().port, 80);
    assert!(parse_target("http://user:pw@example.com/")
        .unwrap_err()
        .contains("credentials"));
    assert!(parse_target("/relative").is_err());
}

#[test]
fn logs_name_the_origin_never_the_path() {
    assert_eq!(
        origin_of("https://hooks.slack.com/services/T0/B0/secret-token"),
        "https://hooks.slack.com"
    );
    assert_eq!(origin_of("not a url"), "?");
}
