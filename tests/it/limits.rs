//! Limits and timeouts: each one exceeded gets its documented answer, and the proxy keeps
//! serving well-behaved clients while one misbehaves.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

fn app_config(app: &MockUpstream, extra: &str) -> String {
    format!(
        "upstreams:\n  app: {}\ndefault_upstream: app\n{extra}",
        app.url()
    )
}

/// A kept-open HTTP/1.1 client connection, and whether hyper saw it close.
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    closed: tokio::task::JoinHandle<()>,
}

async fn connect(addr: SocketAddr) -> Connection {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let closed = tokio::spawn(async move {
        let _ = conn.await;
    });
    Connection { sender, closed }
}

impl Connection {
    async fn get(&mut self, path: &str) -> (u16, http::HeaderMap, String) {
        let request = http::Request::get(path)
            .header("host", "shop.example")
            .body(Empty::new())
            .unwrap();
        // hyper's client takes the next request only once the connection is idle again.
        self.sender
            .ready()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: the connection is not usable: {e:?}"));
        let response = self
            .sender
            .send_request(request)
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e:?}"));
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status.as_u16(),
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }
}

/// A well-behaved request on a new connection succeeds (the proxy is still serving).
async fn others_are_served(proxy: &TestProxy) {
    let (status, _, _) = get(&proxy.url("/other"), &[]).await;
    assert_eq!(status, 200, "another client is still served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_max_connections_get_503_and_the_open_ones_keep_working() {
    let app = MockUpstream::start("app").await;
    let proxy = TestProxy::start(&app_config(&app, "limits:\n  max_connections: 2\n")).await;
    let mut first = connect(proxy.addr).await;
    let mut second = connect(proxy.addr).await;
    assert_eq!(first.get("/a").await.0, 200);
    assert_eq!(second.get("/b").await.0, 200);

    let mut third = connect(proxy.addr).await;
    let (status, headers, body) = third.get("/c").await;
    assert_eq!(status, 503);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(headers["connection"], "close");
    assert_eq!(
        body,
        "abproxy: too many open connections; try again shortly\n"
    );
    tokio::time::timeout(Duration::from_secs(5), &mut third.closed)
        .await
        .expect("the proxy closes the rejected connection")
        .unwrap();
    assert_eq!(
        app.count(),
        2,
        "the rejected request never reached the upstream"
    );

    // The admitted connections are unaffected.
    assert_eq!(first.get("/a2").await.0, 200);
    assert_eq!(second.get("/b2").await.0, 200);
    let m = proxy.metrics().await;
    assert_eq!(m["abproxy_connections_rejected_total"], 1.0);
    assert_eq!(m["abproxy_connections_open"], 2.0);

    // Once one closes, a new connection is admitted.
    drop(first);
    eventually(
        Duration::from_secs(5),
        "the closed connection is released",
        || async { proxy.metrics().await["abproxy_connections_open"] == 1.0 },
    )
    .await;
    let mut fourth = connect(proxy.addr).await;
    assert_eq!(fourth.get("/d").await.0, 200);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_get_431_and_others_go_on() {
    let app = MockUpstream::start("app").await;
    let proxy = TestProxy::start(&app_config(
        &app,
        "limits:\n  max_header_bytes: 16KiB\n  max_headers: 20\n",
    ))
    .await;
    // Just under the byte limit passes; just over is refused.
    let under = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
        "p".repeat(15 * 1024)
    );
    assert_eq!(raw_http(proxy.addr, &under).await.0, 200);
    let over = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
        "p".repeat(17 * 1024)
    );
    assert_eq!(raw_http(proxy.addr, &over).await.0, 431);

    let fields = |n: usize| {
        let mut request = String::from("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n");
        for i in 0..n {
            request.push_str(&format!("X-F{i}: v\r\n"));
        }
        request + "\r\n"
    };
    assert_eq!(raw_http(proxy.addr, &fields(18)).await.0, 200, "20 fields");
    assert_eq!(raw_http(proxy.addr, &fields(19)).await.0, 431, "21 fields");
    assert_eq!(app.count(), 2, "refused heads never reach the upstream");
    others_are_served(&proxy).await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_max_body_bytes_get_413() {
    let app = MockUpstream::start("app").await;
    let token = "a-long-enough-admin-token";
    let yaml = format!(
        "{}  goal_test:\n    state: active\n    variants:\n      A: {{ weight: 1 }}\n      B: {{ weight: 1 }}\n    fallback: A\n    goals:\n      click: {{ event: click }}\n",
        app_config(&app, "limits:\n  max_body_bytes: 2KiB\nexperiments:\n")
    );
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("abproxy.yaml");
    std::fs::write(dir.path().join("token"), token).unwrap();
    std::fs::write(
        &config_path,
        with_data_dir(
            &format!(
                "admin:\n  token_file: {}\n{yaml}",
                dir.path().join("token").display()
            ),
            dir.path(),
        ),
    )
    .unwrap();
    let proxy = TestProxy::start_at(dir, config_path).await;
    let (_, headers, _) = get(&proxy.url("/"), &[]).await;
    let jar = cookies_after(&headers, "");
    let event = |pad: usize| {
        format!(
            r#"{{"event": "click", "params": {{"pad": "{}"}}}}"#,
            "x".repeat(pad)
        )
    };
    let post = |body: String| {
        let builder = http::Request::post(proxy.url("/_ab/events"))
            .header("cookie", jar.clone())
            .header("content-type", "application/json");
        async move { send_text(builder, &body).await }
    };
    let (status, _, body) = post(event(1500)).await;
    assert_eq!(status, 202, "{body}");
    let (status, _, body) = post(event(2100)).await;
    assert_eq!(status, 413);
    assert!(
        body.contains("the request body is over 2048 bytes"),
        "{body}"
    );

    let patch = http::Request::patch(format!("http://{}/api/experiments/goal_test", proxy.admin))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json");
    let (status, _, body) =
        send_text(patch, &format!(r#"{{"title": "{}"}}"#, "t".repeat(2100))).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("over 2048 bytes"), "{body}");
    others_are_served(&proxy).await;
    proxy.stop().await;
}

/// A client that sends half a head and stalls (slow loris) is cut off after
/// `timeouts.header_read`, with no response; meanwhile others are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_head_is_closed_after_header_read() {
    let app = MockUpstream::start("app").await;
    let proxy = TestProxy::start(&app_config(&app, "timeouts:\n  header_read: 400ms\n")).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        .await
        .unwrap();
    others_are_served(&proxy).await;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
        .await
        .expect("the proxy closes a stalled connection")
        .unwrap();
    let waited = started.elapsed();
    assert!(out.is_empty(), "no response to half a head: {out:?}");
    assert!(
        waited >= Duration::from_millis(350) && waited < Duration::from_secs(3),
        "closed after {waited:?}"
    );
    assert_eq!(
        app.count(),
        1,
        "only the other client's request went upstream"
    );
    proxy.stop().await;
}

/// An idle keep-alive connection is closed once `timeouts.header_read` passes without
/// a new request (hyper starts the head timer when a connection goes idle).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_header_read() {
    let app = MockUpstream::start("app").await;
    let proxy = TestProxy::start(&app_config(&app, "timeouts:\n  header_read: 400ms\n")).await;
    let mut connection = connect(proxy.addr).await;
    assert_eq!(connection.get("/").await.0, 200);
    let idle_since = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), &mut connection.closed)
        .await
        .expect("the proxy closes an idle connection")
        .unwrap();
    let idle = idle_since.elapsed();
    assert!(
        idle >= Duration::from_millis(350) && idle < Duration::from_secs(3),
        "closed after {idle:?} idle"
    );
    proxy.stop().await;
}

/// An upstream that accepts no connection (its listen backlog is full) is a 504 after
/// `timeouts.connect`; the other upstream keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_connect_past_timeouts_connect_is_504() {
    let app = MockUpstream::start("app").await;
    // A listener that never accepts, its backlog filled: further SYNs go unanswered.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = socket.listen(0).unwrap();
    let full_addr = full.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(full_addr),
        )
        .await
        {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }
    let proxy = TestProxy::start(&format!(
        "upstreams:\n  app: {}\n  stuck: http://{full_addr}\ndefault_upstream: app\ntimeouts:\n  connect: 300ms\nexperiments:\n  route:\n    state: active\n    variants:\n      A: {{ weight: 1, upstream: stuck }}\n    fallback: A\n    match:\n      path_prefix: /stuck\n",
        app.url()
    ))
    .await;
    let started = Instant::now();
    let (status, _, body) = get(&proxy.url("/stuck"), &[]).await;
    let waited = started.elapsed();
    assert_eq!(status, 504, "{}", String::from_utf8_lossy(&body));
    assert!(
        String::from_utf8_lossy(&body).contains("upstream stuck"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "answered after {waited:?}"
    );
    others_are_served(&proxy).await;
    drop(fillers);
    proxy.stop().await;
}
