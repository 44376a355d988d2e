//! What the admin page shows of a run's periods and of an experiment's bandit: the
//! bandit's status line and its warning when the counts could not be read, the shares
//! of new devices over the periods, each variant's P(best) (now, and at each bandit
//! update), and the note that the analysis is stratified. Pure: results in, markup and
//! numbers out; the charts themselves are drawn by `period_chart`.

use std::collections::BTreeMap;

use super::period_chart::{self, Step, StepLine};
use crate::admin::results::ExperimentResults;
use crate::config::{BanditAlgorithm, BanditCounts, State};
use crate::stats::analysis::{ArmInputs, Report};
use crate::stats::bandit::{thompson, ArmCounts};
use crate::util::html::escape;
use crate::util::time::{parse_rfc3339 as unix_ms, rfc3339};

/// How many periods the run shown has: the results' counts per period, or the run
/// book's periods where the counts carry none.
pub fn period_count(results: &ExperimentResults) -> usize {
    let booked = results.run.as_ref().map_or(0, |r| r.periods.len());
    results.counts.periods.len().max(booked)
}

/// Whether to draw the shares over time: when they moved (two periods or more), or when
/// a bandit may move them.
pub fn shows_shares(results: &ExperimentResults) -> bool {
    results.bandit.is_some() || period_count(results) >= 2
}

/// Each period's shares, one value per variant in `variants`' order (a variant a period
/// does not name got no new devices in it: 0), oldest first. From the results' counts
/// per period; from the run book's periods (their weights' ratios) where the counts
/// carry none. A period without a readable start is left out.
pub fn share_steps(results: &ExperimentResults, variants: &[&str]) -> Vec<Step> {
    let mut steps: Vec<Step> = if !results.counts.periods.is_empty() {
        let booked_start = |number: u32| {
            results
                .run
                .as_ref()
                .and_then(|r| r.periods.iter().find(|p| p.number == number))
                .map(|p| p.started_at.as_str())
        };
        results
            .counts
            .periods
            .iter()
            .filter_map(|p| {
                let start = p.started_at.as_deref().or(booked_start(p.number))?;
                Some(Step {
                    number: p.number,
                    start_ms: unix_ms(start)?,
                    values: variants
                        .iter()
                        .map(|v| p.shares.get(*v).copied().unwrap_or(0.0))
                        .collect(),
                })
            })
            .collect()
    } else {
        let booked = results.run.as_ref().map(|r| r.periods.as_slice());
        booked
            .unwrap_or_default()
            .iter()
            .filter_map(|p| {
                let shares = p.shares();
                Some(Step {
                    number: p.number,
                    start_ms: unix_ms(&p.started_at)?,
                    values: variants
                        .iter()
                        .map(|v| shares.get(*v).copied().unwrap_or(0.0))
                        .collect(),
                })
            })
            .collect()
    };
    steps.sort_by_key(|s| (s.start_ms, s.number));
    steps
}

/// P(variant has the highest rate) under Beta(1 + s, 1 + n − s) posteriors, for
/// variants' `(users, conversions)`: Thompson's exact quadrature (`stats::bandit`), fed
/// in name order as the bandit feeds it, so the page shows what the bandit computes.
fn p_best_of(arms: BTreeMap<&str, ArmCounts>) -> BTreeMap<String, f64> {
    let counts: Vec<ArmCounts> = arms.values().copied().collect();
    arms.keys()
        .map(|name| name.to_string())
        .zip(thompson(&counts))
        .collect()
}

/// The goal P(best) is shown for: the bandit's (its reward), else the first goal.
pub fn p_best_goal<'a>(results: &'a ExperimentResults, report: &'a Report) -> Option<&'a str> {
    match &results.bandit {
        Some((bandit, _)) if report.goals.contains_key(&bandit.goal) => Some(&bandit.goal),
        _ => report.goals.keys().next().map(String::as_str),
    }
}

