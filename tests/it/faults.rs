//! Upstreams that misbehave: refused, closed before answering, garbage, cut mid-body,
//! stalled. The client gets 502/504 or a cut stream, each failure is counted per
//! upstream and kind, and 10 000 of them leak no file descriptor or memory.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

use crate::support::binary::ProxyProcess;
use crate::support::*;

/// A TCP server that misbehaves by request path: `/garbage` answers with bytes that are
/// not HTTP, `/close` closes without answering, `/cut` promises 1000 body bytes and
/// sends 100, `/stall` never answers.
async fn faulty_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let Some(head) = read_request_head(&mut stream).await else {
                    return;
                };
                let head = String::from_utf8_lossy(&head);
                let path = head.split(' ').nth(1).unwrap_or("");
                match path {
                    "/garbage" => {
                        let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
                    }
                    "/cut" => {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                            .await;
                        let _ = stream.write_all(&[b'x'; 100]).await;
                    }
                    "/stall" => {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    _ => {} // "/close": drop the connection unanswered
                }
            });
        }
    });
    addr
}

/// A port nothing listens on, kept reserved so no other test can take it.
fn refused_addr() -> SocketAddr {
    // Bound but never listening: a connection is refused (RST), and the port stays taken
    // for the rest of the test binary's run. (A port bound and closed again is free for
    // any other test's server to take, and then "refused" requests reach that server:
    // seen as a 404 from another test's upstream on a loaded machine.)
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    std::mem::forget(socket);
    addr
}

/// `app` for `/ok`, `bad` (the faulty one) for `/garbage`, `/close`, `/cut`, `/stall`,
/// and `gone` (refused) for `/gone`.
/// `upstream_response`: how long `/stall` takes to become a 504. Only the test that
/// stalls needs it short; it must still be long enough that, on a busy machine, the
/// other faults are answered before it.
fn faults_config(app: &str, bad: SocketAddr, gone: SocketAddr, upstream_response: &str) -> String {
    let route = |key: &str, upstream: &str, prefix: &str| {
        format!(
            "  {key}:\n    state: active\n    variants:\n      A: {{ weight: 1, upstream: {upstream} }}\n    fallback: A\n    match:\n      path_prefix: {prefix}\n"
        )
    };
    format!(
        "upstreams:\n  app: {app}\n  bad: http://{bad}\n  gone: http://{gone}\ndefault_upstream: app\ntimeouts:\n  upstream_response: {upstream_response}\nexperiments:\n{}{}{}{}{}",
        route("garbage", "bad", "/garbage"),
        route("close", "bad", "/close"),
        route("cut", "bad", "/cut"),
        route("stall", "bad", "/stall"),
        route("gone", "gone", "/gone"),
    )
}

