//! Shared test support: recording mock upstreams, an in-process proxy on
//! `127.0.0.1:0`, an HTTP client, and polling with a deadline.

pub mod binary;
pub mod webdriver;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use abproxy::proxy::server::Listeners;
use abproxy::state::app::App;

/// What a mock upstream received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: http::Method,
    pub uri: http::Uri,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// An upstream that records every request and answers `200 <name>` with
/// `X-Upstream: <name>`. Special paths: `/slow?ms=N` waits N ms first; `/echo` returns
/// the request body; `/set-cookie` sets two cookies of its own; `/status/NNN` answers
/// with that status.
pub struct MockUpstream {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Recorded>>>,
    pub connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl MockUpstream {
    pub async fn start(name: &str) -> MockUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (rec, conns, name_owned) = (received.clone(), connections.clone(), name.to_string());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                let (rec, name) = (rec.clone(), name_owned.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (rec, name) = (rec.clone(), name.clone());
                        async move { Ok::<_, hyper::Error>(mock_respond(&name, &rec, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        MockUpstream {
            addr,
            received,
            connections,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// Stop listening: later connections are refused.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn mock_respond(
    name: &str,
    rec: &Mutex<Vec<Recorded>>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    rec.lock().unwrap().push(Recorded {
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        version: parts.version,
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    let path = parts.uri.path();
    let mut response = Response::new(Full::new(Bytes::from(name.to_string())));
    if path == "/slow" {
        let ms: u64 = parts
            .uri
            .query()
            .and_then(|q| q.strip_prefix("ms="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    } else if path == "/echo" {
        *response.body_mut() = Full::new(body);
    } else if path == "/set-cookie" {
        response
            .headers_mut()
            .append("set-cookie", "session=s1; Path=/".parse().unwrap());
        response
            .headers_mut()
            .append("set-cookie", "theme=dark; Path=/".parse().unwrap());
    } else if let Some(code) = path.strip_prefix("/status/") {
        *response.status_mut() = StatusCode::from_bytes(code.as_bytes()).unwrap_or(StatusCode::OK);
    }
    let h = response.headers_mut();
    h.insert("x-upstream", name.parse().unwrap());
    // Hop-by-hop fields the proxy must not pass to the client.
    h.insert("connection", "keep-alive, x-upstream-hop".parse().unwrap());
    h.insert("x-upstream-hop", "secret".parse().unwrap());
    h.insert("keep-alive", "timeout=5".parse().unwrap());
    response
}

/// Serve HTTP/1 on `listener`, each request answered by `respond`, until the task is
/// aborted: the test's own webhook receivers, flaky upstreams and fake Prometheus.
pub fn serve_http<F, Fut>(listener: TcpListener, respond: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let respond = respond.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let answer = respond(req);
                    async move { Ok::<_, hyper::Error>(answer.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// The cookies of a device that has been here before but holds no pins yet: its id and
/// an empty assignment cookie signed with the proxy's secret (as the proxy itself sets
/// it on a first visit). Lets a test choose device ids and still have them counted.
pub fn returning_device_cookies(proxy: &TestProxy, id: &str) -> String {
    let secret = std::fs::read(proxy.dir.path().join("data/secret"))
        .expect("the proxy generated its secret");
    let signer = abproxy::experiments::sticky::Signer::new(secret.trim_ascii());
    let (value, _) = signer.encode(id, &abproxy::experiments::sticky::Assignments::default());
    format!("device_id={id}; ab_assignments={value}")
}

/// The two upstreams most tests use.
pub async fn moon_and_mars() -> (MockUpstream, MockUpstream) {
    (
        MockUpstream::start("moon").await,
        MockUpstream::start("mars").await,
    )
}

/// An in-process proxy serving a config file written to its own temporary directory.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestProxy {
    pub async fn start(yaml: &str) -> TestProxy {
        TestProxy::start_with_workers(yaml, 1).await
    }

    /// As [`TestProxy::start`], its connections dealt to `workers` workers (threads
    /// beside the test's runtime, which is worker 0).
    pub async fn start_with_workers(yaml: &str, workers: usize) -> TestProxy {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("abproxy.yaml");
        std::fs::write(&config_path, with_data_dir(yaml, dir.path())).unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        TestProxy::launch(dir, config_path, admin, workers).await
    }

    /// Start with a config already placed at `config_path` inside `dir`.
    pub async fn start_at(dir: tempfile::TempDir, config_path: PathBuf) -> TestProxy {
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        TestProxy::start_at_with_admin(dir, config_path, admin).await
    }

    /// As [`TestProxy::start_at`], with the admin listener given (a known address).
    pub async fn start_at_with_admin(
        dir: tempfile::TempDir,
        config_path: PathBuf,
        admin: TcpListener,
    ) -> TestProxy {
        TestProxy::launch(dir, config_path, admin, 1).await
    }

    async fn launch(
        dir: tempfile::TempDir,
        config_path: PathBuf,
        admin: TcpListener,
        workers: usize,
    ) -> TestProxy {
        // `RUST_LOG=debug cargo test` shows the proxy's log for a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let app = Arc::new(
            App::load_with_env(&config_path, Default::default())
                .unwrap_or_else(|e| panic!("test config refused: {e}")),
        );
        let data_dir = app.snapshot().config.data_dir.clone();
        assert!(
            data_dir.starts_with(dir.path()),
            "a test proxy keeps its run book and secret in its own directory, not {} (use with_data_dir)",
            data_dir.display()
        );
        let listeners = Listeners {
            proxy: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            admin,
        };
        let addr = listeners.proxy.local_addr().unwrap();
        let admin = listeners.admin.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        // As `abproxy serve` does: the watch is in place before the test goes on.
        let reloaders = abproxy::state::reload::Reloaders::start(app.clone()).unwrap();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.await;
                drop(reloaders);
            };
            abproxy::proxy::server::run(app, listeners, workers, shutdown)
                .await
                .expect("the worker threads start");
        });
        TestProxy {
            addr,
            admin,
            dir,
            config_path,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Scrape the admin `/metrics` and return `series → value` (series as printed,
    /// labels sorted by the encoder).
    pub async fn metrics(&self) -> HashMap<String, f64> {
        let (status, _, body) = get(&format!("http://{}/metrics", self.admin), &[]).await;
        assert_eq!(status, 200);
        parse_metrics(&String::from_utf8(body.to_vec()).unwrap())
    }

    /// Stop, keeping the directory (config, run book, secret) for a restart.
    pub async fn stop_keep_files(mut self) -> (tempfile::TempDir, PathBuf) {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let config_path = self.config_path.clone();
        self.stop().await;
        (dir, config_path)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(35), task)
                .await
                .expect("proxy stops")
                .unwrap();
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Every test proxy keeps its run book and secret in its own directory.
pub fn with_data_dir(yaml: &str, dir: &std::path::Path) -> String {
    if yaml.lines().any(|l| l.starts_with("data_dir:")) {
        yaml.to_string()
    } else {
        format!("data_dir: {}\n{yaml}", dir.join("data").display())
    }
}

/// A config with the two mock upstreams and one routing experiment.
pub fn moon_mars_config(
    moon: &MockUpstream,
    mars: &MockUpstream,
    moon_weight: u32,
    mars_weight: u32,
) -> String {
    format!(
        "listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
upstreams:
  moon: {}
  mars: {}
experiments:
  moon_mars:
    title: Moon/Mars
    state: active
    variants:
      Moon: {{ weight: {moon_weight}, upstream: moon }}
      Mars: {{ weight: {mars_weight}, upstream: mars }}
    fallback: Moon
",
        moon.url(),
        mars.url()
    )
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http()
}

/// Send a request; return status, headers and the whole body.
pub async fn send(
    client: &TestClient,
    request: Request<Full<Bytes>>,
) -> (StatusCode, HeaderMap, Bytes) {
    let response = client
        .request(request)
        .await
        .expect("request reaches the proxy");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("whole body").to_bytes();
    (parts.status, parts.headers, body)
}

/// Send `builder` with a text body; status, headers and the body as text.
pub async fn send_text(builder: http::request::Builder, body: &str) -> (u16, HeaderMap, String) {
    let (status, headers, bytes) = send(
        &client(),
        builder
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap(),
    )
    .await;
    (
        status.as_u16(),
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// GET `url` with extra headers, on a fresh one-off client.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Bytes) {
    send(&client(), request(url, headers)).await
}

pub fn request(url: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut builder = Request::get(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(Bytes::new())).unwrap()
}

/// A `Cookie` header value carrying every cookie a response set (what a browser would
/// send next), merged over a previous value of the same form.
pub use abproxy::cli::simulate::merge_cookies as cookies_after;

/// The `device_id` a response set, if any.
pub fn set_device_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.strip_prefix("device_id=")
                .map(|rest| rest.split(';').next().unwrap().to_string())
        })
}

/// Poll `check` until it returns true or `within` passes (then panic with `what`).
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        if Instant::now() > deadline {
            panic!("not within {within:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Replace the file the way editors do: write a temporary file beside it, rename it over.
pub fn write_by_rename(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("yaml.tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A raw HTTP/1.x exchange over a fresh TCP connection: write `request` as is, read
/// to EOF (send `Connection: close` or HTTP/1.0). Returns (status code, headers in
/// order with lower-case names, body).
pub async fn raw_http(addr: SocketAddr, request: &str) -> (u16, Vec<(String, String)>, String) {
    let text = raw_exchange(addr, request).await;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

/// Write `request` (one or several, as raw bytes) on a new connection and read until the
/// server closes it (within 10 s); everything it sent, as text.
pub async fn raw_exchange(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("response within 10s")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

pub fn header_values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// A request or response body fed chunk by chunk from a channel, so a test controls
/// exactly when each chunk exists.
pub struct ChannelBody(pub tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// Is a tool missing? Skip (with the reason) on a developer's machine; fail in CI.
pub fn require_tools(tools: &[&str], install: &str) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| !std::path::Path::new(t).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!("missing {} (install: {install})", missing.join(", "));
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and {message}");
    }
    eprintln!("skipped: {message}");
    false
}

/// A directory to which no file can be added, not even by root (tests run as root, for
/// whom permission bits mean nothing): the immutable attribute (`chattr +i`). Creating
/// the temporary file beside the config then fails with EPERM, as it fails with EROFS
/// on a read-only mount (the Docker case) — the same code path, without needing the
/// privilege to mount. Undone on drop. `None` (skipped, with the reason) where the
/// filesystem or the process cannot set it.
pub struct ImmutableDir(PathBuf);

impl ImmutableDir {
    pub fn set(dir: &std::path::Path) -> Option<ImmutableDir> {
        const CHATTR: &str = "/usr/bin/chattr";
        if !require_tools(&[CHATTR], "apt-get install e2fsprogs") {
            return None;
        }
        let set = std::process::Command::new(CHATTR)
            .arg("+i")
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !set {
            eprintln!(
                "skipped: chattr +i {} failed (the filesystem or this process's capabilities do not allow it)",
                dir.display()
            );
            return None;
        }
        let guard = ImmutableDir(dir.to_path_buf());
        // It must really stop this process, or the test would prove nothing.
        let probe = dir.join(".probe");
        if std::fs::write(&probe, b"").is_ok() {
            let _ = std::fs::remove_file(&probe);
            eprintln!("skipped: chattr +i does not stop this process from adding files");
            return None;
        }
        Some(guard)
    }
}

impl Drop for ImmutableDir {
    fn drop(&mut self) {
        let _ = std::process::Command::new("/usr/bin/chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

/// Read from a raw test upstream's connection until a whole request head is in (and
/// whatever came with it); `None` if the connection closed or failed first.
pub async fn read_request_head(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut read = Vec::new();
    let mut chunk = [0u8; 4096];
    while !read.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => read.extend_from_slice(&chunk[..n]),
        }
    }
    Some(read)
}
