//! abproxy: an A/B-testing reverse proxy.
//!
//! The data flow, one module per step:
//!
//! ```text
//! config (YAML file → typed, validated Config)
//!   → snapshot (everything derived from one Config, swapped whole by `app` on reload)
//!   → assign / experiment (hash + weighted pick + state rules; pure)
//!   → proxy (a tower Service: device → experiments → upstream → forward → Set-Cookie)
//!   → metrics (Prometheus counters, pre-resolved per snapshot)
//! ```
//!
//! - [`config`]: parse and validate the YAML file (`config::yaml` keeps positions).
//! - [`names`]: the naming rules for experiments, variants, upstreams and device ids.
//! - [`assign`]: the assignment hash of `PRODUCT.md`.
//! - [`experiment`]: which requests an experiment applies to; what each state serves.
//! - [`snapshot`]: one immutable, request-ready view of a config.
//! - [`app`]: the shared state and the one path that loads or reloads a config.
//! - [`reload`]: file-watch and SIGHUP triggers for reloads.
//! - [`device`], [`headers`]: the `device_id` cookie; request/response header rewriting.
//! - [`proxy`], [`error`]: the request path and its failure responses.
//! - [`server`], [`admin`]: listeners, connections, graceful shutdown; `/metrics`.
//! - [`backend`]: the built-in Moon/Mars upstream used by `demo` and the benchmarks.

pub mod admin;
pub mod app;
pub mod assign;
pub mod backend;
pub mod config;
pub mod device;
pub mod error;
pub mod experiment;
pub mod headers;
pub mod metrics;
pub mod names;
pub mod proxy;
pub mod reload;
pub mod server;
pub mod snapshot;

use std::future::Future;
use std::sync::Arc;

/// Run the proxy on bound listeners with hot reload (file watch and SIGHUP) until
/// `shutdown` completes, then drain. This is `abproxy serve` minus argument parsing.
pub async fn serve(
    app: Arc<app::App>,
    listeners: server::Listeners,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let _watcher = reload::watch_config(app.clone())
        .with_context(|| format!("cannot watch {} for changes", app.config_path().display()))?;
    #[cfg(unix)]
    let sighup = reload::reload_on_sighup(app.clone()).context("cannot listen for SIGHUP")?;
    server::run(app, listeners, shutdown).await;
    #[cfg(unix)]
    sighup.abort();
    Ok(())
}
