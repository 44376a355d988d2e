//! What a client must send and what it gets back, on raw sockets: abproxy answers in its
//! own HTTP version and keeps the connection alive whatever the upstream spoke; CONNECT,
//! a missing, repeated or invalid Host, and request codings other than chunked are
//! refused and never forwarded; a malformed or stalled request body is the client's
//! fault (400 / 408), never counted against the upstream; one bad X-Forwarded-For entry
//! drops only itself.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

fn config(app: &str, extra: &str) -> String {
    format!("upstreams:\n  app: {app}\ndefault_upstream: app\n{extra}")
}

/// Read one response from `stream`: its head (status line first) and a body framed by
/// Content-Length or chunked. Fails the test after 30 s (a generous bound: the test is
/// about the answer, not its speed).
async fn read_response(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> (String, String) {
    let mut buf = Vec::new();
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let lower = head.to_ascii_lowercase();
                let body_start = end + 4;
                if let Some(len) = lower
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse::<usize>().unwrap())
                {
                    if buf.len() >= body_start + len {
                        let body = String::from_utf8_lossy(&buf[body_start..body_start + len]);
                        return (head, body.into_owned());
                    }
                } else if lower.contains("transfer-encoding: chunked") {
                    if let Some(body) = dechunk(&buf[body_start..]) {
                        return (head, body);
                    }
                } else {
                    return (head, String::new());
                }
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before a whole response: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("a response within 30s")
}

/// `GET path` on `client`, and the response to it.
async fn get_path(client: &mut TcpStream, path: &str) -> (String, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
    client.write_all(request.as_bytes()).await.unwrap();
    read_response(client).await
}

/// A whole chunked body, or `None` if more bytes are needed.
fn dechunk(mut data: &[u8]) -> Option<String> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).ok()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return data
                .starts_with(b"\r\n")
                .then(|| String::from_utf8_lossy(&out).into_owned());
        }
        if data.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// An upstream that speaks HTTP/1.0 as `python3 -m http.server` does: it answers