/// Each variant's P(best) on `goal` from the run's totals (devices and conversions,
/// summed over the periods: what the bandit reads).
pub fn p_best(results: &ExperimentResults, goal: &str) -> BTreeMap<String, f64> {
    let arms = results
        .counts
        .variants
        .iter()
        .map(|(name, v)| {
            let conversions = v.goals.get(goal).map_or(0, |g| g.conversions);
            (
                name.as_str(),
                ArmCounts {
                    conversions,
                    users: v.users,
                },
            )
        })
        .collect();
    p_best_of(arms)
}

/// P(best) at each bandit update: one step per period computed from counts (its
/// `inputs`: the results' counts per period, or the run book's where those carry
/// none, as in [`share_steps`]), values in `variants`' order.
pub fn p_best_steps(results: &ExperimentResults, variants: &[&str]) -> Vec<Step> {
    let starts: BTreeMap<u32, u64> = share_steps(results, variants)
        .iter()
        .map(|s| (s.number, s.start_ms))
        .collect();
    let updates: Vec<(u32, &BTreeMap<String, ArmInputs>)> = if results.counts.periods.is_empty() {
        let booked = results.run.as_ref().map(|r| r.periods.as_slice());
        booked
            .unwrap_or_default()
            .iter()
            .filter_map(|p| Some((p.number, p.inputs.as_ref()?)))
            .collect()
    } else {
        results
            .counts
            .periods
            .iter()
            .filter_map(|p| Some((p.number, p.inputs.as_ref()?)))
            .collect()
    };
    let mut steps: Vec<Step> = updates
        .into_iter()
        .filter_map(|(number, inputs)| {
            let arms = variants
                .iter()
                .map(|v| {
                    let ArmInputs { users, conversions } =
                        inputs.get(*v).copied().unwrap_or(ArmInputs {
                            users: 0,
                            conversions: 0,
                        });
                    (*v, ArmCounts { conversions, users })
                })
                .collect();
            let best = p_best_of(arms);
            Some(Step {
                number,
                start_ms: *starts.get(&number)?,
                values: variants.iter().map(|v| best[*v]).collect(),
            })
        })
        .collect();
    steps.sort_by_key(|s| (s.start_ms, s.number));
    steps
}

/// The charts over the periods, for the charts row: the shares of new devices (see
/// [`shows_shares`]) and, once a bandit has updated, P(best) at each update. Empty when
/// neither applies.
pub fn period_charts(
    results: &ExperimentResults,
    lines: &[StepLine],
    domain: (u64, u64),
) -> String {
    if !shows_shares(results) {
        return String::new();
    }
    let names: Vec<&str> = lines.iter().map(|l| l.name).collect();
    // The periods widen the axis if they start before the run's start (a clock step).
    let steps = share_steps(results, &names);
    let domain = steps
        .iter()
        .fold(domain, |(a, b), s| (a.min(s.start_ms), b.max(s.start_ms)));
    let mut out = period_chart::step_chart(&period_chart::StepChart {
        title: "Shares of new devices",
        y_label: "share of new devices",
        values_are: "shares",
        lines,
        steps: &steps,
        domain,
        notes: &[
            "Each step is a period: the shares new devices were hashed by, from its start to the next.".to_string(),
            "Devices keep the variant they got; hover a step for its numbers.".to_string(),
        ],
        empty: "no periods yet",
    });
    let best = p_best_steps(results, &names);
    if !best.is_empty() {
        let goal = results.bandit.as_ref().map_or("", |(b, _)| b.goal.as_str());
        out.push_str(&period_chart::step_chart(&period_chart::StepChart {
            title: &format!("P(best) at each bandit update (goal {goal})"),
            y_label: "P(best)",
            values_are: "P(best)",
            lines,
            steps: &best,
            domain,
            notes: &["From the counts each update read (the period's inputs).".to_string()],
            empty: "no update yet",
        }));
    }
    out
}

