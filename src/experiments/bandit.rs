//! A bandit's update at one boundary, as a rule: the run's counts and the weights in
//! force in, the next period's weights (or why there is none) out. Pure: the updater in
//! `state::bandit` reads the clock and the counts, and applies what this decides.
//!
//! The rule of issue 13, exactly, so that replicas reading the same counts at the same
//! boundary agree bit for bit: once every variant has `burn_in` devices in the run, the
//! allocation of `stats::bandit` over the variants in name (byte) order, the floor
//! `min_share`, and integer weights in parts per billion. A period starts only when these
//! weights differ from the ones in force.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::config::{Bandit, BanditAlgorithm};
use crate::stats::analysis::ArmInputs;
use crate::stats::bandit::{allocation, shares, weights, Algorithm, ArmCounts};

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

/// What a boundary's evaluation decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// A variant has fewer than `burn_in` devices in the run: the weights stay.
    BurnIn {
        variant: String,
        devices: u64,
        needed: u64,
    },
    /// The rule gives the weights in force.
    Unchanged,
    /// A new period with these weights, computed from these counts.
    Start {
        weights: BTreeMap<String, u32>,
        inputs: BTreeMap<String, ArmInputs>,
    },
}

impl Update {
    /// The outcome in words, for the log and the page.
    pub fn describe(&self) -> String {
        match self {
            Update::BurnIn {
                variant,
                devices,
                needed,
            } => format!(
                "waiting for {needed} devices per variant before the first update ({variant} has {devices})"
            ),
            Update::Unchanged => "shares unchanged".to_string(),
            Update::Start { weights, .. } => {
                let shares: Vec<String> = crate::experiments::assign::shares(weights)
                    .iter()
                    .map(|(v, share)| format!("{v} {:.1}%", 100.0 * share))
                    .collect();
                format!("new shares {}", shares.join(", "))
            }
        }
    }
}

/// The rule at one boundary. `counts` holds every variant of the experiment (devices of
/// the run and their conversions on the bandit's goal; a variant missing counts as 0);
/// `in_force` the weights new devices are hashed by now.
pub fn evaluate(
    bandit: &Bandit,
    counts: &BTreeMap<String, ArmInputs>,
    in_force: &BTreeMap<String, u32>,
) -> Update {
    // BTreeMap order is byte order of the names: the order the rule and its ties use.
    if let Some((variant, c)) = counts.iter().find(|(_, c)| c.users < bandit.burn_in) {
        return Update::BurnIn {
            variant: variant.clone(),
            devices: c.users,
            needed: bandit.burn_in,
        };
    }
    let arms: Vec<ArmCounts> = counts
        .values()
        .map(|c| ArmCounts {
            users: c.users,
            conversions: c.conversions,
        })
        .collect();
    let p = allocation(algorithm(bandit.algorithm), &arms);
    let next: BTreeMap<String, u32> = counts
        .keys()
        .cloned()
        .zip(weights(&shares(&p, bandit.min_share)))
        .collect();
    if &next == in_force {
        Update::Unchanged
    } else {
        Update::Start {
            weights: next,
            inputs: counts.clone(),
        }
    }
}

fn algorithm(a: BanditAlgorithm) -> Algorithm {
    match a {
        BanditAlgorithm::Thompson => Algorithm::Thompson,
        BanditAlgorithm::Ucb1 => Algorithm::Ucb1,
        BanditAlgorithm::EpsilonGreedy { epsilon } => Algorithm::EpsilonGreedy { epsilon },
    }
}

