//! Automated decisions, as a rule: an experiment's `decide` settings, its
//! analysis, its upstream figures of the last window and the state carried from the last
//! evaluation in; the decisions of this evaluation and the next state out. Pure: no
//! clock (times are Unix ms passed in), no I/O, no config parsing, no metrics. Applying a
//! decision (`act` mode), recording it and notifying are the caller's.
//!
//! # When
//!
//! Evaluations happen at Unix-epoch multiples of `every` ([`due`], the same boundaries as
//! a bandit's updates), so replicas reading the same counts evaluate at the same instant
//! and reach the same decisions. The caller passes that boundary as `now_ms`. Reading
//! Prometheus, a replica that fell behind evaluates the boundaries it missed in order
//! ([`due_in_order`]); reading its own counters, which it cannot read in the past, it
//! evaluates the latest.
//!
//! # The rules, in the order they are applied (the precedence)
//!
//! Nothing at all happens (not even breach counting) when:
//! - a human changed the experiment's state or weights after a decision of this run
//!   ([`DecisionState::human_changed`]): that change is respected to the end of the run;
//! - the run is younger than one `every`: its first window is partial.
//!
//! Then, each decision firing at most once per run, kind and variant
//! ([`DecisionState::fired`]; the caller starts a fresh [`DecisionState`] with each run):
//!
//! 1. **SRM** (`guardrails.srm: true`): the report's `srm_p_value` (stratified by period
//!    when the run has periods) below [`SRM_THRESHOLD`] → [`Action::Freeze`], about the
//!    experiment (no variant). Never a rollback. Whether or not `srm` is on, a flagged
//!    sample ratio blocks promotion at that evaluation (the analysis calls no winner
//!    then either), and once a freeze has fired no promotion happens in the run.
//! 2. **Guardrails**, per variant other than the control, `errors` then `latency_p95`:
//!    the variant's figure above `max_ratio` × the control's, with at least
//!    `min_requests` requests in the window for both, is a breach. A breach adds one to
//!    the (variant, guardrail) count, a good window resets it to 0, and a window where
//!    either side has fewer than `min_requests` (or, for latency, no p95) neither counts
//!    nor resets: too little traffic says nothing either way, and an outage of traffic
//!    must not wipe a streak. At `failures` consecutive breaches → `guardrails.action`
//!    (`rollback`: [`Action::Rollback`], the rollout of the control; `pause`:
//!    [`Action::Pause`] of that variant). The error rate is errors / requests, errors
//!    being the upstream's 5xx and no-response (the caller leaves out client-caused
//!    failures); with a control at 0 errors any error of the variant is above the ratio.
//! 3. **Promote**: on `promote.goal`, a variant whose always-valid (sequential),
//!    Holm-adjusted p-value is below 1 − `confidence` and whose rate is above the
//!    control's, the run at least `min_duration` old, every variant (the control too;
//!    not one whose guardrail fired, which a pause starves of new devices) with at least
//!    `min_devices` devices, SRM not flagged (see 1.), no guardrail breach streak in
//!    progress for any variant (a count above 0 after this evaluation; a variant whose
//!    guardrail decision already fired, a paused one, no longer holds the others back),
//!    no guardrail decision at this evaluation, and no guardrail decision ever fired for
//!    that variant in the run → [`Action::Rollout`] of it. At most one promotion per
//!    evaluation: among several qualifying variants the highest rate (then the first in
//!    the report's order).
//! 4. **Timeout**: the run at least `max_duration` old, every variant with at least
//!    `min_devices` devices (as for a promotion; the contract's `min_devices` gates "a
//!    promotion or a timeout decision") → `on_timeout`: [`Action::Stop`],
//!    [`Action::Keep`], or for `rollout_best` [`Action::Rollout`] of the variant with the
//!    highest rate on the promote goal among those no guardrail decision was about, the
//!    control if none has a rate above the control's or the sample ratio is flagged now
//!    or froze the run (rates of a mismatched split are not to be trusted). About the
//!    experiment (no variant). Left out at an evaluation where a promotion or a rollback
//!    fired: the run already ends on that.
//!
//! `mode` (notify | act) only decides later whether a decision is applied; the
//! evaluation copies it into each decision and otherwise ignores it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::experiments::bandit::boundaries;
use crate::stats::analysis::{Report, VariantReport, SRM_THRESHOLD};

