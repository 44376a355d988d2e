use super::*;
use crate::config::{BanditCounts, Pos};
use crate::stats::analysis::{analyze, Counts, Settings};

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;
/// A boundary of one hour since the epoch, where the runs of these tests start.
const START: u64 = 1_764_000_000_000 - 1_764_000_000_000 % HOUR_MS;

fn guardrail() -> Guardrail {
    Guardrail {
        max_ratio: 2.0,
        min_requests: 200,
        failures: 3,
    }
}

fn decide() -> Decide {
    Decide {
        mode: Mode::Notify,
        every: Duration::from_secs(3600),
        min_duration: Duration::from_secs(7 * 86_400),
        min_devices: 1000,
        max_duration: Some(Duration::from_secs(28 * 86_400)),
        on_timeout: OnTimeout::Stop,
        counts: BanditCounts::Local,
        promote: Promote {
            goal: "click".into(),
            confidence: 0.95,
        },
        guardrails: Guardrails {
            action: GuardrailAction::Rollback,
            errors: Some(guardrail()),
            latency_p95: Some(Guardrail {
                max_ratio: 1.5,
                ..guardrail()
            }),
            srm: true,
        },
        pos: Pos::default(),
    }
}

/// The report of a run: (variant, devices, clicks), the first the control, equal split.
fn report(arms: &[(&str, u64, u64)]) -> Report {
    let variants: serde_json::Map<String, serde_json::Value> = arms
        .iter()
        .map(|&(v, users, clicks)| {
            (
                v.to_string(),
                json!({"users": users, "goals": {"click": {"conversions": clicks}}}),
            )
        })
        .collect();
    let counts: Counts = serde_json::from_value(
        json!({"experiment": "e", "control": arms[0].0, "variants": variants}),
    )
    .unwrap();
    analyze(
        &counts,
        Settings {
            confidence: 0.95,
            ..Default::default()
        },
    )
    .unwrap()
}

/// Clearly significant for B (always-valid Holm p far below 0.05), split in balance.
fn winner() -> Report {
    report(&[("A", 1000, 100), ("B", 1000, 300)])
}

fn aa() -> Report {
    report(&[("A", 1000, 100), ("B", 1000, 104)])
}

fn healthy() -> BTreeMap<String, UpstreamWindow> {
    windows(&[("A", 1000, 10, 0.1), ("B", 1000, 12, 0.11)])
}

fn windows(w: &[(&str, u64, u64, f64)]) -> BTreeMap<String, UpstreamWindow> {
    w.iter()
        .map(|&(v, requests, errors, p95)| {
            (
                v.to_string(),
                UpstreamWindow {
                    requests,
                    errors,
                    p95_seconds: Some(p95),
                },
            )
        })
        .collect()
}

fn run(
    d: &Decide,
    r: &Report,
    up: &BTreeMap<String, UpstreamWindow>,
    age_ms: u64,
    state: &DecisionState,
) -> Evaluation {
    evaluate(
        Inputs {
            decide: d,
            report: r,
            upstream: up,
            run_started_ms: START,
            now_ms: START + age_ms,
        },
        state,
    )
}

fn kinds(e: &Evaluation) -> Vec<(Kind, Option<String>, Action)> {
    e.decisions
        .iter()
        .map(|d| (d.kind, d.variant.clone(), d.action.clone()))
        .collect()
}

fn promote_b() -> (Kind, Option<String>, Action) {
    (Kind::Promote, Some("B".into()), Action::Rollout("B".into()))
}

#[test]
fn a_clear_winner_is_promoted_once_the_run_is_old_enough() {
    let d = decide();
    let r = winner();
    let p = r.goals["click"]
        .variants
        .get("B")
        .unwrap()
        .p_value_sequential_holm;
    assert!(p.unwrap() < 0.001, "the fixture is a clear winner: {p:?}");
    let young = run(
        &d,
        &r,
        &healthy(),
        7 * DAY_MS - HOUR_MS,
        &Default::default(),
    );
    assert!(young.decisions.is_empty(), "younger than min_duration");
    let e = run(&d, &r, &healthy(), 7 * DAY_MS, &Default::default());
    assert_eq!(kinds(&e), vec![promote_b()]);
    let decision = &e.decisions[0];
    assert_eq!(decision.mode, Mode::Notify);
    assert!(
        decision
            .reason
            .starts_with("B beats A on click: 30.00% vs 10.00%"),
        "{}",
        decision.reason
    );
    assert_eq!(decision.evidence["p_value_sequential_holm"].as_f64(), p);
    assert_eq!(decision.evidence["devices"]["A"], 1000);
    assert_eq!(e.state.last_eval_ms, Some(START + 7 * DAY_MS));
}

