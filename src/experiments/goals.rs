//! Conversions: which goals an event or a proxied request reaches, and the rule that a
//! conversion counts once per device, goal and run, only for devices of the current
//! run's population. The record of what was counted travels in the device's signed
//! assignment cookie, so the rule holds across replicas that share the secret.

use http::{HeaderMap, Method, StatusCode};
use serde_json::{Map, Value};

use crate::config::{Trigger, ValueSource};
use crate::experiments::plan::ExperimentPlan;
use crate::experiments::sticky::Entry;

/// (index, value) of the goals for which `reaches` says Some(value).
fn reached(
    experiment: &ExperimentPlan,
    reaches: impl Fn(&crate::config::Goal) -> Option<Option<f64>>,
) -> Vec<(usize, Option<f64>)> {
    experiment
        .goals
        .iter()
        .enumerate()
        .filter_map(|(i, goal)| reaches(goal).map(|value| (i, value)))
        .collect()
}

/// Goals of `experiment` reached by event `name` with `params`: (goal index, value).
pub fn reached_by_event(
    experiment: &ExperimentPlan,
    name: &str,
    params: &Map<String, Value>,
) -> Vec<(usize, Option<f64>)> {
    reached(experiment, |goal| match &goal.trigger {
        Trigger::Event {
            name: wanted,
            params: filter,
        } if wanted == name
            && filter
                .iter()
                .all(|(k, v)| params.get(k).is_some_and(|p| param_text(p) == *v)) =>
        {
            Some(match &goal.value {
                Some(ValueSource::Param(p)) => params.get(p).and_then(number),
                _ => None,
            })
        }
        _ => None,
    })
}

/// Goals of `experiment` reached by a proxied request and its response.
pub fn reached_by_request(
    experiment: &ExperimentPlan,
    method: &Method,
    path: &str,
    status: StatusCode,
    response_headers: &HeaderMap,
) -> Vec<(usize, Option<f64>)> {
    reached(experiment, |goal| match &goal.trigger {
        Trigger::Request {
            method: m,
            path_prefix,
            status_class,
        } if m.as_ref().is_none_or(|m| m == method)
            && path_prefix.as_deref().is_none_or(|p| path.starts_with(p))
            && status_class.is_none_or(|c| status.as_u16() / 100 == c) =>
        {
            Some(match &goal.value {
                Some(ValueSource::Header(h)) => response_headers
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .filter(|v| v.is_finite()),
                _ => None,
            })
        }
        _ => None,
    })
}

/// Does any goal of any experiment use event `name`?
pub fn event_is_known<'a>(
    experiments: impl IntoIterator<Item = &'a ExperimentPlan>,
    name: &str,
) -> bool {
    experiments.into_iter().any(|e| {
        e.goals
            .iter()
            .any(|g| matches!(&g.trigger, Trigger::Event { name: n, .. } if n == name))
    })
}

/// Count goal `goal` (with `value`) for the device pinned in `entry`, if it belongs to
/// the current run's population and has not converted on that goal in this run. Returns
/// the variant it counted for (then `entry` records it), or `None`.
pub fn convert(
    experiment: &ExperimentPlan,
    entry: &mut Entry,
    goal: usize,
    value: Option<f64>,
) -> Option<usize> {
    let name = &experiment.goals[goal].name;
    if experiment.run != Some(entry.run) || entry.goals.iter().any(|g| g == name) {
        return None;
    }
    let variant = experiment.variant_index(&entry.variant)?;
    let counted = &experiment.variants[variant];
    counted.goals[goal].convert(value);
    // The device's period: where it was assigned, so the period's counts hold its
    // conversion whenever it comes (a pin from before periods existed reads as period 1).
    if let Some(period) = entry
        .period
        .checked_sub(1)
        .and_then(|p| counted.periods.get(p as usize))
    {
        period.goals[goal].convert(value);
    }
    entry.goals.push(name.clone());
    Some(variant)
}

