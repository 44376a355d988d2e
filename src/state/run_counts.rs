//! One run's counts from this process's count book, in the analysis' shape (`Counts`,
//! periods included). The results API, the admin page and the decisions of an experiment
//! with `counts: local` all read a run through here, so they analyse the same numbers.

use std::collections::BTreeMap;

use crate::config::Experiment;
use crate::counting::book::{CountBook, GoalTotals, RunCounts};
use crate::state::runs::Run;
use crate::stats::analysis::{self, Counts, GoalCounts, PeriodCounts, VariantCounts};

/// The counts of `run` of `experiment` (all zero for `None`: never active), and the run's
/// counters over time (their history up to `now_ms`, for the charts).
pub fn local(
    book: &CountBook,
    experiment: &Experiment,
    run: Option<&Run>,
    now_ms: u64,
) -> (Counts, RunCounts) {
    let key = experiment.key.as_str();
    let history = match run {
        Some(run) => book.run(key, run.number, now_ms),
        None => RunCounts::default(),
    };
    let mut variants = analysis::indexmap_like::OrderedMap::default();
    for v in &experiment.variants {
        let counted = history.variants.get(&v.name);
        let goals: BTreeMap<String, GoalTotals> = counted
            .map(|c| c.goals.iter().map(|(g, c)| (g.clone(), c.totals)).collect())
            .unwrap_or_default();
        let users = counted.map_or(0, |c| c.totals.assigned);
        variants.insert(v.name.clone(), variant_counts(experiment, &goals, users));
    }
    // The designed split: the config's weights, or with periods, the current period's
    // (what the run's devices were hashed by; the analysis stratifies with each period's).
    let weights: BTreeMap<String, f64> = match run.and_then(|r| r.current_period()) {
        Some(period) if period.weights.len() == experiment.variants.len() => period
            .weights
            .iter()
            .map(|(name, &w)| (name.clone(), w as f64))
            .collect(),
        _ => experiment
            .variants
            .iter()
            .map(|v| (v.name.clone(), v.weight as f64))
            .collect(),
    };
    let periods = match run {
        Some(run) => period_counts(book, key, run, experiment),
        None => Vec::new(),
    };
    let counts = Counts {
        experiment: key.to_string(),
        control: Some(experiment.control.clone()),
        variants,
        weights: Some(weights),
        periods,
    };
    (counts, history)
}

/// Each period of `run`: its shares, a bandit's inputs, and the devices assigned in it
/// with their conversions (zeros for variants without any), in the analysis' shape.
fn period_counts(
    book: &CountBook,
    key: &str,
    run: &Run,
    experiment: &crate::config::Experiment,
) -> Vec<PeriodCounts> {
    let mut counted = book.periods(key, run.number);
    run.periods
        .iter()
        .map(|period| {
            let mut in_period = counted.remove(&period.number).unwrap_or_default();
            let counts = experiment
                .variants
                .iter()
                .map(|v| {
                    let totals = in_period.remove(&v.name).unwrap_or_default();
                    (
                        v.name.clone(),
                        variant_counts(experiment, &totals.goals, totals.assigned),
                    )
                })
                .collect();
            PeriodCounts {
                number: period.number,
                started_at: Some(period.started_at.clone()),
                shares: period.shares(),
                inputs: period.inputs.clone(),
                counts,
            }
        })
        .collect()
}

/// A variant's counts in the analysis' shape: every goal of the experiment, value sums
/// for value goals.
fn variant_counts(
    experiment: &crate::config::Experiment,
    goals: &BTreeMap<String, GoalTotals>,
    users: u64,
) -> VariantCounts {
    let goals = experiment
        .goals
        .iter()
        .map(|goal| {
            let totals = goals.get(&goal.name).copied().unwrap_or_default();
            let value = goal.value.is_some();
            (
                goal.name.clone(),
                GoalCounts {
                    conversions: totals.conversions,
                    value_sum: value.then_some(totals.value_sum),
                    value_sum_sq: value.then_some(totals.value_sum_sq),
                },
            )
        })
        .collect();
    VariantCounts { users, goals }
}