/// The boundaries of `every` since the Unix epoch, in ms: the last one at or before
/// `now_ms`, and the one after it.
pub fn boundaries(every: Duration, now_ms: u64) -> (u64, u64) {
    let every = (every.as_millis() as u64).max(1);
    let last = now_ms - now_ms % every;
    (last, last + every)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BanditCounts;

    fn bandit(algorithm: BanditAlgorithm) -> Bandit {
        Bandit {
            algorithm,
            goal: "click".into(),
            update_every: Duration::from_secs(3600),
            burn_in: 100,
            min_share: 0.01,
            counts: BanditCounts::Local,
            pos: Default::default(),
        }
    }

    fn counts(arms: &[(&str, u64, u64)]) -> BTreeMap<String, ArmInputs> {
        arms.iter()
            .map(|&(v, users, conversions)| (v.to_string(), ArmInputs { users, conversions }))
            .collect()
    }

    fn equal(names: &[&str]) -> BTreeMap<String, u32> {
        names.iter().map(|n| (n.to_string(), 1)).collect()
    }

    #[test]
    fn nothing_moves_before_every_variant_has_its_burn_in() {
        let c = counts(&[("A", 150, 9), ("B", 99, 30), ("C", 100, 1)]);
        assert_eq!(
            evaluate(
                &bandit(BanditAlgorithm::Thompson),
                &c,
                &equal(&["A", "B", "C"])
            ),
            Update::BurnIn {
                variant: "B".into(),
                devices: 99,
                needed: 100
            }
        );
        let c = counts(&[("A", 100, 9), ("B", 100, 30), ("C", 100, 1)]);
        assert!(matches!(
            evaluate(
                &bandit(BanditAlgorithm::Thompson),
                &c,
                &equal(&["A", "B", "C"])
            ),
            Update::Start { .. }
        ));
    }

    #[test]
    fn ucb1_puts_all_but_the_floors_on_the_largest_bound() {
        // A: 10/100 + sqrt(2 ln 400 / 100) = 0.1 + 0.3462 = 0.4462
        // B: 30/200 + sqrt(2 ln 400 / 200) = 0.15 + 0.2448 = 0.3948
        // C: 5/100 + 0.3462 = 0.3962. p = (1, 0, 0); shares f + (1 − 3f)·p_v, f = 0.01:
        // A 0.98, B and C 0.01.
        let c = counts(&[("A", 100, 10), ("B", 200, 30), ("C", 100, 5)]);
        let Update::Start { weights, inputs } =
            evaluate(&bandit(BanditAlgorithm::Ucb1), &c, &equal(&["A", "B", "C"]))
        else {
            panic!("expected a new period")
        };
        assert_eq!(
            weights,
            [
                ("A".to_string(), 980_000_000),
                ("B".to_string(), 10_000_000),
                ("C".to_string(), 10_000_000)
            ]
            .into()
        );
        assert_eq!(inputs, c, "the period records what it was computed from");
        // The same counts again: the weights in force, no new period.
        assert_eq!(
            evaluate(&bandit(BanditAlgorithm::Ucb1), &c, &weights),
            Update::Unchanged
        );
    }

    #[test]
    fn epsilon_greedy_ties_go_to_the_first_name() {
        // A and B tie at 0.1: A (first in byte order) gets 1 − ε; each gets ε/K.
        let c = counts(&[("B", 100, 10), ("A", 200, 20)]);
        let mut b = bandit(BanditAlgorithm::EpsilonGreedy { epsilon: 0.2 });
        b.min_share = 0.0;
        let Update::Start { weights, .. } = evaluate(&b, &c, &equal(&["A", "B"])) else {
            panic!("expected a new period")
        };
        assert_eq!(
            weights,
            [
                ("A".to_string(), 900_000_000),
                ("B".to_string(), 100_000_000)
            ]
            .into()
        );
    }

    #[test]
    fn the_outcome_reads_as_a_sentence() {
        let start = Update::Start {
            weights: [
                ("A".to_string(), 250_000_000),
                ("B".to_string(), 750_000_000),
            ]
            .into(),
            inputs: BTreeMap::new(),
        };
        assert_eq!(start.describe(), "new shares A 25.0%, B 75.0%");
        assert_eq!(
            Update::BurnIn {
                variant: "B".into(),
                devices: 7,
                needed: 100
            }
            .describe(),
            "waiting for 100 devices per variant before the first update (B has 7)"
        );
    }

    #[test]
    fn boundaries_are_multiples_of_the_interval_since_the_epoch() {
        let hour = Duration::from_secs(3600);
        assert_eq!(boundaries(hour, 7_200_000), (7_200_000, 10_800_000));
        assert_eq!(boundaries(hour, 7_200_001), (7_200_000, 10_800_000));
        assert_eq!(boundaries(Duration::from_secs(1), 1_999), (1_000, 2_000));
    }
}