/// `HTTP/1.0 200 OK` with a length and closes the connection after every response.
async fn http10_upstream() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                if read_request_head(&mut stream).await.is_none() {
                    return;
                }
                let _ = stream
                    .write_all(b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
                    .await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http10_upstream_does_not_make_the_client_speak_http10() {
    let (upstream, task) = http10_upstream().await;
    let proxy = TestProxy::start(&config(&format!("http://{upstream}"), "")).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    for i in 0..3 {
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: shop.example\r\n\r\n")
            .await
            .unwrap();
        let (head, body) = read_response(&mut client).await;
        assert!(
            head.starts_with("HTTP/1.1 200 OK\r\n"),
            "response {i} on one connection: {head}"
        );
        assert!(
            !head.to_ascii_lowercase().contains("connection: close"),
            "response {i} keeps the connection: {head}"
        );
        assert_eq!(body, "hello");
    }
    // An HTTP/1.0 client is still answered in HTTP/1.0 (hyper's own rule).
    let (status, _, body) = raw_http(proxy.addr, "GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!((status, body.as_str()), (200, "hello"));
    proxy.stop().await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_host_errors_and_other_codings_are_refused_and_not_forwarded() {
    let app = MockUpstream::start("app").await;
    let proxy = TestProxy::start(&config(&app.url(), "")).await;
    let refused: &[(&str, u16, &str)] = &[
        (
            "CONNECT shop.example:443 HTTP/1.1\r\nHost: shop.example:443\r\nConnection: close\r\n\r\n",
            501,
            "method",
        ),
        ("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 400, "host"),
        (
            "GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
            400,
            "host",
        ),
        (
            "GET / HTTP/1.1\r\nHost: a b/c@d\r\nConnection: close\r\n\r\n",
            400,
            "host",
        ),
        (
            "GET http://shop.example/ HTTP/1.1\r\nConnection: close\r\n\r\n",
            400,
            "host",
        ),
        (
            "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            501,
            "transfer_coding",
        ),
    ];
    for (request, status, kind) in refused {
        let (got, _, body) = raw_http(proxy.addr, request).await;
        assert_eq!(got, *status, "{request:?}: {body}");
        assert!(body.starts_with("abproxy: "), "a short reason: {body:?}");
        let m = proxy.metrics().await;
        assert!(
            m[&format!(r#"abproxy_client_errors_total{{kind="{kind}"}}"#)] >= 1.0,
            "{request:?} counted as {kind}"
        );
    }
    assert_eq!(app.count(), 0, "nothing was forwarded");
    let m = proxy.metrics().await;
    assert_eq!(m[r#"abproxy_client_errors_total{kind="host"}"#], 4.0);
    // HTTP/1.0 may omit Host; it is forwarded with the upstream's.
    let (status, _, _) = raw_http(proxy.addr, "GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 200);
    assert_eq!(app.count(), 1);
    proxy.stop().await;
}

/// Sum of every upstream failure the proxy counted for `app`.
fn upstream_failures(m: &std::collections::HashMap<String, f64>) -> f64 {
    let errors: f64 = ["refused", "timeout", "reset", "protocol", "body"]
        .iter()
        .map(|k| m[&format!(r#"abproxy_upstream_errors_total{{kind="{k}",upstream="app"}}"#)])
        .sum();
    errors
        + m.get(r#"abproxy_upstream_responses_total{code_class="error",upstream="app"}"#)
            .copied()
            .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_body_is_the_clients_400_not_an_upstream_error() {
    let app = MockUpstream::start("app").await;
    let proxy = TestProxy::start(&config(&app.url(), "")).await;
    let (status, _, body) = raw_http(
        proxy.addr,
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("malformed"), "{body:?}");
    let m = proxy.metrics().await;
    assert_eq!(m[r#"abproxy_client_errors_total{kind="body"}"#], 1.0);
    assert_eq!(
        upstream_failures(&m),
        0.0,
        "nothing counted against the upstream"
    );
    // A well-formed chunked body still goes through.
    let (status, _, body) = raw_http(
        proxy.addr,
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "hello"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_or_trickled_request_body_gets_408_not_an_upstream_timeout() {
    let app = MockUpstream::start("app").await;
    // The idle timeout is what is tested; the upstream's is long, so only a trickle
    // slower than it can reach it.
    let proxy = TestProxy::start(&config(
        &app.url(),
        "timeouts: { request_body_idle: 1s, upstream_response: 4s }\n",
    ))
    .await;
    // Stalled: half the body, then nothing.
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello")
        .await
        .unwrap();
    let (head, body) = read_response(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(body.contains("stalled"), "{body:?}");
    // Trickled: a byte every 200 ms keeps the idle timer from firing, and the body is
    // still not whole when the upstream timeout passes. That is the client's doing too.
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
        .await
        .unwrap();
    let (mut reader, mut writer) = client.into_split();
    let trickle = tokio::spawn(async move {
        while writer.write_all(b"x").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let (head, _) = read_response(&mut reader).await;
    trickle.abort();
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    let m = proxy.metrics().await;
    assert_eq!(
        m[r#"abproxy_client_errors_total{kind="body_timeout"}"#],
        2.0
    );
    assert_eq!(
        upstream_failures(&m),
        0.0,
        "nothing counted against the upstream"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_forwarded_for_entry_drops_only_itself() {
    let app = MockUpstream::start("app").await;
    let proxy = TestProxy::start(&config(&app.url(), "")).await;
    let request =
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.7, b\xfcd, 198.51.100.1\r\nConnection: close\r\n\r\n";
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let seen = app.requests().pop().unwrap();
    assert_eq!(
        seen.headers["x-forwarded-for"],
        "203.0.113.7, 198.51.100.1, 127.0.0.1"
    );
    proxy.stop().await;
}

/// A keep-alive connection starts on the proxy's own HTTP/1.1 path (bodiless GETs) and
/// moves to hyper's at the first request that needs it (a body): every request on it is
/// answered, in order, and the body reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_serves_plain_gets_then_a_request_with_a_body() {
    let app = MockUpstream::start("app").await;
    let proxy = TestProxy::start(&config(&app.url(), "")).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let exchanges: [(&str, &str, &str); 3] = [
        (
            "GET /status/202 HTTP/1.1\r\nHost: a\r\n\r\n",
            "HTTP/1.1 202",
            "app",
        ),
        (
            "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
            "HTTP/1.1 200",
            "hello",
        ),
        (
            "GET /status/203 HTTP/1.1\r\nHost: a\r\n\r\n",
            "HTTP/1.1 203",
            "app",
        ),
    ];
    for (request, status, body) in exchanges {
        client.write_all(request.as_bytes()).await.unwrap();
        let (head, got) = read_response(&mut client).await;
        assert!(head.starts_with(status), "{request:?}: {head}");
        assert_eq!(got, body, "{request:?}");
    }
    let seen: Vec<(String, Vec<u8>)> = app
        .requests()
        .iter()
        .map(|r| (r.uri.path().to_string(), r.body.to_vec()))
        .collect();
    assert_eq!(
        seen,
        [
            ("/status/202".to_string(), Vec::new()),
            ("/echo".to_string(), b"hello".to_vec()),
            ("/status/203".to_string(), Vec::new()),
        ]
    );
    proxy.stop().await;
}

/// An upstream that answers each request on a connection by its path: `/chunked` with a
/// chunked body (an extension and a trailer on it) on a kept-alive connection,
/// `/until-close` with a body that ends when it closes the connection, `/hidden-chunked`
/// and `/hidden-length` with a `Connection` field naming the framing field.
async fn framing_upstream() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut read = Vec::new();
                loop {
                    let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let mut chunk = [0u8; 4096];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&read[..end]).into_owned();
                    read.drain(..end + 4);
                    if head.starts_with("GET /until-close ") {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil close")
                            .await;
                        let _ = stream.shutdown().await;
                        return;
                    }
                    let answer: &[u8] = if head.starts_with("GET /hidden-chunked ") {
                        b"HTTP/1.1 200 OK\r\nConnection: transfer-encoding\r\n\
                          Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n\
                          6\r\nhidden\r\n0\r\n\r\n"
                    } else if head.starts_with("GET /hidden-length ") {
                        b"HTTP/1.1 200 OK\r\nConnection: content-length\r\n\
                          Content-Length: 6\r\n\r\nlength"
                    } else {
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                          5;note=x\r\nhello\r\n6\r\n world\r\n0\r\nx-digest: 1\r\n\r\n"
                    };
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, task)
}

/// Chunked and close-delimited upstream bodies reach a keep-alive client whole, chunked,
/// without the trailer it did not ask for; the client's connection stays open through
/// both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_and_close_delimited_bodies_reach_a_keep_alive_client_whole() {
    let (upstream, task) = framing_upstream().await;
    let proxy = TestProxy::start(&config(&format!("http://{upstream}"), "")).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    for (path, body) in [
        ("/chunked", "hello world"),
        ("/until-close", "until close"),
        ("/chunked", "hello world"),
        ("/chunked", "hello world"),
    ] {
        // `read_response` only accepts a chunked body that ends right after its last
        // chunk: a trailer passed on would not be.
        let (head, got) = get_path(&mut client, path).await;
        let lower = head.to_ascii_lowercase();
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        assert!(
            lower.contains("transfer-encoding: chunked"),
            "{path}: {head}"
        );
        assert!(!lower.contains("connection: close"), "{path}: {head}");
        assert_eq!(got, body, "{path}");
    }
    proxy.stop().await;
    task.abort();
}

/// A `Connection` option that names `Transfer-Encoding` or `Content-Length` removes the
/// field from what the client gets, never from how the body is read: each body arrives
/// whole, and the responses after it on the same connections are not shifted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_option_naming_a_framing_field_does_not_change_the_framing() {
    let (upstream, task) = framing_upstream().await;
    let proxy = TestProxy::start(&config(&format!("http://{upstream}"), "")).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    for (path, body) in [
        ("/hidden-chunked", "hidden"),
        ("/chunked", "hello world"),
        ("/hidden-length", "length"),
        ("/chunked", "hello world"),
        ("/hidden-chunked", "hidden"),
        ("/hidden-length", "length"),
    ] {
        let (head, got) = get_path(&mut client, path).await;
        let lower = head.to_ascii_lowercase();
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        assert!(!lower.contains("connection:"), "{path}: {head}");
        assert_eq!(got, body, "{path}: {head}");
    }
    proxy.stop().await;
    task.abort();
}

/// A client that leaves while its answer is on the way is noticed: the upstream's
/// connection is closed rather than held for nobody, both while the upstream has not
/// answered yet and while it streams a body slowly. (`upstream_response` is 10 minutes:
/// only the client's leaving can close it within the test's bound.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_request_releases_the_upstream_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let (closed_tx, mut closed) = tokio::sync::mpsc::unbounded_channel::<String>();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                let Some(read) = read_request_head(&mut stream).await else {
                    return;
                };
                let mut chunk = [0u8; 4096];
                let path = String::from_utf8_lossy(&read)
                    .split(' ')
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                if path == "/slow-body" {
                    let head =
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n";
                    if stream.write_all(head).await.is_err() {
                        return;
                    }
                }
                // Never answer (more): wait for abproxy to close the connection.
                loop {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                let _ = closed_tx.send(path);
            });
        }
    });
    let proxy = TestProxy::start(&config(
        &format!("http://{upstream}"),
        "timeouts:\n  upstream_response: 10m\n",
    ))
    .await;
    for path in ["/no-answer", "/slow-body"] {
        let mut client = TcpStream::connect(proxy.addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
        client.write_all(request.as_bytes()).await.unwrap();
        if path == "/slow-body" {
            // The head and the first chunk arrive; the rest never does.
            let mut got = Vec::new();
            let mut chunk = [0u8; 4096];
            while !got.windows(5).any(|w| w == b"first") {
                let n = tokio::time::timeout(Duration::from_secs(30), client.read(&mut chunk))
                    .await
                    .expect("the first chunk within 30s")
                    .unwrap();
                assert!(n > 0, "closed before the first chunk");
                got.extend_from_slice(&chunk[..n]);
            }
        } else {
            // Let the request reach the upstream before leaving.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        drop(client);
        let seen = tokio::time::timeout(Duration::from_secs(30), closed.recv())
            .await
            .unwrap_or_else(|_| panic!("{path}: the upstream connection still open after 30s"));
        assert_eq!(seen.as_deref(), Some(path));
    }
    proxy.stop().await;
    task.abort();
}

/// On one keep-alive connection (the plain path verifies a visitor's assignment cookie
/// once per connection), every request's cookie is still checked: after a valid one, a
/// forged one and the valid one under another device id are rejected and counted, and
/// the valid one is accepted again without a new cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_on_a_connection_has_its_own_cookie_checked() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = TestProxy::start(&moon_mars_config(&moon, &mars, 50, 50)).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let mut get = async |cookie: &str| {
        let request = format!("GET / HTTP/1.1\r\nHost: a\r\nCookie: {cookie}\r\n\r\n");
        client.write_all(request.as_bytes()).await.unwrap();
        read_response(&mut client).await.0
    };
    // The first visit is assigned and gets its signed cookie.
    let first = get("device_id=memo-1").await;
    let signed = first
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: ab_assignments="))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no assignment cookie: {first}"))
        .to_string();
    let valid = format!("device_id=memo-1; ab_assignments={signed}");
    let mine = if signed.contains(":Moon:") {
        ":Moon:"
    } else {
        ":Mars:"
    };
    let forged = valid.replace(mine, if mine == ":Moon:" { ":Mars:" } else { ":Moon:" });
    let foreign = format!("device_id=memo-2; ab_assignments={signed}");
    let rejected = |m: &std::collections::HashMap<String, f64>| m[r#"abproxy_assignment_cookie_rejected_total{reason="bad_signature"}"#];
    for (cookie, rejected_after, new_cookie) in [
        (&valid, 0.0, false),
        (&forged, 1.0, true),
        (&valid, 1.0, false),
        (&foreign, 2.0, true),
        (&valid, 2.0, false),
    ] {
        let head = get(cookie).await.to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{cookie}: {head}");
        assert_eq!(
            head.contains("set-cookie: ab_assignments="),
            new_cookie,
            "{cookie}: {head}"
        );
        assert_eq!(rejected(&proxy.metrics().await), rejected_after, "{cookie}");
    }
    proxy.stop().await;
}