// The settings are parsed by the config layer, which cannot import this one.
pub use crate::config::{Decide, Guardrail, GuardrailAction, Guardrails, Mode, OnTimeout, Promote};

/// A variant's upstream figures in the window since the last evaluation (built by
/// `stats::upstream`, beside the p95 it holds).
pub use crate::stats::upstream::UpstreamWindow;

/// What one evaluation reads. `report` is the run's analysis at `promote.confidence`;
/// `upstream` holds the variants' windows (a variant missing is an empty window).
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub decide: &'a Decide,
    pub report: &'a Report,
    pub upstream: &'a BTreeMap<String, UpstreamWindow>,
    pub run_started_ms: u64,
    pub now_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Promote,
    GuardrailErrors,
    GuardrailLatency,
    Srm,
    Timeout,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Promote,
        Kind::GuardrailErrors,
        Kind::GuardrailLatency,
        Kind::Srm,
        Kind::Timeout,
    ];

    /// The `kind` of a record and of `abproxy_decisions_total` (as serde writes it).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Promote => "promote",
            Kind::GuardrailErrors => "guardrail_errors",
            Kind::GuardrailLatency => "guardrail_latency",
            Kind::Srm => "srm",
            Kind::Timeout => "timeout",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Everyone to this variant.
    Rollout(String),
    /// Everyone back to the control (a rollout of the control), named here.
    Rollback(String),
    /// This variant's share of new devices → 0.
    Pause(String),
    /// No promotion, no bandit update.
    Freeze,
    /// The experiment → inactive.
    Stop,
    Keep,
}

impl Action {
    pub fn describe(&self) -> String {
        match self {
            Action::Rollout(v) => format!("rollout of {v}"),
            Action::Rollback(c) => format!("rollback (rollout of {c})"),
            Action::Pause(v) => format!("pause of {v}"),
            Action::Freeze => "freeze".into(),
            Action::Stop => "stop".into(),
            Action::Keep => "keep".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub kind: Kind,
    /// The variant the rule is about; `None` for the experiment-wide SRM and timeout.
    pub variant: Option<String>,
    pub mode: Mode,
    pub action: Action,
    pub reason: String,
    /// The figures the rule used.
    pub evidence: serde_json::Value,
}

/// A (kind, variant) that already fired in this run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Fired {
    pub kind: Kind,
    pub variant: Option<String>,
}

/// Consecutive breaches of one variant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breaches {
    pub errors: u32,
    pub latency_p95: u32,
}

/// What is carried from one evaluation of a run to the next (serialisable, so that the
/// caller can keep it durable).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DecisionState {
    pub breaches: BTreeMap<String, Breaches>,
    pub fired: BTreeSet<Fired>,
    /// Set by the caller when a human changes the state or weights after a decision.
    pub human_changed: bool,
    pub last_eval_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub decisions: Vec<Decision>,
    pub state: DecisionState,
}

/// The evaluation due now, if any: the last boundary of `every` (since the Unix epoch)
/// at or before `now_ms`, when no evaluation happened at it or later. The caller
/// evaluates with that boundary as its time, so that replicas agree.
pub fn due(every: Duration, last_eval_ms: Option<u64>, now_ms: u64) -> Option<u64> {
    let (boundary, _) = boundaries(every, now_ms);
    match last_eval_ms {
        Some(last) if last >= boundary => None,
        _ => Some(boundary),
    }
}

/// How far behind [`due_in_order`] catches up, in boundaries: further behind (a replica
/// down for long), it jumps to the latest, as [`due`] does.
pub const CATCH_UP_BOUNDARIES: u64 = 100;