#[test]
fn no_promotion_without_significance_or_with_a_worse_variant() {
    let d = decide();
    assert!(run(&d, &aa(), &healthy(), 8 * DAY_MS, &Default::default())
        .decisions
        .is_empty());
    // Significant, but B is the worse one.
    let loser = report(&[("A", 1000, 300), ("B", 1000, 100)]);
    assert!(run(&d, &loser, &healthy(), 8 * DAY_MS, &Default::default())
        .decisions
        .is_empty());
}

#[test]
fn promotion_needs_exactly_min_devices_in_every_variant() {
    let mut d = decide();
    d.min_duration = Duration::ZERO;
    let short = report(&[("A", 999, 100), ("B", 1000, 300)]);
    assert!(run(&d, &short, &healthy(), DAY_MS, &Default::default())
        .decisions
        .is_empty());
    let exact = report(&[("A", 1000, 100), ("B", 1000, 300)]);
    assert_eq!(
        kinds(&run(&d, &exact, &healthy(), DAY_MS, &Default::default())),
        vec![promote_b()]
    );
}

#[test]
fn nothing_happens_in_the_first_every_of_the_run() {
    let mut d = decide();
    d.min_duration = Duration::ZERO;
    let bad = windows(&[("A", 1000, 10, 0.1), ("B", 1000, 300, 0.1)]);
    let mut d1 = d.clone();
    d1.guardrails.errors = Some(Guardrail {
        failures: 1,
        ..guardrail()
    });
    let e = run(&d1, &winner(), &bad, HOUR_MS - 1, &Default::default());
    assert!(e.decisions.is_empty());
    assert_eq!(
        e.state.breaches,
        BTreeMap::new(),
        "the partial window is not counted"
    );
    let e = run(&d1, &winner(), &bad, HOUR_MS, &Default::default());
    assert_eq!(e.decisions[0].kind, Kind::GuardrailErrors);
}

#[test]
fn errors_guardrail_fires_after_failures_consecutive_breaches() {
    let d = decide();
    // B 30 % errors, A 1 %: above 2 × A's.
    let bad = windows(&[("A", 1000, 10, 0.1), ("B", 1000, 300, 0.1)]);
    let mut state = DecisionState::default();
    for i in 1..=2 {
        let e = run(&d, &aa(), &bad, i * HOUR_MS, &state);
        assert!(e.decisions.is_empty(), "evaluation {i}");
        state = e.state;
        assert_eq!(state.breaches["B"].errors, i as u32);
    }
    let e = run(&d, &aa(), &bad, 3 * HOUR_MS, &state);
    assert_eq!(
        kinds(&e),
        vec![(
            Kind::GuardrailErrors,
            Some("B".into()),
            Action::Rollback("A".into())
        )]
    );
    assert!(
        e.decisions[0].reason.starts_with(
            "B's error rate (30.00%) above 2 × A's (1.00%) for 3 consecutive evaluations: rollback (rollout of A)"
        ),
        "{}",
        e.decisions[0].reason
    );
    assert_eq!(e.decisions[0].evidence["variant"], 0.3);
    // At most once per run: the fourth breach fires nothing.
    let again = run(&d, &aa(), &bad, 4 * HOUR_MS, &e.state);
    assert!(again.decisions.is_empty());
    assert_eq!(again.state.breaches["B"].errors, 4);
}

#[test]
fn failures_minus_one_breaches_then_a_good_window_resets_the_count() {
    let d = decide();
    let bad = windows(&[("A", 1000, 10, 0.1), ("B", 1000, 300, 0.1)]);
    let mut state = DecisionState::default();
    for i in 1..=2 {
        state = run(&d, &aa(), &bad, i * HOUR_MS, &state).state;
    }
    let good = run(&d, &aa(), &healthy(), 3 * HOUR_MS, &state);
    assert!(good.decisions.is_empty());
    assert_eq!(good.state.breaches["B"].errors, 0);
    // Two more breaches are not three in a row.
    let mut state = good.state;
    for i in 4..=5 {
        let e = run(&d, &aa(), &bad, i * HOUR_MS, &state);
        assert!(e.decisions.is_empty(), "evaluation {i}");
        state = e.state;
    }
    assert_eq!(state.breaches["B"].errors, 2);
}

