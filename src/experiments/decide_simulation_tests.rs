use std::time::Duration;

use super::*;
use crate::experiments::decide::{GuardrailAction, Guardrails, Mode, OnTimeout, Promote};
use crate::stats::{sequential_power, DEFAULT_SEQUENTIAL_TUNING_USERS};

/// A typical sign-up or click-through rate (the README's examples sit at 10 %): 100
/// conversions per variant per day, and a +20 % lift is +2 points.
const BASELINE: f64 = 0.10;
const DEVICES_PER_DAY: u64 = 1_000;
const DAYS: u32 = 28;
const RUNS: u32 = 1_000;

/// The settings, the only place a `Decide` is built here: evaluated daily,
/// promotion from day 7 with 1 000 devices in every variant at confidence 0.95, no
/// guardrail figures; the run times out after its 28 days.
fn decide() -> Decide {
    Decide {
        mode: Mode::Notify,
        every: Duration::from_secs(86_400),
        min_duration: Duration::from_secs(7 * 86_400),
        min_devices: 1_000,
        max_duration: Some(Duration::from_secs(u64::from(DAYS) * 86_400)),
        on_timeout: OnTimeout::Stop,
        counts: crate::config::BanditCounts::Local,
        promote: Promote {
            goal: "signup".into(),
            confidence: 0.95,
        },
        guardrails: Guardrails {
            action: GuardrailAction::Rollback,
            errors: None,
            latency_p95: None,
            srm: true,
        },
        pos: crate::config::Pos::default(),
    }
}

/// Variants A, B, C… with these true rates, A the control.
fn scenario(rates: &[f64], runs: u32, seed: u64) -> Scenario {
    Scenario {
        variants: rates
            .iter()
            .zip('A'..)
            .map(|(&rate, name)| (name.to_string(), rate))
            .collect(),
        devices_per_variant_per_day: DEVICES_PER_DAY,
        days: DAYS,
        runs,
        seed,
    }
}

fn print(what: &str, s: &Summary) {
    let quartiles = s.day_quartiles().map_or("none".to_string(), |[q1, m, q3]| {
        format!("median day {m}, quartiles {q1}–{q3}")
    });
    println!(
        "{what}: {} runs, {} promotions ({:.1} %), {quartiles}, decisions {:?}",
        s.runs,
        s.promotions.len(),
        100.0 * s.promotion_rate(),
        s.decisions
    );
}

/// Every run either promoted or reached its timeout, and nothing else fired (the split
/// is exact, so the sample-ratio check never flags).
fn assert_runs_end_in_promotion_or_timeout(s: &Summary) {
    let timeouts = s.decisions.get(&Kind::Timeout).copied().unwrap_or(0);
    assert_eq!(s.promotions.len() as u32 + timeouts, s.runs, "{s:?}");
    assert!(s
        .decisions
        .keys()
        .all(|k| matches!(k, Kind::Promote | Kind::Timeout)));
}

#[test]
fn a_a_runs_evaluated_daily_promote_at_most_five_percent() {
    let s = simulate(&scenario(&[BASELINE, BASELINE], RUNS, 1), &decide());
    print("A/A", &s);
    assert_runs_end_in_promotion_or_timeout(&s);
    // The always-valid test holds its 5 % over all looks, and promotion also needs the
    // variant ahead: one side of it.
    assert!(s.promotion_rate() <= 0.05, "{s:?}");
    assert!(s.promotions.iter().all(|p| p.day >= 7), "not before day 7");
}

#[test]
fn a_a_a_runs_promote_at_most_five_percent_with_holm() {
    let s = simulate(
        &scenario(&[BASELINE, BASELINE, BASELINE], RUNS, 2),
        &decide(),
    );
    print("A/A/A", &s);
    assert_runs_end_in_promotion_or_timeout(&s);
    // Two comparisons with the control: Holm keeps the family's error at 5 %.
    assert!(s.promotion_rate() <= 0.05, "{s:?}");
}

/// The chance that the always-valid test, read once with `days` of devices, finds a
/// relative `lift` (`stats::sequential_power`, the normal approximation of the test
/// itself).
fn power_of_one_look(lift: f64, days: u32, comparisons: u64) -> f64 {
    sequential_power(
        BASELINE,
        lift * BASELINE,
        0.05,
        comparisons,
        DEFAULT_SEQUENTIAL_TUNING_USERS,
        f64::from(days) * DEVICES_PER_DAY as f64,
    )
}

/// The share of the runs at or above which a rate of true chance `chance` falls but
/// once in about 740 (three standard errors below).
fn bar(chance: f64, runs: u32) -> f64 {
    chance - 3.0 * (chance * (1.0 - chance) / f64::from(runs)).sqrt()
}

