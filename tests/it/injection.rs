//! Header injection: no CR, LF or NUL that a client sends (raw, percent-encoded, in a
//! cookie, a query override, a Host) ever reaches a header abproxy writes, to the
//! upstream or to the client. Raw bytes on real sockets, so nothing is normalised by a
//! client library first.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// Send raw bytes; return the whole response (the request says `Connection: close`).
async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut out),
    )
    .await
    .expect("response within 10s")
    .unwrap();
    out
}

/// The response head split into fields; panics unless every line is a well-formed
/// `name: value` with no CR, LF or NUL inside (what an injection would break).
fn head_fields(response: &[u8]) -> (u16, Vec<(String, Vec<u8>)>) {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    // With its last CRLF, so every line must end in CRLF.
    let head = &response[..end + 2];
    assert!(!head.contains(&0), "NUL in the response head");
    let mut lines = head[..head.len() - 1].split(|&b| b == b'\n');
    let status_line = lines.next().unwrap();
    let status = String::from_utf8_lossy(&status_line[9..12])
        .parse()
        .unwrap();
    let fields = lines
        .map(|line| {
            let line = line.strip_suffix(b"\r").expect("every line ends in CRLF");
            assert!(!line.contains(&b'\r'), "bare CR in {line:?}");
            let colon = line.iter().position(|&b| b == b':').expect("name: value");
            let name = String::from_utf8(line[..colon].to_vec()).unwrap();
            assert!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()),
                "a field name that is not a token: {name:?}"
            );
            (
                name.to_ascii_lowercase(),
                line[colon + 1..].trim_ascii().to_vec(),
            )
        })
        .collect();
    (status, fields)
}

fn injected(fields: &[(String, Vec<u8>)]) -> bool {
    fields.iter().any(|(name, value)| {
        name == "evil" || value.windows(4).any(|w| w.eq_ignore_ascii_case(b"evil"))
    })
}

fn config(app: &MockUpstream) -> String {
    format!(
        "upstreams:\n  app: {}\ndefault_upstream: app\nqa_override:\n  query_param: ab_force\n  header: X-AB-Force\nexperiments:\n  moon_mars:\n    state: active\n    variants:\n      Moon: {{ weight: 1 }}\n      Mars: {{ weight: 1 }}\n    fallback: Moon\n",
        app.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_bytes_can_inject_a_header() {
    let app = MockUpstream::start("app").await;
    let proxy = TestProxy::start(&config(&app)).await;
    let forwarded: &[&[u8]] = &[
        // Percent-encoded CR LF and NUL in the QA override (decoded by abproxy).
        b"GET /?ab_force=moon_mars%3DMars%0D%0ASet-Cookie:%20evil%3D1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET /?ab_force=moon_mars%3DMa%00rs%0Aevil:%201 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        // obs-text in the override header, a cookie and X-Forwarded-For (in the Host: refused
        // below, an invalid Host is a 400).
        b"GET / HTTP/1.1\r\nHost: a\r\nX-AB-Force: moon_mars=Mars\xc3\xa9vil\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nCookie: device_id=\xc3\xa9vil%0D%0Aevil:1; ab_force=moon_mars=Mars%0D%0Aevil\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\xff, evil\r\nConnection: close\r\n\r\n",
        // Percent-encoded CR LF in the path: forwarded still encoded.
        b"GET /a%0D%0Aevil:%201 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    ];
    for (i, request) in forwarded.iter().enumerate() {
        let before = app.count();
        let response = exchange(proxy.addr, request).await;
        let (status, fields) = head_fields(&response);
        assert_eq!(status, 200, "request {i}");
        assert!(
            !fields
                .iter()
                .any(|(n, v)| n == "evil" || (n == "set-cookie" && v.starts_with(b"evil"))),
            "request {i}: a field was injected into the response: {fields:?}"
        );
        assert_eq!(app.count(), before + 1, "request {i} was forwarded once");
        let seen = app.requests().pop().unwrap();
        for (name, value) in &seen.headers {
            assert!(
                !value
                    .as_bytes()
                    .iter()
                    .any(|&b| b == b'\r' || b == b'\n' || b == 0),
                "request {i}: {name} carries CR, LF or NUL upstream"
            );
            assert_ne!(name.as_str(), "evil", "request {i}: injected upstream");
        }
        let device = seen.headers["x-device-id"].to_str().unwrap();
        assert!(
            device
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "request {i}: X-Device-Id {device:?}"
        );
        assert!(
            !seen.headers["x-ab-assignments"]
                .as_bytes()
                .windows(4)
                .any(|w| w.eq_ignore_ascii_case(b"evil")),
            "request {i}: the assignments header carries client bytes"
        );
        assert!(!injected(
            &fields
                .iter()
                .filter(|(n, _)| n == "set-cookie")
                .cloned()
                .collect::<Vec<_>>()
        ));
    }
    // A forced-variant value with junk is not remembered: the override cookie is cleared.
    let response = exchange(proxy.addr, forwarded[0]).await;
    let (_, fields) = head_fields(&response);
    let override_cookie: Vec<_> = fields
        .iter()
        .filter(|(n, v)| n == "set-cookie" && v.starts_with(b"ab_force="))
        .collect();
    assert_eq!(override_cookie.len(), 1);
    assert!(
        override_cookie[0].1.starts_with(b"ab_force=;"),
        "{:?}",
        String::from_utf8_lossy(&override_cookie[0].1)
    );

    // Raw CR, NUL or a folded line in a request header never get past hyper's parser;
    // obs-text in Host is not a valid host (RFC 9112 §3.2: 400).
    let before = app.count();
    for request in [
        &b"GET / HTTP/1.1\r\nHost: \xc3\xa9vil.example\r\nConnection: close\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\revil: 1\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\x00evil\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n evil: folded\r\nConnection: close\r\n\r\n",
    ] {
        let response = exchange(proxy.addr, request).await;
        let (status, _) = head_fields(&response);
        assert_eq!(status, 400, "{:?}", String::from_utf8_lossy(request));
    }
    assert_eq!(app.count(), before, "none of them was forwarded");
    let (status, _, _) = get(&proxy.url("/"), &[]).await;
    assert_eq!(status, 200, "the proxy still serves");
    proxy.stop().await;
}
