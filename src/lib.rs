//! abproxy: an A/B-testing reverse proxy.
//!
//! A request's way through the folders, left to right, and where each count goes:
//!
//! ```text
//!  config ──► state::snapshot ──► proxy::service ──► experiments ──► proxy::service ──► upstream
//!  (YAML →     (one immutable      (device id, the     (hash, weights,   (rewrite, forward
//!   Config)     view, swapped       /_ab/ endpoints,    state rules,      through transport,
//!               whole on reload)    routing)            sticky pins)      Set-Cookie back;
//!                                                                           proxy::plain_http1
//!                                                                           for plain GETs)
//!                                         │
//!                                         ▼
//!                 counting (count book → counts log, export, /metrics)
//!                                         │
//!                                         ▼
//!                 stats (tests, intervals, SRM)  ──►  admin (API, page)  /  cli (analyze)
//!                                         │
//!                                         ▼
//!                 state::decider: experiments::decide (promote, guardrails, freeze,
//!                 timeout) → state::change (the YAML, as the admin API) → the records
//!                 (state::decision_log) → transport::webhook
//! ```
//!
//! The folders are layers. A module imports only from layers below its own (and from
//! its own folder, without circles); `tests/it/layout.rs` checks this on every test run.
//! From the bottom up:
//!
//! | layer | what it holds | may use |
//! |---|---|---|
//! | [`util`] | file writes, randomness, HTML escaping | std |
//! | [`config`] | the YAML file → a validated [`config::Config`]; the naming rules | util; **pure** |
//! | [`stats`] | the statistics and the analysis report | util; **pure** |
//! | [`counting`] | the count book, the durable counts log, the export, the metric registry, the PromQL, the counts from Prometheus's answers, the variants' upstream windows | stats, config, util |
//! | [`experiments`] | the assignment hash, experiment plans, targeting, sticky cookies, QA overrides, device ids, lifecycle rules, goals, the bandit's and the automated decisions' rules | counting, stats, config, util; **pure** |
//! | [`transport`] | upstream connection pools, TLS termination, connection draining, bodies, webhook deliveries | config, counting |
//! | [`state`] | the snapshot, the app (load, reload, commit), the run book, secrets, reload triggers, the bandit updater, the counts read from Prometheus, the decision loop and its records, changes through the config file | everything below |
//! | [`admin`] | the admin listener: API, page, charts, results | everything below |
//! | [`proxy`] | the listeners, the proxy service, routing one request, `/_ab/` endpoints, header rewriting, upgrades, errors | everything below |
//! | [`cli`] | one module per subcommand (`serve`, `check`, `demo`, `analyze` and its remote sources, `simulate`, `plan`, `healthcheck`, the built-in backend) and the runtime they run on | everything below |
//!
//! "Pure" means no I/O and no clock: nothing under `config`, `experiments` or `stats`
//! uses tokio, hyper, `std::net`, `std::fs` or reads the time; callers pass time and
//! bytes in (addresses in the config are `core::net` values: plain data). [`fuzzing`]
//! holds the properties the fuzz targets and their replay test check.

pub mod admin;
pub mod cli;
pub mod config;
pub mod counting;
pub mod experiments;
pub mod fuzzing;
pub mod proxy;
pub mod state;
pub mod stats;
pub mod transport;
pub mod util;
