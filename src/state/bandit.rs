//! The bandit updater: at each boundary of a bandit experiment, read the counts, compute
//! the shares (`stats::bandit`), and start a new period of the run when they change.

use serde::Serialize;

/// What the updater last did for one experiment, for the results API and the page.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BanditStatus {
    /// The last boundary evaluated (RFC 3339, UTC).
    pub last_at: Option<String>,
    /// What came of it, in words ("waiting for 100 devices per variant (B has 37)",
    /// "period 4 started", "shares unchanged").
    pub last_outcome: Option<String>,
    /// Set while the counts could not be read (Prometheus unreachable or incomplete): the
    /// shares in force were kept.
    pub problem: Option<String>,
    /// The next boundary (RFC 3339, UTC).
    pub next_at: Option<String>,
}
