//! Whole runs of an experiment, simulated with a seeded generator through the real
//! analysis (`stats::analysis::analyze`) and the real decision rule (`decide::evaluate`):
//! the evidence that the rule's false promotions stay within 1 −
//! confidence however often it is evaluated, and how soon it promotes a real winner.
//!
//! The analysis is [`analyze_without_posteriors`]: every figure of `analyze` but the
//! exact Beta posteriors, which the rule does not read and which would take nine tenths
//! of the time.
//!
//! Each run starts at a day boundary with a fresh [`DecisionState`]. Every day each
//! variant gains the same number of new devices (a designed equal split, exactly kept:
//! the sample-ratio check then never flags, so what is measured is the promotion rule
//! alone), each device converting with its variant's true rate, once. At the end of each
//! day the run's totals are analysed and evaluated with that boundary as `now_ms`, no
//! upstream figures (no guardrail says anything) and the state of the day before. A run
//! ends at its first promotion (the rollout ends the experiment) or after its last day.
//! Pure: no clock, no I/O; the same seed gives the same summary.

use std::collections::BTreeMap;

use crate::experiments::decide::{evaluate, Decide, DecisionState, Inputs, Kind};
use crate::stats::analysis::{
    analyze_without_posteriors, Counts, GoalCounts, Settings, VariantCounts,
};
use crate::util::random::SplitMix;

const DAY_MS: u64 = 86_400_000;
/// 2026-01-01T00:00:00Z, a day boundary since the epoch (as `decide::due` evaluates), where
/// every simulated run starts.
const START_MS: u64 = 1_767_225_600_000;

/// What is simulated.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Each variant's name and true conversion rate; the first is the control.
    pub variants: Vec<(String, f64)>,
    pub devices_per_variant_per_day: u64,
    pub days: u32,
    pub runs: u32,
    pub seed: u64,
}

/// A promotion in one run: the variant rolled out, and the day (1 = the end of the run's
/// first day) of the evaluation that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    pub variant: String,
    pub day: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub runs: u32,
    /// The runs that ended in a promotion, in the order they were simulated.
    pub promotions: Vec<Promotion>,
    /// Every decision that fired, by kind, over all runs (promotions included).
    pub decisions: BTreeMap<Kind, u32>,
}

impl Summary {
    /// The share of runs that ended in a promotion (of any variant).
    pub fn promotion_rate(&self) -> f64 {
        self.promotions.len() as f64 / f64::from(self.runs.max(1))
    }

    /// The runs that promoted `variant`.
    pub fn promotions_of(&self, variant: &str) -> usize {
        self.promotions
            .iter()
            .filter(|p| p.variant == variant)
            .count()
    }

    /// The first quartile, the median and the third quartile of the day of promotion,
    /// over the runs that promoted (linear interpolation between order statistics, as
    /// numpy's default `percentile`); `None` without promotions.
    pub fn day_quartiles(&self) -> Option<[f64; 3]> {
        let mut days: Vec<u32> = self.promotions.iter().map(|p| p.day).collect();
        days.sort_unstable();
        let last = days.len().checked_sub(1)?;
        let at = |q: f64| {
            let position = q * last as f64;
            let (low, high) = (position.floor() as usize, position.ceil() as usize);
            let weight = position - low as f64;
            f64::from(days[low]) * (1.0 - weight) + f64::from(days[high]) * weight
        };
        Some([at(0.25), at(0.5), at(0.75)])
    }
}

/// Simulates `scenario.runs` runs, each decided by `decide` (its promote goal is the one
/// goal the devices convert on) and analysed at `decide.promote.confidence` with the
/// default sequential tuning.
pub fn simulate(scenario: &Scenario, decide: &Decide) -> Summary {
    let mut random = SplitMix(scenario.seed);
    let settings = Settings {
        confidence: decide.promote.confidence,
        ..Default::default()
    };
    let no_upstream = BTreeMap::new();
    let mut summary = Summary {
        runs: scenario.runs,
        promotions: Vec::new(),
        decisions: BTreeMap::new(),
    };
    for _ in 0..scenario.runs {
        let mut conversions = vec![0u64; scenario.variants.len()];
        let mut state = DecisionState::default();
        for day in 1..=scenario.days {
            for (total, &(_, rate)) in conversions.iter_mut().zip(&scenario.variants) {
                *total += binomial(&mut random, scenario.devices_per_variant_per_day, rate);
            }
            let users = u64::from(day) * scenario.devices_per_variant_per_day;
            let counts = counts(scenario, &decide.promote.goal, users, &conversions);
            let report = analyze_without_posteriors(&counts, settings)
                .expect("the simulated counts are valid");
            let evaluation = evaluate(
                Inputs {
                    decide,
                    report: &report,
                    upstream: &no_upstream,
                    run_started_ms: START_MS,
                    now_ms: START_MS + u64::from(day) * DAY_MS,
                },
                &state,
            );
            state = evaluation.state;
            let mut promoted = None;
            for decision in evaluation.decisions {
                *summary.decisions.entry(decision.kind).or_default() += 1;
                if decision.kind == Kind::Promote {
                    promoted = decision.variant;
                }
            }
            if let Some(variant) = promoted {
                summary.promotions.push(Promotion { variant, day });
                break;
            }
        }
    }
    summary
}

/// The number of `n` devices converting at `rate`, drawn exactly by inversion
/// (Kachitvichyanukul & Schmeiser's BINV): one uniform `u`, and the smallest k with
/// P(X ≤ k) > u, the probabilities from P(0) = qⁿ and P(k+1) = P(k)·(n−k)/(k+1)·p/q. About
/// n·p steps instead of a uniform per device. `n` is taken in chunks small enough that
/// qⁿ stays far from underflow (a sum of independent binomials of one rate is binomial).
/// The only inexactness is the rounding of the running sum: when it stops short of 1 and
/// `u` lies above it (a chance near 1e-13), the draw is the chunk's maximum.
fn binomial(random: &mut SplitMix, n: u64, rate: f64) -> u64 {
    if rate <= 0.0 {
        return 0;
    }
    if rate >= 1.0 {
        return n;
    }
    let q = 1.0 - rate;
    // q^chunk ≥ e^−600; f64's normal range ends near e^−708.
    let chunk = ((600.0 / -q.ln()).floor() as u64).clamp(1, n.max(1));
    let mut total = 0;
    let mut left = n;
    while left > 0 {
        let m = left.min(chunk);
        let mut probability = q.powf(m as f64);
        let mut cumulative = probability;
        let u = random.next_f64();
        let mut k = 0;
        while u >= cumulative && k < m {
            probability *= (m - k) as f64 / (k + 1) as f64 * (rate / q);
            k += 1;
            cumulative += probability;
        }
        total += k;
        left -= m;
    }
    total
}

/// The run's totals in the format `analyze` reads: `users` devices per variant, the
/// control first, and their conversions on `goal`.
fn counts(scenario: &Scenario, goal: &str, users: u64, conversions: &[u64]) -> Counts {
    let mut variants = crate::stats::analysis::indexmap_like::OrderedMap::default();
    for ((name, _), &converted) in scenario.variants.iter().zip(conversions) {
        let goals = BTreeMap::from([(
            goal.to_string(),
            GoalCounts {
                conversions: converted,
                value_sum: None,
                value_sum_sq: None,
            },
        )]);
        variants.insert(name.clone(), VariantCounts { users, goals });
    }
    Counts {
        experiment: "simulated".to_string(),
        control: None,
        variants,
        weights: None,
        periods: Vec::new(),
    }
}

#[cfg(test)]
#[path = "decide_simulation_tests.rs"]
mod tests;