#[test]
fn a_window_below_min_requests_neither_counts_nor_resets() {
    let mut d = decide();
    d.guardrails.action = GuardrailAction::Pause;
    let bad = |n| windows(&[("A", 1000, 10, 0.1), ("B", n, n / 2, 0.1)]);
    let mut state = DecisionState::default();
    state = run(&d, &aa(), &bad(200), HOUR_MS, &state).state;
    state = run(&d, &aa(), &bad(200), 2 * HOUR_MS, &state).state;
    // 199 requests in the window: says nothing.
    let quiet = run(&d, &aa(), &bad(199), 3 * HOUR_MS, &state);
    assert!(quiet.decisions.is_empty());
    assert_eq!(
        quiet.state.breaches["B"].errors, 2,
        "not counted, not reset"
    );
    // The control short of min_requests says nothing either.
    let control_quiet = windows(&[("A", 199, 0, 0.1), ("B", 1000, 500, 0.1)]);
    let e = run(&d, &aa(), &control_quiet, 4 * HOUR_MS, &quiet.state);
    assert_eq!(e.state.breaches["B"].errors, 2);
    // Exactly min_requests counts: the third breach fires the pause.
    let e = run(&d, &aa(), &bad(200), 5 * HOUR_MS, &e.state);
    assert_eq!(
        kinds(&e),
        vec![(
            Kind::GuardrailErrors,
            Some("B".into()),
            Action::Pause("B".into())
        )]
    );
}

#[test]
fn latency_guardrail_compares_p95_with_the_control() {
    let mut d = decide();
    d.guardrails.latency_p95 = Some(Guardrail {
        max_ratio: 1.5,
        min_requests: 200,
        failures: 1,
    });
    // 0.75 s is exactly 1.5 × 0.5 s (both exact in binary): not above.
    let at = windows(&[("A", 500, 0, 0.5), ("B", 500, 0, 0.75)]);
    let e = run(&d, &aa(), &at, HOUR_MS, &Default::default());
    assert!(e.decisions.is_empty());
    assert_eq!(e.state.breaches["B"].latency_p95, 0);
    let slow = windows(&[("A", 500, 0, 0.5), ("B", 500, 0, 0.76)]);
    let e = run(&d, &aa(), &slow, HOUR_MS, &Default::default());
    assert_eq!(
        kinds(&e),
        vec![(
            Kind::GuardrailLatency,
            Some("B".into()),
            Action::Rollback("A".into())
        )]
    );
    assert_eq!(e.decisions[0].evidence["control"], 0.5);
    // No p95 known: nothing said.
    let mut unknown = slow.clone();
    unknown.get_mut("B").unwrap().p95_seconds = None;
    let mut streak = DecisionState::default();
    streak.breaches.insert(
        "B".into(),
        Breaches {
            errors: 0,
            latency_p95: 1,
        },
    );
    let e = run(&d, &aa(), &unknown, HOUR_MS, &streak);
    assert!(e.decisions.is_empty());
    assert_eq!(
        e.state.breaches["B"].latency_p95, 1,
        "not counted, not reset"
    );
}

#[test]
fn a_breach_streak_blocks_promotion() {
    let mut d = decide();
    d.min_duration = Duration::ZERO;
    let bad = windows(&[("A", 1000, 10, 0.1), ("B", 1000, 300, 0.1)]);
    let e = run(&d, &winner(), &bad, HOUR_MS, &Default::default());
    assert!(
        e.decisions.is_empty(),
        "one breach in a streak: no promotion"
    );
    // The streak ends with a good window: the winner is promoted.
    let e = run(&d, &winner(), &healthy(), 2 * HOUR_MS, &e.state);
    assert_eq!(kinds(&e), vec![promote_b()]);
}

#[test]
fn a_variant_rolled_back_is_never_promoted_in_the_run() {
    let mut d = decide();
    d.min_duration = Duration::ZERO;
    d.guardrails.errors = Some(Guardrail {
        failures: 1,
        ..guardrail()
    });
    let bad = windows(&[("A", 1000, 10, 0.1), ("B", 1000, 300, 0.1)]);
    let e = run(&d, &winner(), &bad, HOUR_MS, &Default::default());
    assert_eq!(kinds(&e)[0].0, Kind::GuardrailErrors);
    assert_eq!(e.decisions.len(), 1, "the guardrail blocks the promotion");
    let later = run(&d, &winner(), &healthy(), 2 * HOUR_MS, &e.state);
    assert!(later.decisions.is_empty());
}

