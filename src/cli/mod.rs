//! The command line's own work: [`simulate`] (visitors against a running proxy),
//! [`remote`] (the admin and Prometheus sources of `analyze`), and [`backend`] (the
//! built-in Moon/Mars upstream of `demo`).
//!
//! May use `stats`, `counting`, `transport`, `config` and `util`; `main.rs` wires it up.

pub mod backend;
pub mod remote;
pub mod simulate;
