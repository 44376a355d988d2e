//! Counting: what happened, kept so that nothing counted is lost.
//!
//! - [`book`]: the in-memory count book (exposures, assignments, conversions per
//!   experiment, run and variant, with their history), atomic adds on the request path;
//! - [`log_line`]: a count book record as one checksummed line of the log, and back;
//! - [`store`]: its durable log in the data directory (written by a flusher, replayed at
//!   start-up);
//! - [`export`]: the optional JSON-lines export of every counted event;
//! - [`metrics`]: the Prometheus registry abproxy owns, its metric names and label sets;
//! - [`promql`]: the queries that sum every replica's counts in Prometheus, and the
//!   reading of its answers;
//! - [`prometheus_counts`]: one run's answers made into the analysis's counts (totals,
//!   periods, shares), and the warnings about them.
//! - [`upstream_window`]: the variants' upstream counts for the guardrails, read from
//!   this process's metrics or from Prometheus, into `stats::upstream` figures.
//!
//! May use `stats`, `config` and `util`; nothing above (the experiment plans hold handles
//! into the book, not the other way round).

pub mod book;
pub mod export;
pub mod log_line;
pub mod metrics;
pub mod prometheus_counts;
pub mod promql;
pub mod store;
pub mod upstream_window;