#[test]
fn a_paused_variant_still_breaching_does_not_hold_back_another_winner() {
    let mut d = decide();
    d.min_duration = Duration::ZERO;
    d.guardrails.action = GuardrailAction::Pause;
    d.guardrails.errors = Some(Guardrail {
        failures: 1,
        ..guardrail()
    });
    let r = report(&[("A", 1000, 100), ("B", 1000, 100), ("C", 1000, 300)]);
    let bad_b = windows(&[
        ("A", 1000, 10, 0.1),
        ("B", 1000, 300, 0.1),
        ("C", 1000, 10, 0.1),
    ]);
    let e = run(&d, &r, &bad_b, HOUR_MS, &Default::default());
    assert_eq!(
        kinds(&e),
        vec![(
            Kind::GuardrailErrors,
            Some("B".into()),
            Action::Pause("B".into())
        )]
    );
    let e = run(&d, &r, &bad_b, 2 * HOUR_MS, &e.state);
    assert_eq!(e.state.breaches["B"].errors, 2);
    assert_eq!(
        kinds(&e),
        vec![(Kind::Promote, Some("C".into()), Action::Rollout("C".into()))]
    );
}

#[test]
fn srm_freezes_once_and_blocks_promotion() {
    let mut d = decide();
    d.min_duration = Duration::ZERO;
    // 1000 vs 1300 devices on a 50/50 split: chi-square p ≈ 4.2e-8.
    // python3 -c "from scipy.stats import chisquare; print(chisquare([1000,1300]).pvalue)"
    let r = report(&[("A", 1000, 100), ("B", 1300, 390)]);
    assert!(r.srm_p_value.unwrap() < 1e-6);
    let e = run(&d, &r, &healthy(), DAY_MS, &Default::default());
    assert_eq!(kinds(&e), vec![(Kind::Srm, None, Action::Freeze)]);
    assert_eq!(
        e.decisions[0].evidence["srm_p_value"].as_f64(),
        r.srm_p_value
    );
    let again = run(&d, &r, &healthy(), DAY_MS + HOUR_MS, &e.state);
    assert!(again.decisions.is_empty(), "once per run");
    // Frozen for the rest of the run, even when the split looks right again.
    let later = run(&d, &winner(), &healthy(), 2 * DAY_MS, &again.state);
    assert!(later.decisions.is_empty());
    // With `srm: false` no freeze is recorded, and the mismatch still blocks promotion.
    d.guardrails.srm = false;
    assert!(run(&d, &r, &healthy(), DAY_MS, &Default::default())
        .decisions
        .is_empty());
}

#[test]
fn promotion_fires_once_per_run() {
    let mut d = decide();
    d.min_duration = Duration::ZERO;
    let e = run(&d, &winner(), &healthy(), HOUR_MS, &Default::default());
    assert_eq!(kinds(&e), vec![promote_b()]);
    let again = run(&d, &winner(), &healthy(), 2 * HOUR_MS, &e.state);
    assert!(again.decisions.is_empty());
}

#[test]
fn the_best_of_several_winners_is_promoted() {
    let mut d = decide();
    d.min_duration = Duration::ZERO;
    let r = report(&[("A", 1000, 100), ("B", 1000, 250), ("C", 1000, 300)]);
    let up = windows(&[
        ("A", 1000, 0, 0.1),
        ("B", 1000, 0, 0.1),
        ("C", 1000, 0, 0.1),
    ]);
    let e = run(&d, &r, &up, HOUR_MS, &Default::default());
    assert_eq!(
        kinds(&e),
        vec![(Kind::Promote, Some("C".into()), Action::Rollout("C".into()))]
    );
}

#[test]
fn a_human_change_after_a_decision_blocks_everything_in_the_run() {
    let mut d = decide();
    d.min_duration = Duration::ZERO;
    let state = DecisionState {
        human_changed: true,
        ..Default::default()
    };
    let bad = windows(&[("A", 1000, 10, 0.1), ("B", 1000, 300, 0.1)]);
    d.guardrails.errors = Some(Guardrail {
        failures: 1,
        ..guardrail()
    });
    let e = run(&d, &winner(), &bad, 30 * DAY_MS, &state);
    assert!(e.decisions.is_empty());
    assert!(e.state.human_changed);
    assert_eq!(e.state.last_eval_ms, Some(START + 30 * DAY_MS));
    // The same inputs without the human change fire.
    assert!(!run(&d, &winner(), &bad, 30 * DAY_MS, &Default::default())
        .decisions
        .is_empty());
}

