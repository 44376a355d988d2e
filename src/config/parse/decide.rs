//! An experiment's `decide`: `mode`, `every`, `min_duration`, `min_devices`,
//! `max_duration`, `on_timeout`, whose `counts` it reads, `promote` (goal, confidence)
//! and `guardrails` (action, errors, latency_p95, srm). Read after the experiment's
//! variants, goals and bandit, which it refers to.

use std::time::Duration;

use super::fields::{decimal, error, join, scalar, show_duration, Fields, Result};
use super::prometheus::counts;
use crate::config::yaml::{Key, Node, Value};
use crate::config::{
    Bandit, Decide, Goal, Guardrail, GuardrailAction, Guardrails, Mode, OnTimeout,
    PrometheusSource, Promote, Variant,
};

/// Defaults, also listed in the README's config reference.
pub const DEFAULT_MODE: Mode = Mode::Notify;
pub const DEFAULT_EVERY: Duration = Duration::from_secs(3_600);
/// Evaluations are at whole multiples of `every` since the epoch, like a bandit's
/// boundaries; under a second the replicas' clocks would disagree about which one it is.
const MIN_EVERY: Duration = Duration::from_secs(1);
pub const DEFAULT_MIN_DURATION: Duration = Duration::from_secs(7 * 86_400);
pub const DEFAULT_MIN_DEVICES: u64 = 1_000;
pub const DEFAULT_ON_TIMEOUT: OnTimeout = OnTimeout::Stop;
pub const DEFAULT_CONFIDENCE: f64 = 0.95;
pub const DEFAULT_GUARDRAIL_ACTION: GuardrailAction = GuardrailAction::Rollback;
pub const DEFAULT_ERRORS: Guardrail = Guardrail {
    max_ratio: 2.0,
    min_requests: 200,
    failures: 3,
};
pub const DEFAULT_LATENCY_P95: Guardrail = Guardrail {
    max_ratio: 1.5,
    min_requests: 200,
    failures: 3,
};
pub const DEFAULT_SRM: bool = true;
/// A billion devices, requests or windows is a typo, not a threshold.
const MAX_COUNT: u64 = 1_000_000_000;

/// `decide: { mode, every, min_duration, min_devices, max_duration, on_timeout, counts,
/// promote, guardrails }` of the experiment at `path`, with its `variants`, `goals` and
/// `bandit` already read.
pub(super) fn decide(
    key: &Key,
    node: &Node,
    path: &str,
    variants: &[Variant],
    goals: &[Goal],
    bandit: Option<&Bandit>,
    prometheus: Option<&PrometheusSource>,
) -> Result<Decide> {
    let f = Fields::new(
        node,
        path,
        key.pos,
        &[
            "mode",
            "every",
            "min_duration",
            "min_devices",
            "max_duration",
            "on_timeout",
            "counts",
            "promote",
            "guardrails",
        ],
    )?;
    if variants.len() < 2 {
        return error(
            key.pos,
            path,
            "decide compares variants with a control: it needs at least two variants",
        );
    }
    if goals.is_empty() {
        let experiment = path.trim_end_matches(".decide");
        return error(
            key.pos,
            path,
            format!("decide promotes on a goal; add one under `{experiment}.goals`"),
        );
    }

    let mode = match f.string("mode")? {
        None => DEFAULT_MODE,
        Some((_, m)) if m == "notify" => Mode::Notify,
        Some((_, m)) if m == "act" => Mode::Act,
        Some((pos, m)) => {
            return error(
                pos,
                &join(path, "mode"),
                format!("`{m}` is not one of: notify, act"),
            )
        }
    };
    let every = f.duration("every", DEFAULT_EVERY, MIN_EVERY)?;
    let min_duration = f.duration("min_duration", DEFAULT_MIN_DURATION, Duration::ZERO)?;
    let min_devices = f.whole("min_devices", DEFAULT_MIN_DEVICES, 0, MAX_COUNT)?;
    let max_duration = max_duration(&f, every, min_duration)?;
    let on_timeout = match f.string("on_timeout")? {
        None => DEFAULT_ON_TIMEOUT,
        Some((_, t)) if t == "stop" => OnTimeout::Stop,
        Some((_, t)) if t == "rollout_best" => OnTimeout::RolloutBest,
        Some((_, t)) if t == "keep" => OnTimeout::Keep,
        Some((pos, t)) => {
            return error(
                pos,
                &join(path, "on_timeout"),
                format!("`{t}` is not one of: stop, rollout_best, keep"),
            )
        }
    };
    let counts = counts(&f, "every", every, prometheus)?;
    let promote = match f.get("promote") {
        None => Promote {
            goal: default_goal(goals, bandit),
            confidence: DEFAULT_CONFIDENCE,
        },
        Some((pkey, pnode)) => promote(pkey, pnode, &f.child_path(pkey), goals, bandit)?,
    };
    let guardrails = match f.get("guardrails") {
        None => Guardrails {
            action: DEFAULT_GUARDRAIL_ACTION,
            errors: Some(DEFAULT_ERRORS),
            latency_p95: Some(DEFAULT_LATENCY_P95),
            srm: DEFAULT_SRM,
        },
        Some((gkey, gnode)) => guardrails(gkey, gnode, &f.child_path(gkey), bandit)?,
    };

    Ok(Decide {
        mode,
        every,
        min_duration,
        min_devices,
        max_duration,
        on_timeout,
        counts,
        promote,
        guardrails,
        pos: key.pos,
    })
}

