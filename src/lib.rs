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
//! - [`client_request`]: what a client's request must be (Host, method, body framing)
//!   and its body on the way upstream (malformed or stalled: the client's fault).
//! - [`proxy`], [`error`]: the request path and its failure responses.
//! - [`server`], [`admin`]: listeners, connections, graceful shutdown; `/metrics`.
//! - [`backend`]: the built-in Moon/Mars upstream used by `demo` and the benchmarks.
//! - [`healthcheck`]: `abproxy healthcheck`, the Docker image's probe of `/healthz`.

pub mod admin;
pub mod analysis;
pub mod app;
pub mod assign;
pub mod backend;
pub mod body;
pub mod client_request;
pub mod config;
pub mod count_store;
pub mod counts;
pub mod device;
pub mod drain;
pub mod error;
pub mod events;
pub mod experiment;
pub mod export;
pub mod frontend;
pub mod fsutil;
pub mod fuzzing;
pub mod goals;
pub mod headers;
pub mod healthcheck;
pub mod html;
pub mod lifecycle;
pub mod metrics;
pub mod names;
pub mod proxy;
pub mod qa;
pub mod random;
pub mod reload;
pub mod remote;
pub mod results;
pub mod routing;
pub mod runs;
pub mod secret;
pub mod server;
pub mod simulate;
pub mod snapshot;
pub mod stats;
pub mod sticky;
pub mod targeting;
pub mod tls;
pub mod upgrade;
pub mod upstream_client;