#[test]
fn timeout_stops_or_keeps_once_every_variant_has_min_devices() {
    let mut d = decide();
    let e = run(
        &d,
        &aa(),
        &healthy(),
        28 * DAY_MS - HOUR_MS,
        &Default::default(),
    );
    assert!(e.decisions.is_empty());
    let e = run(&d, &aa(), &healthy(), 28 * DAY_MS, &Default::default());
    assert_eq!(kinds(&e), vec![(Kind::Timeout, None, Action::Stop)]);
    assert!(e.decisions[0]
        .reason
        .contains("max_duration (2419200s): stop"));
    assert!(
        run(&d, &aa(), &healthy(), 29 * DAY_MS, &e.state)
            .decisions
            .is_empty(),
        "once per run"
    );
    d.on_timeout = OnTimeout::Keep;
    let e = run(&d, &aa(), &healthy(), 28 * DAY_MS, &Default::default());
    assert_eq!(kinds(&e), vec![(Kind::Timeout, None, Action::Keep)]);
    let few = report(&[("A", 999, 100), ("B", 1000, 104)]);
    assert!(run(&d, &few, &healthy(), 28 * DAY_MS, &Default::default())
        .decisions
        .is_empty());
    d.max_duration = None;
    assert!(
        run(&d, &aa(), &healthy(), 365 * DAY_MS, &Default::default())
            .decisions
            .is_empty()
    );
}

#[test]
fn timeout_rollout_best_picks_the_highest_rate_or_the_control() {
    let mut d = decide();
    d.on_timeout = OnTimeout::RolloutBest;
    let up = windows(&[
        ("A", 1000, 0, 0.1),
        ("B", 1000, 0, 0.1),
        ("C", 1000, 0, 0.1),
    ]);
    // Nothing beats the control (B ties it, C trails): the control.
    let r = report(&[("A", 1000, 100), ("B", 1000, 100), ("C", 1000, 90)]);
    let e = run(&d, &r, &up, 28 * DAY_MS, &Default::default());
    assert_eq!(
        kinds(&e),
        vec![(Kind::Timeout, None, Action::Rollout("A".into()))]
    );
    // Not significant, but the highest rate: C.
    let r = report(&[("A", 1000, 100), ("B", 1000, 104), ("C", 1000, 108)]);
    let e = run(&d, &r, &up, 28 * DAY_MS, &Default::default());
    assert_eq!(
        kinds(&e),
        vec![(Kind::Timeout, None, Action::Rollout("C".into()))]
    );
    assert_eq!(e.decisions[0].evidence["rates"]["C"], 0.108);
    // A run frozen by a sample-ratio mismatch earlier: its rates are not trusted even
    // after the split looks right again, so the control.
    let frozen = DecisionState {
        fired: [Fired {
            kind: Kind::Srm,
            variant: None,
        }]
        .into(),
        ..Default::default()
    };
    let e = run(&d, &r, &up, 28 * DAY_MS, &frozen);
    assert_eq!(
        kinds(&e),
        vec![(Kind::Timeout, None, Action::Rollout("A".into()))]
    );
}

#[test]
fn a_promotion_at_the_timeout_leaves_no_timeout() {
    let d = decide();
    let e = run(&d, &winner(), &healthy(), 28 * DAY_MS, &Default::default());
    assert_eq!(kinds(&e), vec![promote_b()]);
}

#[test]
fn the_mode_is_recorded_and_changes_nothing_else() {
    let mut d = decide();
    d.min_duration = Duration::ZERO;
    let notify = run(&d, &winner(), &healthy(), HOUR_MS, &Default::default());
    d.mode = Mode::Act;
    let act = run(&d, &winner(), &healthy(), HOUR_MS, &Default::default());
    assert_eq!(act.decisions[0].mode, Mode::Act);
    assert_eq!(kinds(&act), kinds(&notify));
    assert_eq!(act.state, notify.state);
}

