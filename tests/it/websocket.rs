//! WebSockets through the proxy: the handshake is assigned and cookied like any request
//! and goes to the variant's upstream; the tunnel carries frames both ways and survives
//! a config reload.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// A WebSocket echo server (RFC 6455, text frames under 126 bytes): answers the
/// handshake, then returns each text frame as `<name>: <text>`. It records the
/// handshake's head.
async fn echo_server(name: &'static str) -> (SocketAddr, tokio::sync::mpsc::Receiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (heads, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let heads = heads.clone();
            tokio::spawn(async move {
                let head = read_head(&mut stream).await;
                let _ = heads.send(head.clone()).await;
                stream
                    .write_all(
                        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
                    )
                    .await
                    .unwrap();
                while let Some(text) = read_frame(&mut stream).await {
                    let reply = format!("{name}: {text}");
                    write_frame(&mut stream, &reply, None).await;
                }
            });
        }
    });
    (addr, rx)
}

async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// One text frame (masked or not); `None` at close or EOF.
async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> Option<String> {
    let mut header = [0u8; 2];
    stream.read_exact(&mut header).await.ok()?;
    if header[0] & 0x0f == 0x8 {
        return None;
    }
    let masked = header[1] & 0x80 != 0;
    let len = (header[1] & 0x7f) as usize;
    assert!(len < 126, "short frames only");
    let mut mask = [0u8; 4];
    if masked {
        stream.read_exact(&mut mask).await.ok()?;
    }
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.ok()?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Some(String::from_utf8(payload).unwrap())
}

/// A final text frame; clients mask theirs (RFC 6455 §5.3).
async fn write_frame<S: AsyncWrite + Unpin>(stream: &mut S, text: &str, mask: Option<[u8; 4]>) {
    assert!(text.len() < 126);
    let mut frame = vec![0x81, text.len() as u8];
    match mask {
        Some(mask) => {
            frame[1] |= 0x80;
            frame.extend_from_slice(&mask);
            frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        None => frame.extend_from_slice(text.as_bytes()),
    }
    stream.write_all(&frame).await.unwrap();
}

fn routing_config(moon: SocketAddr, mars: SocketAddr, moon_weight: u32) -> String {
    format!(
        "upstreams:\n  moon: http://{moon}\n  mars: http://{mars}\nexperiments:\n  moon_mars:\n    state: active\n    variants:\n      Moon: {{ weight: {moon_weight}, upstream: moon }}\n      Mars: {{ weight: 1, upstream: mars }}\n    fallback: Moon\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_proxy_survives_a_reload() {
    let (moon, mut moon_heads) = echo_server("moon").await;
    let (mars, _mars_heads) = echo_server("mars").await;
    // Everyone is Moon until the reload below moves the weights to Mars.
    let proxy = TestProxy::start(
        &routing_config(moon, mars, 1).replace("Mars: { weight: 1,", "Mars: { weight: 0,"),
    )
    .await;

    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(
            b"GET /chat?room=1 HTTP/1.1\r\nHost: shop.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let head = read_head(&mut client).await;
    let lower = head.to_ascii_lowercase();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(lower.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(lower.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(
        lower.contains("\r\nsec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
        "{head}"
    );
    assert!(
        lower.contains("\r\nset-cookie: device_id="),
        "a new visitor is cookied on the handshake: {head}"
    );

    let upstream_head = moon_heads.recv().await.unwrap().to_ascii_lowercase();
    assert!(upstream_head.starts_with("get /chat?room=1 http/1.1\r\n"));
    for field in [
        "\r\nupgrade: websocket\r\n",
        "\r\nconnection: upgrade\r\n",
        "\r\nsec-websocket-key: dghlihnhbxbszsbub25jzq==\r\n",
        "\r\nsec-websocket-version: 13\r\n",
        "\r\nx-ab-assignments: moon_mars=moon\r\n",
        "\r\nx-device-id: ",
    ] {
        assert!(
            upstream_head.contains(field),
            "{field:?} in {upstream_head}"
        );
    }

    write_frame(&mut client, "hello", Some([1, 2, 3, 4])).await;
    assert_eq!(read_frame(&mut client).await.unwrap(), "moon: hello");
    let m = proxy.metrics().await;
    assert_eq!(m["abproxy_tunnels_open"], 1.0);

    // Move everyone to Mars: the open tunnel stays with Moon and keeps working.
    let before = proxy.metrics().await[r#"abproxy_config_reloads_total{result="success"}"#];
    let reloaded = with_data_dir(&routing_config(moon, mars, 0), proxy.dir.path());
    write_by_rename(&proxy.config_path, &reloaded);
    eventually(Duration::from_secs(5), "the reload is applied", || async {
        proxy.metrics().await[r#"abproxy_config_reloads_total{result="success"}"#] > before
    })
    .await;
    for i in 0..3 {
        let text = format!("after reload {i}");
        write_frame(&mut client, &text, Some([9, 8, 7, 6])).await;
        assert_eq!(
            read_frame(&mut client).await.unwrap(),
            format!("moon: {text}")
        );
    }
    // A new visitor's handshake now goes to Mars.
    let mut second = TcpStream::connect(proxy.addr).await.unwrap();
    second
        .write_all(
            b"GET /chat HTTP/1.1\r\nHost: shop.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    assert!(read_head(&mut second).await.starts_with("HTTP/1.1 101"));
    write_frame(&mut second, "hi", Some([5, 5, 5, 5])).await;
    assert_eq!(read_frame(&mut second).await.unwrap(), "mars: hi");

    drop(client);
    drop(second);
    eventually(
        Duration::from_secs(5),
        "closed tunnels are released",
        || async { proxy.metrics().await["abproxy_tunnels_open"] == 0.0 },
    )
    .await;
    proxy.stop().await;
}

/// An upgrade the upstream declines is an ordinary response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_upgrade_is_an_ordinary_response() {
    let app = MockUpstream::start("app").await;
    let proxy = TestProxy::start(&format!(
        "upstreams:\n  app: {}\ndefault_upstream: app\n",
        app.url()
    ))
    .await;
    let (status, _, body) = raw_http(
        proxy.addr,
        "GET /plain HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\n\r\n",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "app"));
    assert_eq!(proxy.metrics().await["abproxy_tunnels_open"], 0.0);
    proxy.stop().await;
}