#[test]
fn a_20_percent_lift_is_promoted_and_soon() {
    let s = simulate(&scenario(&[BASELINE, 1.2 * BASELINE], RUNS, 3), &decide());
    print("+20 % lift", &s);
    assert_runs_end_in_promotion_or_timeout(&s);
    assert_eq!(s.promotions_of("B"), s.promotions.len());
    // A run whose day-7 look finds the lift is promoted on day 7 (the first day it may
    // be), and one whose day-28 look finds it is promoted by then: each look's power is
    // a lower bound.
    let on_day_7 = s.promotions.iter().filter(|p| p.day == 7).count() as f64 / f64::from(RUNS);
    let (power_7, power_28) = (
        power_of_one_look(0.2, 7, 1),
        power_of_one_look(0.2, DAYS, 1),
    );
    println!("one look's power: day 7 {power_7:.3}, day {DAYS} {power_28:.6}; promoted on day 7: {on_day_7:.3}");
    assert!(on_day_7 >= bar(power_7, RUNS), "{on_day_7} vs {power_7}");
    assert!(
        s.promotion_rate() >= bar(power_28, RUNS),
        "{} vs {power_28}",
        s.promotion_rate()
    );
}

#[test]
fn a_10_percent_lift_takes_longer() {
    let s = simulate(&scenario(&[BASELINE, 1.1 * BASELINE], RUNS, 5), &decide());
    print("+10 % lift", &s);
    assert_runs_end_in_promotion_or_timeout(&s);
    assert_eq!(s.promotions_of("B"), s.promotions.len());
    let power_28 = power_of_one_look(0.1, DAYS, 1);
    println!("one look's power at day {DAYS}: {power_28:.3}");
    assert!(s.promotion_rate() >= bar(power_28, RUNS), "{s:?}");
}

#[test]
fn with_one_lifted_variant_of_two_only_it_is_promoted() {
    let s = simulate(
        &scenario(&[BASELINE, BASELINE, 1.2 * BASELINE], RUNS, 4),
        &decide(),
    );
    print("A/A/+20 %", &s);
    assert_runs_end_in_promotion_or_timeout(&s);
    // B's rate is the control's: a promotion of B would be a false one, and C beats B
    // for the promotion whenever both qualify.
    assert_eq!(s.promotions_of("C"), s.promotions.len(), "{s:?}");
    let power_28 = power_of_one_look(0.2, DAYS, 2);
    assert!(s.promotion_rate() >= bar(power_28, RUNS), "{s:?}");
}

#[test]
fn the_same_seed_gives_the_same_summary() {
    let lifted = scenario(&[BASELINE, 1.2 * BASELINE], 50, 9);
    let first = simulate(&lifted, &decide());
    assert_eq!(simulate(&lifted, &decide()), first);
    assert_ne!(
        simulate(&Scenario { seed: 10, ..lifted }, &decide()).promotions,
        first.promotions
    );
}

#[test]
fn quartiles_interpolate_between_days_as_numpy_does() {
    let promoted = |days: &[u32]| Summary {
        runs: 10,
        promotions: days
            .iter()
            .map(|&day| Promotion {
                variant: "B".into(),
                day,
            })
            .collect(),
        decisions: BTreeMap::new(),
    };
    // python3 -c "import numpy; print(numpy.percentile([10, 7, 9, 8], [25, 50, 75]))"
    let s = promoted(&[10, 7, 9, 8]);
    assert_eq!(s.day_quartiles(), Some([7.75, 8.5, 9.25]));
    assert_eq!(s.promotion_rate(), 0.4);
    assert_eq!(promoted(&[12]).day_quartiles(), Some([12.0; 3]));
    assert_eq!(promoted(&[]).day_quartiles(), None);
}

#[test]
fn binomial_draws_have_the_binomial_mean_and_variance() {
    let mut random = SplitMix(5);
    // (n, p): the simulation's draw, and one taken in chunks (0.5¹⁰⁰⁰⁰ underflows).
    for (n, p) in [(1_000u64, 0.1f64), (10_000, 0.5)] {
        const DRAWS: u32 = 20_000;
        let draws: Vec<f64> = (0..DRAWS)
            .map(|_| binomial(&mut random, n, p) as f64)
            .collect();
        let mean = draws.iter().sum::<f64>() / f64::from(DRAWS);
        let variance = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / f64::from(DRAWS - 1);
        let (expected_mean, expected_variance) = (n as f64 * p, n as f64 * p * (1.0 - p));
        // Four standard errors of the mean, and of the variance (≈ σ²·√(2/(N−1))).
        let mean_error = 4.0 * (expected_variance / f64::from(DRAWS)).sqrt();
        assert!((mean - expected_mean).abs() < mean_error, "{n} {p}: {mean}");
        let variance_error = 4.0 * expected_variance * (2.0 / f64::from(DRAWS - 1)).sqrt();
        assert!(
            (variance - expected_variance).abs() < variance_error,
            "{n} {p}: {variance}"
        );
    }
    assert_eq!(binomial(&mut random, 7, 0.0), 0);
    assert_eq!(binomial(&mut random, 7, 1.0), 7);
    assert_eq!(binomial(&mut random, 0, 0.3), 0);
}