/// The evaluation due now when the counts can be read at any past instant (`counts:
/// prometheus`): the first boundary after the last one evaluated, not the latest, so
/// that a replica that fell behind (stalled, or slow answers) still evaluates every
/// boundary the others evaluated, in order, and its breach streaks count the same
/// windows (skipping one would have it fire a boundary later, under another record id).
/// Up to [`CATCH_UP_BOUNDARIES`] behind; `None` as [`due`].
pub fn due_in_order(every: Duration, last_eval_ms: Option<u64>, now_ms: u64) -> Option<u64> {
    let latest = due(every, last_eval_ms, now_ms)?;
    let every_ms = (every.as_millis() as u64).max(1);
    match last_eval_ms {
        Some(last) if latest - last <= CATCH_UP_BOUNDARIES * every_ms => {
            Some(boundaries(every, last).1)
        }
        _ => Some(latest),
    }
}

/// One evaluation: see the module documentation for the rules and their order.
pub fn evaluate(inputs: Inputs, state: &DecisionState) -> Evaluation {
    let mut next = state.clone();
    next.last_eval_ms = Some(inputs.now_ms);
    let d = inputs.decide;
    let age = Duration::from_millis(inputs.now_ms.saturating_sub(inputs.run_started_ms));
    if state.human_changed || age < d.every {
        return Evaluation {
            decisions: Vec::new(),
            state: next,
        };
    }
    let mut decisions = Vec::new();
    let mut fire = |next: &mut DecisionState, decision: Decision| {
        let key = Fired {
            kind: decision.kind,
            variant: decision.variant.clone(),
        };
        if next.fired.insert(key) {
            decisions.push(decision);
        }
    };
    let report = inputs.report;
    let control = report.control.as_str();

    // 1. SRM.
    let srm_flagged = report.srm_p_value.filter(|&p| p < SRM_THRESHOLD);
    if let (true, Some(p)) = (d.guardrails.srm, srm_flagged) {
        fire(
            &mut next,
            Decision {
                kind: Kind::Srm,
                variant: None,
                mode: d.mode,
                action: Action::Freeze,
                reason: format!(
                    "Sample-ratio mismatch (p = {p:.2e} < {SRM_THRESHOLD}): the split of devices is not the designed one; frozen (no promotion, no bandit update), not rolled back"
                ),
                evidence: json!({"srm_p_value": p, "threshold": SRM_THRESHOLD,
                                 "stratified": report.stratified}),
            },
        );
    }

    // 2. Guardrails.
    let window = |v: &str| inputs.upstream.get(v).copied().unwrap_or_default();
    let control_window = window(control);
    let mut guardrail_fired = false;
    let mut rollback_fired = false;
    for variant in variant_names(report).filter(|v| *v != control) {
        let w = window(variant);
        let checks = [
            (Kind::GuardrailErrors, d.guardrails.errors),
            (Kind::GuardrailLatency, d.guardrails.latency_p95),
        ];
        for (kind, guardrail) in checks {
            let Some(g) = guardrail else { continue };
            let Some(check) = check(kind, g, w, control_window) else {
                continue; // too few requests (or no p95): neither counts nor resets
            };
            let b = next.breaches.entry(variant.to_string()).or_default();
            let count = match kind {
                Kind::GuardrailErrors => &mut b.errors,
                _ => &mut b.latency_p95,
            };
            *count = if check.breached { *count + 1 } else { 0 };
            let count = *count;
            if check.breached && count >= g.failures {
                let action = match d.guardrails.action {
                    GuardrailAction::Rollback => Action::Rollback(control.to_string()),
                    GuardrailAction::Pause => Action::Pause(variant.to_string()),
                };
                let before = next.fired.len();
                rollback_fired |= matches!(action, Action::Rollback(_));
                fire(
                    &mut next,
                    Decision {
                        kind,
                        variant: Some(variant.to_string()),
                        mode: d.mode,
                        reason: format!(
                            "{variant}'s {} ({}) above {} × {control}'s ({}) for {count} consecutive evaluations: {}",
                            check.what,
                            check.shown_variant,
                            g.max_ratio,
                            check.shown_control,
                            action.describe()
                        ),
                        action,
                        evidence: json!({
                            "variant": check.variant_figure, "control": check.control_figure,
                            "max_ratio": g.max_ratio, "consecutive": count,
                            "failures": g.failures,
                            "requests": {"variant": w.requests, "control": control_window.requests},
                            "errors": {"variant": w.errors, "control": control_window.errors},
                        }),
                    },
                );
                guardrail_fired |= next.fired.len() > before;
            }
        }
    }
    // Only a rollback that fired now ends the run; one fired earlier was already handled.
    rollback_fired &= guardrail_fired;

    // 3. Promote.
    let goal = report.goals.get(&d.promote.goal);
    // A variant whose guardrail fired (paused: it gets no new devices) is not waited for.
    let devices_short = variant_names(report)
        .filter(|v| !guardrail_fired_for(&next.fired, v))
        .map(|v| (v, report_users(report, v)))
        .find(|(_, users)| *users < d.min_devices);
    // A variant whose guardrail already fired (paused, say) was dealt with: its streak
    // does not hold the others back.
    let streak_in_progress = next
        .breaches
        .iter()
        .any(|(v, b)| (b.errors > 0 || b.latency_p95 > 0) && !guardrail_fired_for(&next.fired, v));
    let srm_frozen = srm_flagged.is_some()
        || next.fired.contains(&Fired {
            kind: Kind::Srm,
            variant: None,
        });
    let mut promoted = false;
    if let Some(goal) = goal {
        let alpha = 1.0 - d.promote.confidence;
        let control_row = goal.variants.get(control).cloned().unwrap_or_default();
        let eligible = age >= d.min_duration
            && devices_short.is_none()
            && !srm_frozen
            && !streak_in_progress
            && !guardrail_fired;
        let best = goal
            .variants
            .iter()
            .filter(|(v, row)| {
                v.as_str() != control
                    && row.rate > control_row.rate
                    && row.p_value_sequential_holm.is_some_and(|p| p < alpha)
                    && !guardrail_fired_for(&next.fired, v)
            })
            .fold(
                None::<(&String, &VariantReport)>,
                |best, (v, row)| match best {
                    Some((_, b)) if b.rate >= row.rate => best,
                    _ => Some((v, row)),
                },
            );
        if let (true, Some((variant, row))) = (eligible, best) {
            let before = next.fired.len();
            fire(
                &mut next,
                Decision {
                    kind: Kind::Promote,
                    variant: Some(variant.clone()),
                    mode: d.mode,
                    action: Action::Rollout(variant.clone()),
                    reason: format!(
                        "{variant} beats {control} on {}: {:.2}% vs {:.2}%, always-valid p (Holm) {} under {alpha:.3}: rollout of {variant}",
                        d.promote.goal,
                        100.0 * row.rate,
                        100.0 * control_row.rate,
                        shown_p(row.p_value_sequential_holm.unwrap_or(1.0)),
                    ),
                    evidence: json!({
                        "goal": d.promote.goal, "confidence": d.promote.confidence,
                        "p_value_sequential_holm": row.p_value_sequential_holm,
                        "ci_low_sequential": row.ci_low_sequential,
                        "ci_high_sequential": row.ci_high_sequential,
                        "rate": {"variant": row.rate, "control": control_row.rate},
                        "devices": devices(report),
                        "srm_p_value": report.srm_p_value,
                    }),
                },
            );
            promoted = next.fired.len() > before;
        }
    }

    // 4. Timeout.
    let timed_out = d.max_duration.is_some_and(|max| age >= max);
    if timed_out && devices_short.is_none() && !promoted && !rollback_fired {
        let max = d.max_duration.unwrap_or_default();
        let (action, why) = match d.on_timeout {
            OnTimeout::Stop => (Action::Stop, "stop".to_string()),
            OnTimeout::Keep => (Action::Keep, "keep as is".to_string()),
            OnTimeout::RolloutBest => {
                let best = if srm_frozen {
                    None
                } else {
                    goal.and_then(|g| best_over_control(g, control, &next.fired))
                };
                match best {
                    Some(v) => (
                        Action::Rollout(v.clone()),
                        format!("rollout of {v}, the highest rate on {}", d.promote.goal),
                    ),
                    None => (
                        Action::Rollout(control.to_string()),
                        format!(
                            "rollout of {control}: no variant has a higher rate on {}{}",
                            d.promote.goal,
                            if srm_frozen {
                                " that can be trusted (sample-ratio mismatch)"
                            } else {
                                ""
                            }
                        ),
                    ),
                }
            }
        };
        let rates: BTreeMap<&String, f64> = goal
            .map(|g| g.variants.iter().map(|(v, r)| (v, r.rate)).collect())
            .unwrap_or_default();
        fire(
            &mut next,
            Decision {
                kind: Kind::Timeout,
                variant: None,
                mode: d.mode,
                action,
                reason: format!(
                    "The run is older than max_duration ({}s): {why}",
                    max.as_secs()
                ),
                evidence: json!({
                    "age_ms": age.as_millis() as u64, "max_duration_ms": max.as_millis() as u64,
                    "goal": d.promote.goal, "rates": rates, "devices": devices(report),
                    "srm_p_value": report.srm_p_value,
                }),
            },
        );
    }

    Evaluation {
        decisions,
        state: next,
    }
}

