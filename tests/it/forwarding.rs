//! What the upstream receives and what the client gets back: a transparency checklist.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;

use crate::support::*;

fn single_upstream_config(app: &MockUpstream, extra: &str) -> String {
    format!(
        "upstreams:\n  app: {}\ndefault_upstream: app\n{extra}experiments:\n  moon_mars:\n    state: active\n    variants:\n      Moon: {{ weight: 1 }}\n      Mars: {{ weight: 1 }}\n    fallback: Moon\n",
        app.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_headers_added_replaced_and_stripped() {
    let app = MockUpstream::start("app").await;
    let proxy = TestProxy::start(&single_upstream_config(&app, "")).await;
    let (status, headers, body) = raw_http(
        proxy.addr,
        "POST /path/x?q=1&r=%20 HTTP/1.1\r\n\
         Host: shop.example:8443\r\n\
         Transfer-Encoding: chunked\r\n\
         Upgrade: websocket\r\n\
         X-Real-IP: 6.6.6.6\r\n\
         Cookie: theme=dark\r\n\
         Cookie: device_id=dev-42; abproxy_admin=123.adminsession\r\n\
         Connection: close, X-Hop-Named\r\n\
         X-Hop-Named: 1\r\n\
         Keep-Alive: timeout=5\r\n\
         Proxy-Connection: keep-alive\r\n\
         TE: trailers\r\n\
         X-Device-Id: spoofed\r\n\
         X-AB-Assignments: moon_mars=Spoofed\r\n\
         X-Forwarded-For: 203.0.113.9\r\n\
         X-Forwarded-Proto: https\r\n\
         X-End-To-End: kept\r\n\
         \r\n\
         5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = &app.requests()[0];
    let h = &seen.headers;
    assert_eq!(seen.uri.path(), "/path/x");
    assert_eq!(
        seen.uri.query(),
        Some("q=1&r=%20"),
        "path and query pass unchanged"
    );
    // The client's chunked framing is its hop's; hyper re-frames the streamed body for
    // the upstream hop (chunked again, as its length is unknown), and it arrives intact.
    assert_eq!(&seen.body[..], b"hello");
    for hop in [
        "x-hop-named",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "x-real-ip",
    ] {
        assert!(
            !h.contains_key(hop),
            "{hop} must not reach the upstream: {h:?}"
        );
    }
    assert_eq!(
        h["te"], "trailers",
        "TE is hop-by-hop, but a client that takes trailers gets them through abproxy"
    );
    assert_eq!(
        h["x-device-id"], "dev-42",
        "id from the second Cookie field"
    );
    let expected_variant =
        if abproxy::experiments::assign::WeightTable::new([("Moon", 1), ("Mars", 1)])
            .unwrap()
            .assign(b"dev-42", "moon_mars")
            == 0
        {
            "Moon"
        } else {
            "Mars"
        };
    assert_eq!(
        h["x-ab-assignments"],
        format!("moon_mars={expected_variant}").as_str()
    );
    assert_eq!(
        h.get_all("x-ab-assignments").iter().count(),
        1,
        "the client's value is replaced"
    );
    assert_eq!(
        h["x-forwarded-for"], "203.0.113.9, 127.0.0.1",
        "appended, not replaced"
    );
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "shop.example:8443");
    assert_eq!(
        h["host"], "shop.example:8443",
        "Host policy `client`: the client's Host"
    );
    assert_eq!(h["x-end-to-end"], "kept");
    let cookies: Vec<&str> = h
        .get_all("cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        cookies,
        ["theme=dark; device_id=dev-42"],
        "cookies pass in one field, but never the admin session"
    );

    // The upstream's hop-by-hop response fields do not reach the client.
    assert!(
        header_values(&headers, "x-upstream-hop").is_empty(),
        "{headers:?}"
    );
    assert!(
        header_values(&headers, "keep-alive").is_empty(),
        "{headers:?}"
    );
    assert_eq!(header_values(&headers, "x-upstream"), ["app"]);
    let set = header_values(&headers, "set-cookie");
    assert!(
        set.len() == 1 && set[0].starts_with("ab_assignments=v1.moon_mars:"),
        "a known id is kept; its first assignment is pinned: {set:?}"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_policy_upstream_sends_the_upstream_authority() {
    let app = MockUpstream::start("app").await;
    let proxy = TestProxy::start(&single_upstream_config(&app, "host_header: upstream\n")).await;
    raw_http(
        proxy.addr,
        "GET / HTTP/1.1\r\nHost: public.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    let h = &app.requests()[0].headers;
    assert_eq!(h["host"], app.addr.to_string().as_str());
    assert_eq!(h["x-forwarded-host"], "public.example");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_without_host_and_absolute_form_uris() {
    let app = MockUpstream::start("app").await;
    let proxy = TestProxy::start(&single_upstream_config(&app, "")).await;

    let (status, _, body) = raw_http(
        proxy.addr,
        "GET /old HTTP/1.0\r\nX-Forwarded-Host: spoofed.example\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = &app.requests()[0];
    assert_eq!(
        seen.version,
        http::Version::HTTP_11,
        "upstream requests are HTTP/1.1"
    );
    assert_eq!(
        seen.headers["host"],
        app.addr.to_string().as_str(),
        "no client Host: the upstream's authority"
    );
    assert!(
        !seen.headers.contains_key("x-forwarded-host"),
        "a client's X-Forwarded-Host is not passed on"
    );

    let (status, _, _) = raw_http(
        proxy.addr,
        "GET http://user:secret@absolute.example/abs?x=1 HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    let seen = &app.requests()[1];
    assert_eq!(seen.uri.path(), "/abs");
    assert_eq!(seen.uri.query(), Some("x=1"));
    assert_eq!(
        seen.headers["host"], "absolute.example",
        "the absolute URI's authority is the Host"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_set_cookie_is_kept_and_ours_appended() {
    let app = MockUpstream::start("app").await;
    let proxy = TestProxy::start(&single_upstream_config(&app, "")).await;
    let (status, headers, _) = raw_http(
        proxy.addr,
        "GET /set-cookie HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    let cookies = header_values(&headers, "set-cookie");
    assert_eq!(cookies.len(), 4, "{cookies:?}");
    assert!(
        cookies[3].starts_with("ab_assignments=v1.moon_mars:"),
        "{cookies:?}"
    );
    assert_eq!(cookies[0], "session=s1; Path=/");
    assert_eq!(
        header_values(&headers, "cache-control"),
        ["private"],
        "a response with our cookies is never shared"
    );
    assert_eq!(cookies[1], "theme=dark; Path=/");
    let ours = cookies[2];
    let id = ours
        .strip_prefix("device_id=")
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "a UUIDv4: {ours}");
    assert_eq!(
        ours,
        format!("device_id={id}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax")
    );
    assert_eq!(
        app.requests()[0].headers["x-device-id"],
        id,
        "the upstream sees the new id at once"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_cookie_is_replaced_and_cookie_settings_apply() {
    let app = MockUpstream::start("app").await;
    let proxy = TestProxy::start(&single_upstream_config(
        &app,
        "cookie:\n  name: vid\n  max_age: 1d\n  domain: Example.COM\n",
    ))
    .await;
    let (_, headers, _) = raw_http(
        proxy.addr,
        "GET / HTTP/1.1\r\nHost: x\r\nCookie: vid=bad%0D%0Avalue; device_id=ignored\r\nConnection: close\r\n\r\n",
    )
    .await;
    let cookie = header_values(&headers, "set-cookie")[0].to_string();
    let id = cookie
        .strip_prefix("vid=")
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
    assert_eq!(
        cookie,
        format!("vid={id}; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax; Domain=example.com")
    );
    proxy.stop().await;
}

/// Bodies stream both ways: the client gets the upstream's first chunk while the
/// upstream is still waiting to send the second, and the upstream answers after the
/// client's first chunk while the client still holds the rest. A proxy that buffered
/// whole bodies would deadlock here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways() {
    // An upstream whose answer echoes the first request chunk at once, then streams the
    // rest of the request body back as it arrives.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service =
            hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
                tokio::spawn(async move {
                    let mut body = req.into_body();
                    while let Some(Ok(frame)) = body.frame().await {
                        if let Ok(data) = frame.into_data() {
                            if tx.send(data).await.is_err() {
                                break;
                            }
                        }
                    }
                });
                Ok::<_, hyper::Error>(http::Response::new(ChannelBody(rx)))
            });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .await;
    });
    let proxy = TestProxy::start(&format!(
        "upstreams:\n  app: http://{upstream}\ndefault_upstream: app\n"
    ))
    .await;

    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<ChannelBody>();
    let request = http::Request::post(proxy.url("/stream"))
        .body(ChannelBody(rx))
        .unwrap();
    tx.send(Bytes::from_static(b"first chunk")).await.unwrap();
    let within = Duration::from_secs(10);
    let response = tokio::time::timeout(within, client.request(request))
        .await
        .expect("response head while the request body is open")
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = tokio::time::timeout(within, body.frame())
        .await
        .expect("first chunk streamed")
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "first chunk");
    tx.send(Bytes::from_static(b"second chunk")).await.unwrap();
    let second = tokio::time::timeout(within, body.frame())
        .await
        .expect("second chunk streamed")
        .unwrap()
        .unwrap();
    assert_eq!(second.into_data().unwrap(), "second chunk");
    drop(tx);
    let rest = tokio::time::timeout(within, body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert!(rest.is_empty());
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_arrive_intact() {
    let app = MockUpstream::start("app").await;
    let proxy = TestProxy::start(&single_upstream_config(&app, "")).await;
    let payload: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let request = http::Request::post(proxy.url("/echo"))
        .body(http_body_util::Full::new(Bytes::from(payload.clone())))
        .unwrap();
    let (status, _, body) = send(&client(), request).await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), payload.len());
    assert!(body == payload, "echoed body differs");
    let seen = &app.requests()[0];
    assert_eq!(seen.method, http::Method::POST);
    assert!(
        seen.body == payload,
        "the upstream received the body intact"
    );
    proxy.stop().await;
}

/// A variant whose upstream is down gets 502 with a short reason; the other variant
/// keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_502_and_the_other_variant_keeps_serving() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = TestProxy::start(&moon_mars_config(&moon, &mars, 50, 50)).await;
    mars.stop();
    eventually(
        Duration::from_secs(5),
        "mars refuses connections",
        || async { tokio::net::TcpStream::connect(mars.addr).await.is_err() },
    )
    .await;
    let client = client();
    let (mut ok, mut bad) = (0, 0);
    for i in 0..60 {
        let cookie = format!("device_id=down-{i}");
        let (status, headers, body) =
            send(&client, request(&proxy.url("/"), &[("cookie", &cookie)])).await;
        match status.as_u16() {
            200 => {
                assert_eq!(headers["x-upstream"], "moon");
                ok += 1;
            }
            502 => {
                assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
                let text = String::from_utf8_lossy(&body);
                assert!(text.starts_with("abproxy: upstream mars"), "{text}");
                assert!(text.len() < 200);
                bad += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(ok > 10 && bad > 10, "ok {ok}, 502 {bad}");
    let m = proxy.metrics().await;
    assert_eq!(
        m[r#"abproxy_upstream_responses_total{code_class="error",upstream="mars"}"#],
        bad as f64
    );
    assert_eq!(
        m[r#"abproxy_upstream_responses_total{code_class="2xx",upstream="moon"}"#],
        ok as f64
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_is_504_and_others_go_on() {
    let app = MockUpstream::start("app").await;
    let proxy = TestProxy::start(&single_upstream_config(
        &app,
        "timeouts:\n  upstream_response: 300ms\n",
    ))
    .await;
    let slow_url = proxy.url("/slow?ms=3000");
    let slow = tokio::spawn(async move { get(&slow_url, &[]).await });
    let (status, _, _) = get(&proxy.url("/fast"), &[]).await;
    assert_eq!(status, 200, "a fast request is not held up by a slow one");
    let (status, headers, body) = slow.await.unwrap();
    assert_eq!(status, 504);
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(
        String::from_utf8_lossy(&body),
        "abproxy: upstream app did not answer within 300ms\n"
    );
    assert!(
        set_device_id(&headers).is_some(),
        "a new device gets its cookie even on an error"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_prefix_is_never_forwarded_and_unrouted_requests_are_404() {
    let app = MockUpstream::start("app").await;
    let proxy = TestProxy::start(&single_upstream_config(&app, "")).await;
    let (status, _, body) = get(&proxy.url("/_ab/unknown"), &[]).await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).starts_with("abproxy:"));
    assert_eq!(app.count(), 0);
    proxy.stop().await;

    // No default upstream and only a path-matched routing experiment.
    let proxy = TestProxy::start(&format!(
        "upstreams:\n  app: {}\nexperiments:\n  shop:\n    state: active\n    match: {{ path_prefix: /shop }}\n    variants:\n      A: {{ weight: 1, upstream: app }}\n    fallback: A\n",
        app.url()
    ))
    .await;
    assert_eq!(get(&proxy.url("/shop/x"), &[]).await.0, 200);
    let (status, _, body) = get(&proxy.url("/elsewhere"), &[]).await;
    assert_eq!(status, 404);
    assert_eq!(
        String::from_utf8_lossy(&body),
        "abproxy: no upstream is configured for this request\n"
    );
    proxy.stop().await;
}

/// The pool is shared: many sequential requests reuse a handful of upstream connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused() {
    let app = MockUpstream::start("app").await;
    let proxy = TestProxy::start(&single_upstream_config(&app, "")).await;
    let client = client();
    for _ in 0..200 {
        assert_eq!(send(&client, request(&proxy.url("/"), &[])).await.0, 200);
    }
    let connections = app.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        connections <= 2,
        "200 sequential requests opened {connections} upstream connections"
    );
    proxy.stop().await;
}

/// With two workers, the two client connections are served by different threads, each
/// keeping its own idle upstream connections: one each for 200 alternating requests
/// (one pool shared by both would have needed a single connection), and no more than
/// a couple each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_reuses_its_upstream_connections() {
    let app = MockUpstream::start("app").await;
    let proxy = TestProxy::start_with_workers(&single_upstream_config(&app, ""), 2).await;
    // Two clients, one keep-alive connection each, dealt to worker 0 and worker 1.
    let (first, second) = (client(), client());
    for _ in 0..100 {
        for client in [&first, &second] {
            let (status, _, body) = send(client, request(&proxy.url("/"), &[])).await;
            assert_eq!((status.as_u16(), &body[..]), (200, &b"app"[..]));
        }
    }
    let connections = app.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (2..=4).contains(&connections),
        "200 requests on two workers opened {connections} upstream connections"
    );
    proxy.stop().await;
}

/// An upstream that closes each keep-alive connection after one answer, as an upstream
/// does when its idle timeout passes: the proxy notices the close of the connection it
/// holds idle and opens a new one, so no visitor gets a 502 for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_the_upstream_closed_is_not_used_again() {
    let upstream = raw_upstream("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let proxy = TestProxy::start(&format!(
        "upstreams:\n  app: http://{}\ndefault_upstream: app\n",
        upstream.await
    ))
    .await;
    let client = client();
    for i in 0..10 {
        let (status, _, body) = send(&client, request(&proxy.url("/"), &[])).await;
        assert_eq!(
            (status.as_u16(), &body[..]),
            (200, &b"ok"[..]),
            "request {i}"
        );
        // The close reaches the proxy while the connection is idle, as it does in use.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.stop().await;
}

/// An upstream answering with raw bytes, for framing a well-behaved server never sends.
async fn raw_upstream(response: &'static str) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    addr
}

/// RFC 9112 §6.3: with both Transfer-Encoding and Content-Length, the coding frames the
/// body; the proxy must not pass on the stale length (the client would get a cut body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_encoding_wins_over_a_stale_content_length() {
    let upstream = raw_upstream(
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\na\r\n0123456789\r\n0\r\n\r\n",
    )
    .await;
    let proxy = TestProxy::start(&format!(
        "upstreams:\n  app: http://{upstream}\ndefault_upstream: app\n"
    ))
    .await;
    let (status, headers, body) = raw_http(
        proxy.addr,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        header_values(&headers, "content-length")
            .iter()
            .all(|v| *v != "3"),
        "{headers:?}"
    );
    let decoded = if header_values(&headers, "transfer-encoding") == ["chunked"] {
        body.split("\r\n").nth(1).unwrap().to_string()
    } else {
        body
    };
    assert_eq!(decoded, "0123456789");
    proxy.stop().await;
}

/// A coding other than chunked cannot be passed on once Transfer-Encoding is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_transfer_coding_is_502() {
    let upstream = raw_upstream(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    let proxy = TestProxy::start(&format!(
        "upstreams:\n  app: http://{upstream}\ndefault_upstream: app\n"
    ))
    .await;
    let (status, _, body) = get(&proxy.url("/"), &[]).await;
    assert_eq!(status, 502);
    assert_eq!(
        String::from_utf8_lossy(&body),
        "abproxy: upstream app used a transfer coding other than chunked\n"
    );
    proxy.stop().await;
}

/// Pipelined requests (several sent before any answer) are answered, in order, on the
/// same connection — even when an earlier one is slower upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = TestProxy::start(&moon_mars_config(&moon, &mars, 1, 0)).await;
    let requests = "GET /slow?ms=300 HTTP/1.1\r\nHost: a\r\n\r\n\
                    GET /status/202 HTTP/1.1\r\nHost: a\r\n\r\n\
                    GET /status/203 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    // All three answered, then the connection closed (the last asked for it).
    let text = raw_exchange(proxy.addr, requests).await;
    // Bodies have no line end of their own: the next status line follows at once.
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &text[at + 9..at + 12])
        .collect();
    assert_eq!(statuses, ["200", "202", "203"], "{text}");
    assert_eq!(moon.count(), 3, "one connection carried all three upstream");
    proxy.stop().await;
}
