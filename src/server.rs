//! Listeners, connections and shutdown. `run` takes bound listeners and a shutdown
//! future, so tests bind `127.0.0.1:0` and stop the proxy when they are done.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::AdminService;
use crate::app::App;
use crate::proxy::ProxyService;

/// Largest request head a client may send (hyper's read buffer cap). Requests past it
/// get 431 from hyper.
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
/// Pause after an accept error that is not about one connection (EMFILE, ENFILE,
/// ENOBUFS): retrying at once would spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub struct Listeners {
    pub proxy: TcpListener,
    pub admin: TcpListener,
}

/// Serve until `shutdown` completes; then stop accepting, let requests in flight finish
/// within the configured grace period, and return.
pub async fn run(app: Arc<App>, listeners: Listeners, shutdown: impl Future<Output = ()>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let proxy_graceful = GracefulShutdown::new();
    let admin_graceful = GracefulShutdown::new();

    // Accept until shutdown; the block ends the loops' borrows of the trackers.
    {
        let proxy_loop = {
            let app = app.clone();
            let builder = http1_builder(&app);
            accept_loop(
                listeners.proxy,
                stop_rx.clone(),
                &proxy_graceful,
                move |stream, peer| {
                    let service = TowerToHyperService::new(ProxyService::new(app.clone(), peer));
                    builder.serve_connection(TokioIo::new(stream), service)
                },
            )
        };
        let admin_loop = {
            let app = app.clone();
            let builder = http1_builder(&app);
            accept_loop(
                listeners.admin,
                stop_rx,
                &admin_graceful,
                move |stream, _peer| {
                    builder.serve_connection(TokioIo::new(stream), AdminService::new(app.clone()))
                },
            )
        };
        let loops = async { tokio::join!(proxy_loop, admin_loop) };
        tokio::pin!(loops);
        tokio::select! {
            _ = &mut loops => {}
            _ = shutdown => {}
        }
        let _ = stop_tx.send(true);
        loops.await;
    }

    let grace = app.snapshot().config.timeouts.shutdown_grace;
    tracing::info!(
        "shutting down: stopped accepting; waiting up to {}s for {} connection(s)",
        grace.as_secs_f64(),
        proxy_graceful.count() + admin_graceful.count()
    );
    let drained = async { tokio::join!(proxy_graceful.shutdown(), admin_graceful.shutdown()) };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            "grace period of {}s ended with requests still in flight; closing them",
            grace.as_secs_f64()
        );
    }
}

/// hyper's HTTP/1 options, set on purpose rather than left to its defaults.
fn http1_builder(app: &App) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        // A timer is required for header_read_timeout (hyper panics without one).
        .timer(TokioTimer::new())
        .header_read_timeout(app.snapshot().config.timeouts.header_read)
        .keep_alive(true)
        .half_close(false)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    builder
}

async fn accept_loop<C, F>(
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    graceful: &GracefulShutdown,
    serve: F,
) where
    F: Fn(tokio::net::TcpStream, std::net::SocketAddr) -> C,
    C: hyper_util::server::graceful::GracefulConnection + Send + 'static,
    C::Error: std::fmt::Display,
{
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.changed() => return,
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
        let connection = graceful.watch(serve(stream, peer));
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!("connection from {peer} ended with an error: {err}");
            }
        });
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
