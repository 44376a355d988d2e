//! The tokio runtime a command runs on, and the signals that end a long-running one
//! (`serve`, `demo`, `backend`).

use std::future::Future;

use anyhow::{bail, Context, Result};

/// A runtime with `threads` workers (default: one per CPU core).
pub fn build(threads: Option<usize>) -> Result<tokio::runtime::Runtime> {
    let mut builder = match threads {
        Some(0) => bail!("--threads must be at least 1"),
        // One thread: the current-thread scheduler, without the work-stealing machinery
        // (cross-thread queues, wake-ups of idle workers) a single worker cannot use.
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all();
    builder.build().context("cannot start the tokio runtime")
}

/// How many workers `serve` deals its connections to: `threads`, by default one per CPU
/// core. Each is a thread with a current-thread runtime of its own (see
/// [`crate::transport::workers`]).
pub fn proxy_workers(threads: Option<usize>) -> Result<usize> {
    match threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => Ok(n),
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

/// Run `work` to its end on a runtime of `threads` workers (see [`build`]).
pub fn block_on<T>(threads: Option<usize>, work: impl Future<Output = Result<T>>) -> Result<T> {
    build(threads)?.block_on(work)
}

/// Completes on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is
/// called, not when the future is first polled: a signal sent as soon as the proxy says
/// it is listening must not find the default action (which ends the process at once).
pub fn shutdown_signal() -> impl Future<Output = ()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("cannot install the SIGTERM handler");
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .expect("cannot install the SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
    }
}
