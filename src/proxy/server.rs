//! Listeners, connections and shutdown. `run` takes bound listeners and a shutdown
//! future, so tests bind `127.0.0.1:0` and stop the proxy when they are done.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::admin::AdminService;
use crate::proxy::plain_http1;
use crate::proxy::service::{ProxyService, Scheme};
use crate::state::app::App;
use crate::transport::drain::{Drain, Graceful, Watcher};
use crate::transport::workers::Workers;

/// hyper's read buffer cap, unless `limits.max_header_bytes` is larger.
const MIN_READ_BUFFER: usize = 64 * 1024;
/// Pause after an accept error that is not about one connection (EMFILE, ENFILE,
/// ENOBUFS): retrying at once would spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// HTTP/2 streams one client may have open at once (hyper's default, written out).
const MAX_CONCURRENT_STREAMS: u32 = 200;
const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long admin connections (a last scrape) may take once the proxy has drained.
const ADMIN_LINGER: Duration = Duration::from_secs(2);

pub struct Listeners {
    pub proxy: TcpListener,
    pub admin: TcpListener,
}

/// Serve until `shutdown` completes; then stop accepting, let requests in flight finish
/// within the configured grace period, and return.
///
/// The admin listener stays up until the proxy's connections have drained, so a last
/// scrape during the drain still sees every count.
///
/// Proxy connections are dealt in turn to `workers` workers, each a thread with its own
/// runtime (see [`Workers`]); worker 0 is the runtime `run` is called on, which also
/// runs the admin listener and the background tasks.
pub async fn run(
    app: Arc<App>,
    listeners: Listeners,
    workers: usize,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    if let Ok(admin) = listeners.admin.local_addr() {
        let has_token = app.snapshot().admin_token.is_some();
        if let Some(warning) = crate::admin::auth::exposure_warning(admin, has_token) {
            tracing::warn!("{warning}");
        }
    }
    // First, so that threads that cannot start leave nothing else started.
    let workers = Arc::new(Workers::start(workers, {
        let app = app.clone();
        move |(stream, peer, watcher): (std::net::TcpStream, SocketAddr, Watcher)| {
            serve_proxy(app.clone(), stream, peer, watcher)
        }
    })?);
    let flusher = app.counts.start_flusher();
    let bandits = crate::state::bandit::Updater::start(app.clone());
    let decider = crate::state::decider::Decider::start(app.clone());
    let (stop_proxy, stop_proxy_rx) = watch::channel(false);
    let (stop_admin, stop_admin_rx) = watch::channel(false);
    let proxy_task = tokio::spawn(accept_loop(listeners.proxy, stop_proxy_rx, {
        let workers = workers.clone();
        move |stream: TcpStream, peer, watcher| match stream.into_std() {
            // Out of this runtime's reactor, into the worker's.
            Ok(stream) => workers.dispatch((stream, peer, watcher)),
            Err(err) => tracing::debug!("connection from {peer} lost before serving: {err}"),
        }
    }));
    let admin_task = tokio::spawn(accept_loop(listeners.admin, stop_admin_rx, {
        let app = app.clone();
        move |stream, peer, watcher| {
            let connection = http1_builder(&app)
                .serve_connection(TokioIo::new(stream), AdminService::new(app.clone()));
            tokio::spawn(watched(watcher, connection, peer));
        }
    }));

    shutdown.await;
    let _ = stop_proxy.send(true);
    // The loop returns when it has stopped accepting; the listener is closed then.
    let proxy_connections = proxy_task.await.expect("the accept loop does not panic");
    let grace = app.snapshot().config.timeouts.shutdown_grace;
    tracing::info!(
        "shutting down: stopped accepting; waiting up to {}s for {} connection(s)",
        grace.as_secs_f64(),
        proxy_connections.count()
    );
    if tokio::time::timeout(grace, proxy_connections.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "grace period of {}s ended with requests still in flight; closing them",
            grace.as_secs_f64()
        );
    }
    // The accept loop, and with it its handle on the workers, has ended.
    let workers = Arc::into_inner(workers).expect("only the accept loop shared the workers");
    workers.stop().await;
    // No new period or decision once the requests have drained, and no task left
    // holding the app.
    bandits.stop().await;
    decider.stop().await;
    // Every request has finished counting: write the last of it.
    let export = app.export.clone();
    tokio::task::spawn_blocking(move || {
        flusher.stop();
        if let Some(export) = export {
            export.stop();
        }
    })
    .await
    .expect("the flusher does not panic");
    let _ = stop_admin.send(true);
    let admin_connections = admin_task.await.expect("the accept loop does not panic");
    let _ = tokio::time::timeout(ADMIN_LINGER, admin_connections.shutdown()).await;
    Ok(())
}