fn algorithm_name(algorithm: BanditAlgorithm) -> String {
    match algorithm {
        BanditAlgorithm::Thompson => "Thompson sampling".to_string(),
        BanditAlgorithm::Ucb1 => "UCB1".to_string(),
        BanditAlgorithm::EpsilonGreedy { epsilon } => format!("ε-greedy (ε = {epsilon})"),
    }
}

/// `12:00:00 UTC` on the day of `now_ms`, `2026-11-30 12:00:00 UTC` on another; the
/// text as given if it is not RFC 3339.
fn clock(rfc3339_text: &str, now_ms: u64) -> String {
    let Some(ms) = unix_ms(rfc3339_text) else {
        return escape(rfc3339_text);
    };
    let text = rfc3339(ms);
    let shown = if text[..10] == rfc3339(now_ms)[..10] {
        format!("{} UTC", &text[11..19])
    } else {
        format!("{} {} UTC", &text[..10], &text[11..19])
    };
    format!(r#"<time datetime="{text}">{shown}</time>"#)
}

/// "Thompson sampling on `click`, updated every 1h; last update 12:00:00 UTC: period 4
/// started; next 13:00:00 UTC", its settings under it, and a warning box while the
/// counts cannot be read. Empty without a bandit.
pub fn status(results: &ExperimentResults, state: State, now_ms: u64) -> String {
    let Some((bandit, status)) = &results.bandit else {
        return String::new();
    };
    let mut line = format!(
        "{} on <code>{}</code>, updated every {}",
        algorithm_name(bandit.algorithm),
        escape(&bandit.goal),
        humantime::format_duration(bandit.update_every),
    );
    if state == State::Active {
        match (&status.last_at, &status.last_outcome) {
            (Some(at), Some(outcome)) => line.push_str(&format!(
                "; last update {}: {}",
                clock(at, now_ms),
                escape(outcome)
            )),
            (Some(at), None) => line.push_str(&format!("; last update {}", clock(at, now_ms))),
            (None, _) => line.push_str("; no update yet"),
        }
        if let Some(next) = &status.next_at {
            line.push_str(&format!("; next {}", clock(next, now_ms)));
        }
        // The updater works on the current run; an earlier one is shown.
        if let Some(current) = results.current_run.filter(|_| !results.shows_current_run()) {
            line.push_str(&format!(" (in run {current}, the current one)"));
        }
    } else {
        let state = match state {
            State::Rollout => "in rollout",
            _ => "inactive",
        };
        line.push_str(&format!("; not updating while the experiment is {state}"));
    }
    let counts = match bandit.counts {
        BanditCounts::Local => "this process's counts",
        BanditCounts::Prometheus => "every replica's counts, from Prometheus",
    };
    let mut out = format!(
        r#"<p class="bandit">{line}</p><p class="muted bandit-settings">first update once every variant has {} devices in the run · every variant keeps at least {}% of new devices · reads {counts}</p>"#,
        bandit.burn_in,
        percent(bandit.min_share),
    );
    if let Some(problem) = status.problem.as_ref().filter(|_| state == State::Active) {
        out.push_str(&format!(
            r#"<p class="notice bandit-problem" role="alert"><strong>The bandit could not update:</strong> {}</p>"#,
            escape(problem)
        ));
    }
    out
}

/// `1`, `0.5`, `12.25`: a share as a percentage without trailing zeros.
fn percent(share: f64) -> String {
    let text = format!("{:.4}", 100.0 * share);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The note under a results table when its rates are stratified by period. Empty with
/// one period or none.
pub fn stratified_note(results: &ExperimentResults) -> String {
    match results.counts.periods.len() {
        n @ 2.. => format!(
            r#"<p class="muted stratified">Stratified over {n} periods (the shares moved during the run; pooled rates would be biased).</p>"#
        ),
        _ => String::new(),
    }
}