/// Whether a guardrail decision about `variant` fired in the run.
fn guardrail_fired_for(fired: &BTreeSet<Fired>, variant: &str) -> bool {
    fired.iter().any(|f| {
        matches!(f.kind, Kind::GuardrailErrors | Kind::GuardrailLatency)
            && f.variant.as_deref() == Some(variant)
    })
}

/// A guardrail's reading of one window.
struct Check {
    breached: bool,
    what: &'static str,
    variant_figure: f64,
    control_figure: f64,
    shown_variant: String,
    shown_control: String,
}

/// `None` when the window says nothing (too few requests on either side, or no p95).
fn check(kind: Kind, g: Guardrail, v: UpstreamWindow, c: UpstreamWindow) -> Option<Check> {
    if v.requests < g.min_requests || c.requests < g.min_requests || v.requests == 0 {
        return None;
    }
    let (what, vf, cf, shown): (_, f64, f64, fn(f64) -> String) = match kind {
        Kind::GuardrailErrors => (
            "error rate",
            v.errors as f64 / v.requests as f64,
            c.errors as f64 / c.requests as f64,
            |x| format!("{:.2}%", 100.0 * x),
        ),
        _ => (
            "p95 upstream latency",
            v.p95_seconds?,
            c.p95_seconds?,
            |x| format!("{x:.3}s"),
        ),
    };
    Some(Check {
        breached: vf > g.max_ratio * cf,
        what,
        variant_figure: vf,
        control_figure: cf,
        shown_variant: shown(vf),
        shown_control: shown(cf),
    })
}