/// An event parameter as text, for `params` filters (`"a"` → a, `3` → 3, `true` → true).
fn param_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|v: &f64| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Experiment, Goal, Match, State, Variant};
    use crate::counting::book::{CountBook, GoalTotals};

    fn plan(run: Option<u32>) -> (ExperimentPlan, CountBook) {
        let book = CountBook::default();
        let e = Experiment {
            key: "moon_mars".into(),
            title: "t".into(),
            state: if run.is_some() {
                State::Active
            } else {
                State::Inactive
            },
            state_pos: Default::default(),
            variants: vec![
                Variant {
                    name: "Moon".into(),
                    weight: 1,
                    upstream: None,
                },
                Variant {
                    name: "Mars".into(),
                    weight: 1,
                    upstream: None,
                },
            ],
            fallback: "Moon".into(),
            control: "Moon".into(),
            rollout_variant: None,
            upstream_down: Default::default(),
            matcher: Match::default(),
            traffic_bp: 10_000,
            target: Default::default(),
            goals: vec![
                Goal {
                    name: "click".into(),
                    trigger: Trigger::Event {
                        name: "button_click".into(),
                        params: vec![("button".into(), "reserve".into())],
                    },
                    value: None,
                },
                Goal {
                    name: "revenue".into(),
                    trigger: Trigger::Event {
                        name: "purchase".into(),
                        params: vec![],
                    },
                    value: Some(ValueSource::Param("amount".into())),
                },
                Goal {
                    name: "checkout".into(),
                    trigger: Trigger::Request {
                        method: Some(Method::POST),
                        path_prefix: Some("/checkout".into()),
                        status_class: Some(2),
                    },
                    value: Some(ValueSource::Header("x-order-value".parse().unwrap())),
                },
            ],
            bandit: None,
            decide: None,
        };
        (
            ExperimentPlan::new(
                &e,
                run.map(crate::experiments::plan::LastRun::numbered),
                &book,
                |_| None,
            ),
            book,
        )
    }

    fn params(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn events_match_by_name_and_params() {
        let (p, _) = plan(Some(2));
        assert_eq!(
            reached_by_event(&p, "button_click", &params(r#"{"button": "reserve"}"#)),
            vec![(0, None)]
        );
        assert!(reached_by_event(&p, "button_click", &params(r#"{"button": "other"}"#)).is_empty());
        assert!(reached_by_event(&p, "button_click", &params("{}")).is_empty());
        assert_eq!(
            reached_by_event(&p, "purchase", &params(r#"{"amount": 12.5}"#)),
            vec![(1, Some(12.5))]
        );
        assert_eq!(
            reached_by_event(&p, "purchase", &params(r#"{"amount": "7"}"#)),
            vec![(1, Some(7.0))]
        );
        assert_eq!(
            reached_by_event(&p, "purchase", &params(r#"{"amount": "lots"}"#)),
            vec![(1, None)]
        );
        assert!(event_is_known([&p], "purchase") && !event_is_known([&p], "scroll"));
    }

    #[test]
    fn requests_match_by_method_path_and_status() {
        let (p, _) = plan(Some(2));
        let mut h = HeaderMap::new();
        h.insert("x-order-value", "99.5".parse().unwrap());
        assert_eq!(
            reached_by_request(&p, &Method::POST, "/checkout/done", StatusCode::OK, &h),
            vec![(2, Some(99.5))]
        );
        assert!(reached_by_request(&p, &Method::GET, "/checkout", StatusCode::OK, &h).is_empty());
        assert!(reached_by_request(&p, &Method::POST, "/cart", StatusCode::OK, &h).is_empty());
        assert!(
            reached_by_request(&p, &Method::POST, "/checkout", StatusCode::BAD_GATEWAY, &h)
                .is_empty()
        );
    }

    #[test]
    fn once_per_device_goal_and_run_and_only_the_current_population() {
        let (p, book) = plan(Some(2));
        let mut entry = Entry {
            experiment: "moon_mars".into(),
            variant: "Mars".into(),
            run: 2,
            period: 1,
            goals: vec![],
        };
        assert_eq!(convert(&p, &mut entry, 1, Some(10.0)), Some(1));
        assert!(
            convert(&p, &mut entry, 1, Some(10.0)).is_none(),
            "the second time is not counted"
        );
        assert_eq!(entry.goals, vec!["revenue".to_string()]);
        assert_eq!(
            book.run("moon_mars", 2, 0).variants["Mars"].goals["revenue"].totals,
            GoalTotals {
                conversions: 1,
                value_sum: 10.0,
                value_sum_sq: 100.0
            }
        );
        let mut earlier_run = Entry {
            experiment: "moon_mars".into(),
            variant: "Mars".into(),
            run: 1,
            period: 1,
            goals: vec![],
        };
        assert!(
            convert(&p, &mut earlier_run, 0, None).is_none(),
            "devices of an earlier run are not counted"
        );
        let mut uncounted = Entry {
            run: crate::experiments::sticky::UNCOUNTED_RUN,
            ..earlier_run.clone()
        };
        assert!(convert(&p, &mut uncounted, 0, None).is_none());
        let (inactive, _) = plan(None);
        assert!(
            convert(
                &inactive,
                &mut Entry {
                    run: 2,
                    ..earlier_run
                },
                0,
                None
            )
            .is_none(),
            "no run in force, nothing counts"
        );
    }
}