/// `max_duration`, if given: at least `min_duration` (else the run would time out before
/// a promotion may happen) and longer than `every` (else no evaluation comes before it).
fn max_duration(f: &Fields, every: Duration, min_duration: Duration) -> Result<Option<Duration>> {
    let Some((key, _)) = f.get("max_duration") else {
        return Ok(None);
    };
    let max = f.duration("max_duration", Duration::ZERO, Duration::ZERO)?;
    let path = f.child_path(key);
    if max < min_duration {
        return error(
            key.pos,
            &path,
            format!(
                "`max_duration` ({}) is shorter than `min_duration` ({}): the run would time out before a promotion may happen",
                show_duration(max),
                show_duration(min_duration)
            ),
        );
    }
    if max <= every {
        return error(
            key.pos,
            &path,
            format!(
                "`max_duration` ({}) must be longer than `every` ({}): the first evaluation would already be the timeout",
                show_duration(max),
                show_duration(every)
            ),
        );
    }
    Ok(Some(max))
}

/// The bandit's goal (what it already optimises), else the experiment's first (`goals`
/// is not empty).
fn default_goal(goals: &[Goal], bandit: Option<&Bandit>) -> String {
    bandit.map_or_else(|| goals[0].name.clone(), |b| b.goal.clone())
}

/// `promote: { goal, confidence }`.
fn promote(
    key: &Key,
    node: &Node,
    path: &str,
    goals: &[Goal],
    bandit: Option<&Bandit>,
) -> Result<Promote> {
    let f = Fields::new(node, path, key.pos, &["goal", "confidence"])?;
    let goal = match f.string("goal")? {
        None => default_goal(goals, bandit),
        Some((_, g)) if goals.iter().any(|known| known.name == g) => g,
        Some((pos, g)) => {
            let known: Vec<&str> = goals.iter().map(|g| g.name.as_str()).collect();
            return error(
                pos,
                &join(&f.path, "goal"),
                format!(
                    "`{g}` is not a goal of the experiment (goals: {})",
                    known.join(", ")
                ),
            );
        }
    };
    let confidence = match f.get("confidence") {
        None => DEFAULT_CONFIDENCE,
        Some((key, node)) => {
            let path = f.child_path(key);
            let text = scalar(key, node, &path)?;
            match decimal(text) {
                Some(c) if c > 0.0 && c < 1.0 => c,
                _ => {
                    return error(
                        key.pos,
                        &path,
                        format!("`{text}` is not a number strictly between 0 and 1 (e.g. 0.95)"),
                    )
                }
            }
        }
    };
    Ok(Promote { goal, confidence })
}

/// `guardrails: { action, errors, latency_p95, srm }`.
fn guardrails(key: &Key, node: &Node, path: &str, bandit: Option<&Bandit>) -> Result<Guardrails> {
    let f = Fields::new(
        node,
        path,
        key.pos,
        &["action", "errors", "latency_p95", "srm"],
    )?;
    let action = match f.string("action")? {
        None => DEFAULT_GUARDRAIL_ACTION,
        Some((_, a)) if a == "rollback" => GuardrailAction::Rollback,
        Some((pos, a)) if a == "pause" => {
            if bandit.is_some() {
                return error(
                    pos,
                    &join(path, "action"),
                    "`pause` sets a variant's weight, and here the bandit owns the weights: use `rollback`",
                );
            }
            GuardrailAction::Pause
        }
        Some((pos, a)) => {
            return error(
                pos,
                &join(path, "action"),
                format!("`{a}` is not one of: rollback, pause"),
            )
        }
    };
    Ok(Guardrails {
        action,
        errors: guardrail(&f, "errors", DEFAULT_ERRORS)?,
        latency_p95: guardrail(&f, "latency_p95", DEFAULT_LATENCY_P95)?,
        srm: f.boolean("srm", DEFAULT_SRM)?,
    })
}

/// `errors` or `latency_p95`: `false` (off), `true` (the defaults), or a mapping giving
/// some of `max_ratio`, `min_requests` and `failures` (the others default).
fn guardrail(f: &Fields, name: &str, default: Guardrail) -> Result<Option<Guardrail>> {
    let Some((key, node)) = f.get(name) else {
        return Ok(Some(default));
    };
    let path = f.child_path(key);
    match &node.value {
        Value::Scalar(s) if s == "false" => return Ok(None),
        Value::Scalar(s) if s == "true" => return Ok(Some(default)),
        Value::Map(_) => {}
        _ => {
            return error(
                key.pos,
                &path,
                format!(
                "expected a mapping {{ max_ratio, min_requests, failures }} or `false`, found {}",
                node.kind()
            ),
            )
        }
    }
    let g = Fields::new(
        node,
        &path,
        key.pos,
        &["max_ratio", "min_requests", "failures"],
    )?;
    let max_ratio = match g.get("max_ratio") {
        None => default.max_ratio,
        Some((rkey, rnode)) => {
            let rpath = g.child_path(rkey);
            let text = scalar(rkey, rnode, &rpath)?;
            match decimal(text) {
                Some(r) if r > 1.0 => r,
                Some(_) => {
                    return error(
                        rkey.pos,
                        &rpath,
                        format!("`{text}` must be above 1: a ratio of 1 or less would flag a variant as good as the control"),
                    )
                }
                None => {
                    return error(
                        rkey.pos,
                        &rpath,
                        format!("`{text}` is not a number above 1 (e.g. 2.0)"),
                    )
                }
            }
        }
    };
    let min_requests = g.whole("min_requests", default.min_requests, 1, MAX_COUNT)?;
    let failures = g.whole("failures", default.failures.into(), 1, MAX_COUNT)?;
    Ok(Some(Guardrail {
        max_ratio,
        min_requests,
        failures: u32::try_from(failures).expect("MAX_COUNT fits in u32"),
    }))
}