/// The variant with the highest rate, when it is above the control's (first in the
/// report's order on a tie), among those no guardrail decision was about.
fn best_over_control(
    goal: &crate::stats::analysis::GoalReport,
    control: &str,
    fired: &BTreeSet<Fired>,
) -> Option<String> {
    let control_rate = goal.variants.get(control)?.rate;
    goal.variants
        .iter()
        .filter(|(v, row)| {
            v.as_str() != control && row.rate > control_rate && !guardrail_fired_for(fired, v)
        })
        .fold(None::<(&String, f64)>, |best, (v, row)| match best {
            Some((_, r)) if r >= row.rate => best,
            _ => Some((v, row.rate)),
        })
        .map(|(v, _)| v.clone())
}

/// The variants, in the report's order (every goal lists them all; a run without goals
/// has none to decide on).
fn variant_names(report: &Report) -> impl Iterator<Item = &str> {
    report
        .goals
        .values()
        .next()
        .into_iter()
        .flat_map(|g| g.variants.keys().map(String::as_str))
}

fn report_users(report: &Report, variant: &str) -> u64 {
    report
        .goals
        .values()
        .find_map(|g| g.variants.get(variant).map(|r| r.users))
        .unwrap_or(0)
}

fn devices(report: &Report) -> BTreeMap<&str, u64> {
    variant_names(report)
        .map(|v| (v, report_users(report, v)))
        .collect()
}

/// `= 0.012` or `< 0.001`, to follow "p" in a sentence.
fn shown_p(p: f64) -> String {
    let shown = crate::stats::analysis::format_p(p);
    if shown.starts_with('<') {
        shown
    } else {
        format!("= {shown}")
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