fn errors(m: &std::collections::HashMap<String, f64>, upstream: &str, kind: &str) -> f64 {
    m[&format!(r#"abproxy_upstream_errors_total{{kind="{kind}",upstream="{upstream}"}}"#)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_upstream_fault_gets_its_answer_and_is_counted_by_kind() {
    let app = MockUpstream::start("app").await;
    let bad = faulty_upstream().await;
    let proxy = TestProxy::start(&faults_config(&app.url(), bad, refused_addr(), "3s")).await;
    for (path, status, message) in [
        (
            "/garbage",
            502,
            "abproxy: upstream bad sent something that is not an HTTP/1.1 response\n",
        ),
        (
            "/close",
            502,
            "abproxy: upstream bad failed before sending a response\n",
        ),
        (
            "/stall",
            504,
            "abproxy: upstream bad did not answer within 3000ms\n",
        ),
        (
            "/gone",
            502,
            "abproxy: upstream gone refused the connection or could not be reached\n",
        ),
    ] {
        let (got, _, body) = get(&proxy.url(path), &[]).await;
        assert_eq!(
            (got.as_u16(), String::from_utf8_lossy(&body).as_ref()),
            (status, message),
            "{path}"
        );
        let (ok, _, _) = get(&proxy.url("/ok"), &[]).await;
        assert_eq!(ok, 200, "the other upstream is served after {path}");
    }

    // Cut mid-body: the client gets the head, then its body fails; it never sees a
    // short body as a whole one.
    let response = client()
        .request(request(&proxy.url("/cut"), &[]))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-length"], "1000");
    assert!(
        response.into_body().collect().await.is_err(),
        "a cut body reaches the client as an error"
    );

    let m = proxy.metrics().await;
    assert_eq!(errors(&m, "bad", "protocol"), 1.0);
    assert_eq!(errors(&m, "bad", "reset"), 1.0);
    assert_eq!(errors(&m, "bad", "timeout"), 1.0);
    assert_eq!(errors(&m, "bad", "body"), 1.0);
    assert_eq!(errors(&m, "bad", "refused"), 0.0);
    assert_eq!(errors(&m, "gone", "refused"), 1.0);
    assert_eq!(errors(&m, "app", "body"), 0.0);
    assert_eq!(
        m[r#"abproxy_upstream_responses_total{code_class="error",upstream="bad"}"#], 3.0,
        "garbage, close and stall got no response; the cut one did"
    );
    proxy.stop().await;
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Send `n` requests cycling through the failing paths, 16 at a time.
async fn fail_many(addr: SocketAddr, n: usize) {
    let client = client();
    let paths = ["/garbage", "/close", "/cut", "/gone"];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        if tasks.len() >= 16 {
            tasks.join_next().await.unwrap().unwrap();
        }
        let client = client.clone();
        let url = format!("http://{addr}{}", paths[i % paths.len()]);
        tasks.spawn(async move {
            match client.request(request(&url, &[])).await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.into_body().collect().await;
                    assert!(
                        status == 502 || (status == 200 && body.is_err()),
                        "{url}: {status}"
                    );
                }
                Err(e) => panic!("{url}: the proxy itself failed: {e}"),
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// The real binary, 10 000 failures after a warm-up: open file descriptors come back
/// to where they were and resident memory does not grow with the failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_upstream_failures_leak_nothing() {
    let app = MockUpstream::start("app").await;
    let bad = faulty_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("abproxy.yaml");
    std::fs::write(
        &config,
        with_data_dir(
            &format!(
                "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n{}",
                // No request here stalls: the timeout is not what is tested.
                faults_config(&app.url(), bad, refused_addr(), "30s")
            ),
            dir.path(),
        ),
    )
    .unwrap();
    let proxy = ProxyProcess::serve(&config);
    let pid = proxy.child.id();

    fail_many(proxy.addr, 2_000).await;
    let settle = || tokio::time::sleep(Duration::from_millis(500));
    settle().await;
    let (fds_before, rss_before) = (open_fds(pid), rss_kib(pid));
    fail_many(proxy.addr, 10_000).await;
    settle().await;
    let (fds_after, rss_after) = (open_fds(pid), rss_kib(pid));
    eprintln!(
        "after warm-up: {fds_before} fds, {rss_before} KiB; after 10 000 failures: {fds_after} fds, {rss_after} KiB"
    );
    assert!(
        fds_after <= fds_before + 2,
        "file descriptors leaked: {fds_before} -> {fds_after}"
    );
    assert!(
        rss_after <= rss_before + 4 * 1024,
        "resident memory grew with failures: {rss_before} KiB -> {rss_after} KiB"
    );
    let (status, _, body) = get(&format!("http://{}/metrics", proxy.admin), &[]).await;
    assert_eq!(status, 200);
    let m = parse_metrics(&String::from_utf8_lossy(&body));
    let counted: f64 = ["protocol", "reset", "body"]
        .iter()
        .map(|k| errors(&m, "bad", k))
        .sum::<f64>()
        + errors(&m, "gone", "refused");
    assert_eq!(counted, 12_000.0, "every failure counted once");
    let (ok, _, _) = get(&format!("http://{}/ok", proxy.addr), &[]).await;
    assert_eq!(ok, 200);
}

/// Moon/Mars where everyone is assigned Mars, whose upstream refuses connections.
fn mars_down_config(moon: &MockUpstream, policy: &str) -> String {
    format!(
        "upstreams:\n  moon: {}\n  mars: http://{}\nexperiments:\n  moon_mars:\n    state: active\n    variants:\n      Moon: {{ weight: 0, upstream: moon }}\n      Mars: {{ weight: 1, upstream: mars }}\n    fallback: Moon\n{policy}",
        moon.url(),
        refused_addr()
    )
}

/// `upstream_down: fallback`: a bodiless request of a variant whose upstream is down is
/// served by the fallback's upstream and counted apart; a request with a body is not
/// sent twice; the default policy fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_fallback_serves_the_fallback_and_counts_it_apart() {
    let moon = MockUpstream::start("moon").await;
    let proxy = TestProxy::start(&mars_down_config(&moon, "    upstream_down: fallback\n")).await;
    let (status, headers, body) = get(&proxy.url("/page"), &[]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        headers["x-upstream"], "moon",
        "served by the fallback's upstream"
    );
    let jar = cookies_after(&headers, "");
    let seen = &moon.requests()[0];
    assert_eq!(seen.uri.path(), "/page");
    assert_eq!(
        seen.headers["x-ab-assignments"], "moon_mars=Mars",
        "the app is told the device's own assignment"
    );
    let (status, headers, _) = get(&proxy.url("/again"), &[("cookie", &jar)]).await;
    assert_eq!(
        (status.as_u16(), headers["x-upstream"].to_str().unwrap()),
        (200, "moon")
    );

    let (status, _, body) = send_text(
        http::Request::post(proxy.url("/form")).header("cookie", jar.clone()),
        "a=1",
    )
    .await;
    assert_eq!(status, 502, "a request with a body is not replayed: {body}");
    assert_eq!(moon.count(), 2);

    let m = proxy.metrics().await;
    assert_eq!(
        m[r#"abproxy_fallback_served_total{experiment="moon_mars",variant="Mars"}"#],
        2.0
    );
    assert_eq!(
        m[r#"abproxy_fallback_served_total{experiment="moon_mars",variant="Moon"}"#],
        0.0
    );
    assert_eq!(
        m[r#"abproxy_upstream_errors_total{kind="refused",upstream="mars"}"#],
        3.0
    );
    assert_eq!(
        m[r#"abproxy_exposures_total{experiment="moon_mars",variant="Mars"}"#], 3.0,
        "exposures stay with the assigned variant; the fallback count says how many were not"
    );
    proxy.stop().await;

    // The default: fail, never a silent switch of variant.
    let moon = MockUpstream::start("moon").await;
    let proxy = TestProxy::start(&mars_down_config(&moon, "")).await;
    let (status, _, _) = get(&proxy.url("/page"), &[]).await;
    assert_eq!(status, 502);
    assert_eq!(moon.count(), 0);
    assert!(!proxy
        .metrics()
        .await
        .keys()
        .any(|k| k.starts_with("abproxy_fallback_served_total")));
    proxy.stop().await;
}
