//! `abproxy serve`: bind the proxy and admin listeners of a config, start its reload
//! triggers, and run until SIGTERM or SIGINT.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;

use crate::cli::runtime::shutdown_signal;
use crate::proxy::server::Listeners;
use crate::state::app::{App, Env};

/// Serve the config at `path`, with `env` (the process's, or the demo's), its proxy
/// connections dealt to `workers` workers (the first is the runtime this runs on).
pub async fn run(path: &Path, env: Env, workers: usize) -> Result<()> {
    let app = Arc::new(App::load_with_env(path, env).map_err(|e| anyhow::anyhow!("{e}"))?);
    let config = app.snapshot().config.clone();
    let listeners = Listeners {
        proxy: TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?,
        admin: TcpListener::bind(config.admin_listen)
            .await
            .with_context(|| format!("cannot listen on {} (admin)", config.admin_listen))?,
    };
    // Reload triggers first: a SIGHUP that arrives once we say we are listening must
    // find its handler (the default action of SIGHUP ends the process).
    let reloaders = crate::state::reload::Reloaders::start(app.clone())?;
    let shutdown = shutdown_signal();
    tracing::info!(
        "proxy listening on http://{} (admin http://{}/metrics), config {}, {workers} worker(s)",
        listeners.proxy.local_addr()?,
        listeners.admin.local_addr()?,
        path.display()
    );
    crate::proxy::server::run(app, listeners, workers, shutdown)
        .await
        .context("cannot start the worker threads")?;
    drop(reloaders);
    tracing::info!("stopped");
    Ok(())
}
