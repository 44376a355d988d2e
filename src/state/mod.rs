//! The proxy's state, and the one path that changes it.
//!
//! - [`snapshot`]: everything derived from one config (experiment plans, upstream pools,
//!   metric handles), immutable, swapped whole;
//! - [`app`]: the shared state; load, reload and commit of a config;
//! - [`change`]: a change of an experiment through its config file (the admin API's and
//!   an automated decision's);
//! - [`scrape`]: the experiment counts as metric families, read at scrape time;
//! - [`bandit`]: the bandit updater (shares of new devices at each boundary);
//! - [`decider`]: automated decisions at each boundary (read, decide, act, record,
//!   notify), and [`decision_log`], their records, durable in the data directory;
//! - [`prometheus`]: asking Prometheus: an instant query at a time, and one run's counts
//!   summed over every replica (what `analyze --prometheus`, the bandits and the
//!   automated decisions with `counts: prometheus` read);
//! - [`runs`]: the run book (each experiment's runs, durable in the data directory);
//! - [`secret`]: the cookie-signing secret;
//! - [`reload`]: file-watch and SIGHUP triggers.
//!
//! May use every layer below (transport, experiments, counting, stats, config, util).

pub mod app;
pub mod bandit;
pub mod change;
pub mod decider;
pub mod decision_log;
pub mod prometheus;
pub mod reload;
pub mod run_counts;
pub mod runs;
pub mod scrape;
pub mod secret;
pub mod snapshot;