#[test]
fn evaluations_are_due_at_boundaries_since_the_epoch() {
    let hour = Duration::from_secs(3600);
    assert_eq!(due(hour, None, 7_200_001), Some(7_200_000));
    assert_eq!(due(hour, Some(7_200_000), 7_200_001), None);
    assert_eq!(due(hour, Some(7_200_000), 10_799_999), None);
    assert_eq!(due(hour, Some(7_200_000), 10_800_000), Some(10_800_000));
    // A missed boundary is not made up twice: the latest one is due.
    assert_eq!(due(hour, Some(0), 10_800_500), Some(10_800_000));
}

#[test]
fn reading_the_past_a_replica_behind_evaluates_each_missed_boundary_in_order() {
    let hour = Duration::from_secs(3600);
    assert_eq!(due_in_order(hour, None, 7_200_001), Some(7_200_000));
    assert_eq!(due_in_order(hour, Some(7_200_000), 10_799_999), None);
    // Two boundaries missed: the first after the last evaluated, then the next.
    assert_eq!(due_in_order(hour, Some(0), 10_800_500), Some(3_600_000));
    assert_eq!(
        due_in_order(hour, Some(3_600_000), 10_800_500),
        Some(7_200_000)
    );
    assert_eq!(
        due_in_order(hour, Some(7_200_000), 10_800_500),
        Some(10_800_000)
    );
    assert_eq!(due_in_order(hour, Some(10_800_000), 10_800_500), None);
    // `every` changed: the first boundary of the new cadence after the last evaluation.
    assert_eq!(
        due_in_order(hour, Some(1_800_000), 10_800_500),
        Some(3_600_000)
    );
    // Up to CATCH_UP_BOUNDARIES behind, caught up; one more, too far to replay: the latest.
    let limit = CATCH_UP_BOUNDARIES * 3_600_000;
    assert_eq!(due_in_order(hour, Some(0), limit + 500), Some(3_600_000));
    let beyond = limit + 3_600_000;
    assert_eq!(due_in_order(hour, Some(0), beyond + 500), Some(beyond));
}

#[test]
fn the_state_round_trips_as_json() {
    let d = decide();
    let bad = windows(&[("A", 1000, 10, 0.1), ("B", 1000, 300, 0.1)]);
    let mut state = DecisionState::default();
    for i in 1..=3 {
        state = run(&d, &aa(), &bad, i * HOUR_MS, &state).state;
    }
    let text = serde_json::to_string(&state).unwrap();
    let back: DecisionState = serde_json::from_str(&text).unwrap();
    assert_eq!(back, state);
    assert_eq!(back.fired.len(), 1);
}

/// A paused variant gets no new devices: it is not waited for (`min_devices`), and
/// `rollout_best` never picks it.
#[test]
fn a_paused_variant_short_of_devices_blocks_neither_a_promotion_nor_the_timeout() {
    let mut d = decide();
    d.min_duration = Duration::ZERO;
    d.guardrails.action = GuardrailAction::Pause;
    // B was paused early (its guardrail fired) and has 100 devices; the weights say so,
    // so the split is as designed.
    let with_c = |c_clicks: u64| {
        let counts: Counts = serde_json::from_value(json!({
            "experiment": "e", "control": "A",
            "weights": {"A": 1000, "B": 100, "C": 1000},
            "variants": {
                "A": {"users": 1000, "goals": {"click": {"conversions": 100}}},
                "B": {"users": 100, "goals": {"click": {"conversions": 60}}},
                "C": {"users": 1000, "goals": {"click": {"conversions": c_clicks}}},
            }
        }))
        .unwrap();
        analyze(&counts, Settings::default()).unwrap()
    };
    let r = with_c(300);
    assert!(r.srm_p_value.unwrap() > 0.01);
    let paused = DecisionState {
        fired: [Fired {
            kind: Kind::GuardrailErrors,
            variant: Some("B".into()),
        }]
        .into(),
        ..Default::default()
    };
    let e = run(&d, &r, &BTreeMap::new(), DAY_MS, &paused);
    assert_eq!(
        kinds(&e),
        vec![(Kind::Promote, Some("C".into()), Action::Rollout("C".into()))]
    );
    // At the timeout, with no significant winner: B's rate (60 %) is the highest, but B
    // was paused: C (10.5 %).
    d.on_timeout = OnTimeout::RolloutBest;
    let e = run(&d, &with_c(105), &BTreeMap::new(), 28 * DAY_MS, &paused);
    assert_eq!(
        kinds(&e),
        vec![(Kind::Timeout, None, Action::Rollout("C".into()))]
    );
}

#[test]
fn a_kinds_word_is_the_one_serde_writes() {
    for kind in Kind::ALL {
        assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
    }
}
