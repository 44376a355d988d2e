//! The command line's own work, one module per subcommand: [`serve`], [`check`],
//! [`demo`] (the proxy in front of a built-in [`backend`] per upstream), [`analyze`]
//! (with its [`remote`] sources: the admin API and Prometheus, whose counts of a run
//! are read by `state::prometheus` as the replicas read them), [`simulate`] (visitors
//! against a running proxy), [`plan`], [`healthcheck`] (the Docker image's probe), and
//! the [`runtime`] they run on. `main.rs` parses the arguments and calls in here.
//!
//! The top layer: it may use every layer below. A command's runner returns
//! `anyhow::Result`, whose message `main` prints; the parts below it keep typed errors
//! or sentences (`Result<_, String>`).

pub mod analyze;
pub mod backend;
pub mod check;
pub mod demo;
pub mod healthcheck;
pub mod plan;
pub mod remote;
pub mod runtime;
pub mod serve;
pub mod simulate;
