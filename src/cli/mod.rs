//! The command line's own work: [`simulate`] (visitors against a running proxy),
//! [`remote`] (the admin and Prometheus sources of `analyze`), and [`backend`] (the
//! built-in Moon/Mars upstream of `demo`), [`healthcheck`] (the Docker image's probe).
//!
//! May use `stats`, `counting`, `transport`, `config` and `util`; `main.rs` wires it up.

pub mod backend;
pub mod healthcheck;
pub mod remote;
pub mod simulate;