/// hyper's HTTP/1 options, set on purpose rather than left to its defaults. Built per
/// connection from the config in force, so a reloaded `header_read` applies to new
/// connections.
fn http1_builder(app: &App) -> http1::Builder {
    let config = &app.snapshot().config;
    let limits = config.limits;
    let mut builder = http1::Builder::new();
    builder
        // A timer is required for header_read_timeout (hyper panics without one).
        .timer(TokioTimer::new())
        // hyper starts this timer whenever the connection waits for a request head, so it
        // is also the keep-alive idle timeout.
        .header_read_timeout(config.timeouts.header_read)
        .keep_alive(true)
        // Off on purpose: with it, hyper holds writes while unread bytes remain, so the
        // automatic 431 for an oversized head (whose bytes stay unread) was never sent.
        // Pipelined requests are still answered in order, one write each.
        .pipeline_flush(false)
        .half_close(false)
        // Past either, hyper answers 431 and closes the connection.
        .max_header_size(limits.max_header_bytes)
        .max_headers(limits.max_headers)
        // The read buffer: at least a whole head, and room for body reads.
        .max_buf_size(limits.max_header_bytes.max(MIN_READ_BUFFER));
    builder
}

/// One client connection of the proxy listener: admitted (or answered 503), TLS
/// terminated when configured, then HTTP/2 if ALPN chose it, else HTTP/1.1 — on the
/// plain listener first on abproxy's own path ([`plain_http1`]), until a request needs
/// hyper.
async fn serve_proxy(
    app: Arc<App>,
    stream: std::net::TcpStream,
    peer: SocketAddr,
    watcher: Watcher,
) {
    let stream = match TcpStream::from_std(stream) {
        Ok(stream) => stream,
        Err(err) => {
            tracing::warn!("cannot serve the connection from {peer}: {err}");
            return;
        }
    };
    let Some(tls) = &app.tls else {
        let service = ProxyService::admit(app.clone(), peer, Scheme::Http);
        if service.over_capacity() {
            return serve_http1(&app, TokioIo::new(stream), service, peer, watcher).await;
        }
        // The common exchange without hyper; hyper takes the connection at the first
        // request that is not one (see `plain_http1`).
        if let Some(handed) = plain_http1::serve(&app, service.peer(), stream, watcher).await {
            serve_http1(&app, TokioIo::new(handed.io), service, peer, handed.watcher).await;
        }
        return;
    };
    // A handshake is bounded like a request head: a client that stalls in it is cut off.
    let handshake = tls.acceptor.accept(stream);
    let header_read = app.snapshot().config.timeouts.header_read;
    let stream = match tokio::time::timeout(header_read, handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            tracing::debug!("TLS handshake with {peer} failed: {err}");
            return;
        }
        Err(_) => {
            tracing::debug!("TLS handshake with {peer} took over {header_read:?}");
            return;
        }
    };
    let service = ProxyService::admit(app.clone(), peer, Scheme::Https);
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        let over_capacity = service.over_capacity();
        let connection = http2_builder(&app).serve_connection(TokioIo::new(stream), service);
        if over_capacity {
            // Streams already sent are answered 503; then GOAWAY, and the connection ends.
            let mut connection = std::pin::pin!(connection);
            connection.as_mut().graceful_shutdown();
            if let Err(err) = connection.await {
                tracing::debug!("rejected connection from {peer} ended with an error: {err}");
            }
            return;
        }
        return watched(watcher, connection, peer).await;
    }
    serve_http1(&app, TokioIo::new(stream), service, peer, watcher).await
}

async fn serve_http1<I>(app: &App, io: I, service: ProxyService, peer: SocketAddr, watcher: Watcher)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let mut builder = http1_builder(app);
    if service.over_capacity() {
        // One 503, then the connection closes.
        builder.keep_alive(false);
    }
    // With upgrades: a WebSocket handshake hands the connection to a tunnel (see
    // `upgrade`).
    let connection = builder.serve_connection(io, service).with_upgrades();
    watched(watcher, connection, peer).await
}

/// Run `connection` to its end, tracked for the graceful shutdown.
async fn watched<C, E>(watcher: Watcher, connection: C, peer: SocketAddr)
where
    C: Graceful<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    if let Err(err) = watcher.watch(connection).await {
        tracing::debug!("connection from {peer} ended with an error: {err}");
    }
}

/// hyper's HTTP/2 options (TLS clients that chose `h2`).
fn http2_builder(app: &App) -> http2::Builder<TokioExecutor> {
    let limits = app.snapshot().config.limits;
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        // The head limit applies to HTTP/2's decoded header list as well.
        .max_header_list_size(limits.max_header_bytes.try_into().unwrap_or(u32::MAX))
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        // An idle client is pinged; one that does not answer is closed.
        .keep_alive_interval(Some(H2_KEEPALIVE_INTERVAL))
        .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT);
    builder
}

/// Accept until `stop` says so; return the tracker of the connections still open.
/// `serve` starts each connection on a task of its own, tracked by the watcher it is
/// given.
async fn accept_loop<F>(listener: TcpListener, mut stop: watch::Receiver<bool>, serve: F) -> Drain
where
    F: Fn(TcpStream, SocketAddr, Watcher),
{
    let connections = Drain::default();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.changed() => return connections,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) if is_per_connection_error(&err) => continue,
                Err(err) => {
                    tracing::error!("accept failed: {err}; retrying in {}ms", ACCEPT_BACKOFF.as_millis());
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Small responses must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        serve(stream, peer, connections.watcher());
    }
}

/// Errors about one connection that went away before we accepted it; the next accept
/// is unaffected (same list as hyper-util and axum).
fn is_per_connection_error(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
