//! The report of a run with periods: every number from `stats::strata` (the wiring),
//! against numpy/scipy on one case, today's report exactly with one period, the
//! validation of the periods, and the verdict's words.

use serde_json::{json, Value};

use super::*;
use crate::stats::strata::{self, StratifiedDifference};

fn close(got: f64, want: f64, tolerance: f64, what: &str) {
    let error = (got - want).abs() / want.abs().max(1e-300);
    assert!(
        error <= tolerance,
        "{what}: got {got}, want {want} (relative error {error:e})"
    );
}

/// A period: its shares and, per variant, (users, conversions on goal `g`).
type Period<'a> = (&'a [f64], &'a [(u64, u64)]);

/// The counts of a run of `names` (the first is the control) from its periods, in the
/// `--counts FILE` format; the totals are the periods' sums.
fn run_json(names: &[&str], periods: &[Period]) -> Value {
    let mut totals = vec![(0u64, 0u64); names.len()];
    let periods: Vec<Value> = periods
        .iter()
        .enumerate()
        .map(|(p, (shares, cells))| {
            let mut share_map = serde_json::Map::new();
            let mut counts = serde_json::Map::new();
            for (v, name) in names.iter().enumerate() {
                share_map.insert(name.to_string(), json!(shares[v]));
                let (users, conversions) = cells[v];
                totals[v].0 += users;
                totals[v].1 += conversions;
                counts.insert(
                    name.to_string(),
                    json!({"users": users, "goals": {"g": {"conversions": conversions}}}),
                );
            }
            json!({"number": p + 1, "started_at": null, "shares": share_map, "inputs": null, "counts": counts})
        })
        .collect();
    let mut variants = serde_json::Map::new();
    for (name, (users, conversions)) in names.iter().zip(&totals) {
        variants.insert(
            name.to_string(),
            json!({"users": users, "goals": {"g": {"conversions": conversions}}}),
        );
    }
    json!({"experiment": "e", "variants": variants, "periods": periods})
}

fn counts_of(json: Value) -> Counts {
    serde_json::from_value(json).unwrap()
}

fn run(names: &[&str], periods: &[Period]) -> Counts {
    counts_of(run_json(names, periods))
}

fn proportions(periods: &[Period]) -> Vec<Vec<Proportion>> {
    periods
        .iter()
        .map(|(_, cells)| {
            cells
                .iter()
                .map(|&(users, conversions)| Proportion { conversions, users })
                .collect()
        })
        .collect()
}

/// The `drift` case of `tests/golden/make_strata_references.py`: the base rate doubles
/// while B's share goes from 0.5 to 0.8.
const DRIFT: [Period; 2] = [
    (&[0.5, 0.5], &[(1000, 50), (980, 48)]),
    (&[0.2, 0.8], &[(410, 40), (1590, 165)]),
];

/// The report of the `drift` run against numpy 2.4.6 / scipy 1.17.1 / mpmath 1.3.0,
/// `python3 tests/golden/make_strata_references.py`: its "drift" line (control rate,
/// variant rate, difference, the interval, the pooled-per-period z and p, the
/// always-valid p and interval, the SRM p) and its normal-posterior line for
/// (0.002614273977020909, 0.009618518195869181) (P(beat), expected loss).
#[test]
fn the_drift_report_matches_numpy() {
    let report = analyze(&run(&["A", "B"], &DRIFT), Settings::default()).unwrap();
    assert!(report.stratified);
    assert_eq!(report.stratified_periods, Some(2));
    close(
        report.srm_p_value.unwrap(),
        0.5060577362802623,
        1e-9,
        "SRM p",
    );
    let g = &report.goals["g"];
    let (a, b) = (g.variants.get("A").unwrap(), g.variants.get("B").unwrap());
    // Devices and conversions stay the run's totals.
    assert_eq!(
        (a.users, a.conversions, b.users, b.conversions),
        (1410, 90, 2570, 213)
    );
    let want = [
        (a.rate, 0.07389998774359603, "A rate"),
        (b.rate, 0.07651426172061694, "B rate"),
        (b.diff.unwrap(), 0.002614273977020909, "diff"),
        (b.ci_low.unwrap(), -0.016237675271525864, "ci low"),
        (b.ci_high.unwrap(), 0.021466223225567682, "ci high"),
        (b.z.unwrap(), 0.26851085082631637, "pooled z"),
        (b.p_value.unwrap(), 0.7883061236936119, "pooled p"),
        (b.p_value_sequential.unwrap(), 1.0, "sequential p"),
        (
            b.ci_low_sequential.unwrap(),
            -0.02661847121610043,
            "sequential low",
        ),
        (
            b.ci_high_sequential.unwrap(),
            0.03184701917014225,
            "sequential high",
        ),
        (
            b.chance_to_beat_control.unwrap(),
            0.6071105277292019,
            "P(beat)",
        ),
        (
            b.expected_loss.unwrap(),
            0.002670964489291489,
            "expected loss",
        ),
    ];
    for (got, want, what) in want {
        close(got, want, 1e-9, what);
    }
    close(
        b.relative_lift.unwrap(),
        0.07651426172061694 / 0.07389998774359603 - 1.0,
        1e-9,
        "lift",
    );
    assert_eq!((b.periods_used, b.periods_dropped), (Some(2), Some(0)));
    // By hand from the numbers above: +0.26 pts [-1.62, +2.15], p = 0.788.
    assert_eq!(
        g.verdicts,
        ["B leads A (stratified over 2 periods): +0.3 pts [-1.6, +2.1], p = 0.788; keep collecting"]
    );
    // The pooled report of the same totals is another story: 90/1410 against 213/2570.
    let mut pooled = run(&["A", "B"], &DRIFT);
    pooled.periods.clear();
    let naive = analyze(&pooled, Settings::default()).unwrap();
    let naive_b = naive.goals["g"].variants.get("B").unwrap();
    assert!(naive_b.diff.unwrap() > 0.018, "{naive_b:?}");
}

/// Issue 13's Simpson case in a report: identical arms, the base rate doubles while B's
/// share goes from 0.5 to 0.8. Pooled, B is 2.3 points ahead with p = 0.012; stratified,
/// the arms tie: both rates are 0.5 · 5 % + 0.5 · 12 %, and the interval is
/// ±1.96 · √(0.25 · (0.05 · 0.95 / 1000 + 0.12 · 0.88 / 400) + 0.25 · (0.05 · 0.95 / 1000 +
/// 0.12 · 0.88 / 1600)) = ±2.02 points.
#[test]
fn simpson_identical_arms_tie_when_stratified() {
    let periods: [Period; 2] = [
        (&[0.5, 0.5], &[(1000, 50), (1000, 50)]),
        (&[0.2, 0.8], &[(400, 48), (1600, 192)]),
    ];
    let counts = run(&["A", "B"], &periods);
    let report = analyze(&counts, Settings::default()).unwrap();
    let b = report.goals["g"].variants.get("B").unwrap();
    assert!(b.diff.unwrap().abs() < 1e-15, "{b:?}");
    assert!(b.p_value.unwrap() > 0.99, "{b:?}");
    assert!(report.srm_p_value.unwrap() > 0.99);
    assert_eq!(
        report.goals["g"].verdicts,
        ["B ties A (stratified over 2 periods): +0.0 pts [-2.0, +2.0], p = 1.000; keep collecting"]
    );
    let mut pooled = counts.clone();
    pooled.periods.clear();
    let naive = analyze(&pooled, Settings::default()).unwrap();
    let nb = naive.goals["g"].variants.get("B").unwrap();
    // 98/1400 = 7.0 % against 242/2600 = 9.3 %.
    assert!(
        nb.diff.unwrap() > 0.02 && nb.p_value.unwrap() < 0.02,
        "{nb:?}"
    );
}

fn expect_difference(d: Option<StratifiedDifference>) -> StratifiedDifference {
    d.expect("a usable period")
}

/// Three arms, three periods, one starved for C: every number of the report is the
/// strata function's (the maths is checked in `strata_tests`), Holm is applied to the
/// stratified p-values, and the starved period shows in C's row and verdict.
#[test]
fn every_number_comes_from_strata() {
    let periods: [Period; 3] = [
        (&[0.34, 0.33, 0.33], &[(500, 30), (500, 35), (500, 20)]),
        (&[0.15, 0.7, 0.15], &[(120, 12), (700, 100), (180, 20)]),
        (&[0.1, 0.89, 0.01], &[(90, 9), (900, 125), (1, 0)]),
    ];
    let settings = Settings {
        confidence: 0.9,
        sequential_tuned_for: 3_000,
    };
    let report = analyze(&run(&["A", "B", "C"], &periods), settings).unwrap();
    let cells = proportions(&periods);
    let devices: Vec<Vec<u64>> = cells
        .iter()
        .map(|p| p.iter().map(|x| x.users).collect())
        .collect();
    let shares: Vec<Vec<f64>> = periods.iter().map(|(s, _)| s.to_vec()).collect();
    assert_eq!(
        report.srm_p_value,
        strata::stratified_sample_ratio_mismatch(&devices, &shares).map(|(_, p)| p)
    );
    let g = &report.goals["g"];
    for (i, name) in ["A", "B", "C"].iter().enumerate() {
        let row = g.variants.get(name).unwrap();
        assert_eq!(
            row.rate,
            strata::stratified_rate(&cells, i).unwrap().estimate,
            "{name}"
        );
    }
    let mut raw = Vec::new();
    let mut sequential_raw = Vec::new();
    for (i, name) in [(1, "B"), (2, "C")] {
        let row = g.variants.get(name).unwrap();
        let d = expect_difference(strata::stratified_difference(&cells, 0, i, 0.9));
        let (seq_p, seq) = strata::stratified_sequential(&cells, 0, i, 0.9, 3_000).unwrap();
        assert_eq!(row.diff, Some(d.difference), "{name}");
        assert_eq!(
            (row.ci_low, row.ci_high),
            (d.interval.map(|c| c.low), d.interval.map(|c| c.high)),
            "{name}"
        );
        let pooled = d.pooled_test.unwrap();
        assert_eq!(
            (row.z, row.p_value),
            (Some(pooled.z), Some(pooled.p_value)),
            "{name}"
        );
        assert_eq!(
            (
                row.p_value_sequential,
                row.ci_low_sequential,
                row.ci_high_sequential
            ),
            (Some(seq_p), Some(seq.low), Some(seq.high)),
            "{name}"
        );
        assert_eq!(
            (row.chance_to_beat_control, row.expected_loss),
            (
                strata::normal_chance_to_beat(d.difference, d.standard_error),
                strata::normal_expected_loss(d.difference, d.standard_error)
            ),
            "{name}"
        );
        assert_eq!(
            (row.periods_used, row.periods_dropped),
            (Some(d.periods_used), Some(d.periods_dropped)),
            "{name}"
        );
        raw.push(pooled.p_value);
        sequential_raw.push(seq_p);
    }
    let (holm, sequential_holm) = (stats::holm(&raw), stats::holm(&sequential_raw));
    for (i, name) in ["B", "C"].iter().enumerate() {
        let row = g.variants.get(name).unwrap();
        assert_eq!(row.p_value_holm, Some(holm[i]), "{name}");
        assert_eq!(
            row.p_value_sequential_holm,
            Some(sequential_holm[i]),
            "{name}"
        );
    }
    // C had one device in period 3: that period is left out of A vs C, not of A vs B.
    let c = g.variants.get("C").unwrap();
    assert_eq!((c.periods_used, c.periods_dropped), (Some(2), Some(1)));
    assert!(
        g.verdicts[1].starts_with("C trails A (stratified over 2 of 3 periods): "),
        "{}",
        g.verdicts[1]
    );
    assert!(
        g.verdicts[0].starts_with("B leads A (stratified over 3 periods): "),
        "{}",
        g.verdicts[0]
    );
}

/// A value goal's means and Welch columns are the stratified ones: the `revenue_drift`
/// case of `tests/golden/make_strata_references.py` (numpy/scipy, its "value goals"
/// line: control mean, variant mean, difference, interval, p).
#[test]
fn value_goals_are_stratified_too() {
    let cell = |users: u64, conversions: u64, sum: f64, sum_sq: f64| json!({"users": users, "goals": {"revenue": {"conversions": conversions, "value_sum": sum, "value_sum_sq": sum_sq}}});
    let counts = counts_of(json!({
        "experiment": "e",
        "variants": {
            "A": cell(420, 40, 2100.5, 105000.2),
            "B": cell(790, 120, 5600.75, 300000.75),
        },
        "periods": [
            {"number": 1, "shares": {"A": 0.5, "B": 0.5},
             "counts": {"A": cell(300, 25, 1200.5, 65000.2), "B": cell(310, 40, 1500.25, 90000.75)}},
            {"number": 2, "shares": {"A": 0.2, "B": 0.8},
             "counts": {"A": cell(120, 15, 900.0, 40000.0), "B": cell(480, 80, 4100.5, 210000.0)}},
        ],
    }));
    let report = analyze(&counts, Settings::default()).unwrap();
    let g = &report.goals["revenue"];
    let (a, b) = (g.variants.get("A").unwrap(), g.variants.get("B").unwrap());
    let want = [
        (a.mean.unwrap(), 5.73637741046832, "A mean"),
        (b.mean.unwrap(), 6.675809784057584, "B mean"),
        (b.mean_diff.unwrap(), 0.9394323735892645, "mean diff"),
        (b.mean_ci_low.unwrap(), -1.168090516380897, "mean low"),
        (b.mean_ci_high.unwrap(), 3.046955263559426, "mean high"),
        (b.p_value_welch.unwrap(), 0.3814500800796776, "Welch p"),
    ];
    for (got, want, what) in want {
        close(got, want, 1e-9, what);
    }
    // A period with conversions and no value sums: the means cannot be stratified, and
    // none is made up.
    let mut partial = serde_json::to_value(&counts).unwrap();
    partial["periods"][1]["counts"]["B"]["goals"]["revenue"]
        .as_object_mut()
        .unwrap()
        .retain(|k, _| k == "conversions");
    let report = analyze(&counts_of(partial), Settings::default()).unwrap();
    let b = report.goals["revenue"].variants.get("B").unwrap();
    assert_eq!((b.mean, b.mean_diff, b.p_value_welch), (None, None, None));
    assert!(b.diff.is_some(), "the rates are still compared");
}

/// Count sets of `tests`, each with one period holding the run's totals.
fn one_period_cases() -> Vec<Value> {
    let sets = [
        r#"{"experiment": "moon_mars", "control": "Moon", "variants": {"Moon": {"users": 1000, "goals": {"click": {"conversions": 100}}}, "Mars": {"users": 1000, "goals": {"click": {"conversions": 130}}}}}"#,
        r#"{"experiment": "e", "variants": {"A": {"users": 5000, "goals": {"g": {"conversions": 500}}}, "B": {"users": 5600, "goals": {"g": {"conversions": 640}}}, "C": {"users": 4400, "goals": {"g": {"conversions": 470}}}}, "weights": {"A": 50, "B": 56, "C": 44}}"#,
        r#"{"experiment": "e", "variants": {"A": {"users": 2, "goals": {"g": {"conversions": 0}}}, "B": {"users": 1, "goals": {"g": {"conversions": 1}}}}}"#,
        r#"{"experiment": "e", "variants": {"A": {"users": 0}, "B": {"users": 0}}}"#,
        r#"{"experiment": "e", "variants": {"A": {"users": 400, "goals": {"revenue": {"conversions": 40, "value_sum": 1546.6906735739794, "value_sum_sq": 97584.33447033861}}}, "B": {"users": 420, "goals": {"revenue": {"conversions": 55, "value_sum": 2577.2949098751965, "value_sum_sq": 198741.18353799437}}}}}"#,
    ];
    sets.iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect()
}

/// With one period (or none) the report is today's, byte for byte: the JSON, the
/// verdicts and the table.
#[test]
fn one_period_is_todays_report_exactly() {
    for today in one_period_cases() {
        let mut with_period = today.clone();
        let n = today["variants"].as_object().unwrap().len() as f64;
        let shares: serde_json::Map<String, Value> = today["variants"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| (k.clone(), json!(1.0 / n)))
            .collect();
        with_period["periods"] = json!([{"number": 1, "started_at": "2026-11-30T10:00:00Z",
            "shares": shares, "inputs": null, "counts": today["variants"]}]);
        let (want, got) = (
            analyze(&counts_of(today.clone()), Settings::default()).unwrap(),
            analyze(&counts_of(with_period), Settings::default()).unwrap(),
        );
        assert_eq!(
            serde_json::to_string(&got).unwrap(),
            serde_json::to_string(&want).unwrap(),
            "{today}"
        );
        assert_eq!(render_table(&got), render_table(&want), "{today}");
        for (goal, g) in &want.goals {
            assert_eq!(got.goals[goal].verdicts, g.verdicts, "{today}");
        }
        assert!(!serde_json::to_string(&got).unwrap().contains("stratified"));
    }
}

#[test]
fn inconsistent_periods_are_refused_with_the_reason() {
    let good = run_json(&["A", "B"], &DRIFT);
    let err = |edit: &dyn Fn(&mut Value)| {
        let mut bad = good.clone();
        edit(&mut bad);
        analyze(&counts_of(bad), Settings::default())
            .unwrap_err()
            .to_string()
    };
    assert!(analyze(&counts_of(good.clone()), Settings::default()).is_ok());
    assert_eq!(
        err(&|c| c["periods"][1]["counts"]["Z"] = json!({"users": 1})),
        "period 2: `counts` names `Z`, which is not one of the variants"
    );
    assert_eq!(
        err(&|c| c["periods"][0]["shares"]["Z"] = json!(0.0)),
        "period 1: `shares` names `Z`, which is not one of the variants"
    );
    assert_eq!(
        err(&|c| c["periods"][0]["inputs"] = json!({"Z": {"users": 1, "conversions": 0}})),
        "period 1: `inputs` names `Z`, which is not one of the variants"
    );
    assert_eq!(
        err(&|c| {
            c["periods"][1]["shares"].as_object_mut().unwrap().remove("B");
        }),
        "period 2: `shares` has no share for `B` (the shares of new devices: one per variant, summing to 1)"
    );
    assert_eq!(
        err(&|c| c["periods"][1]["shares"]["B"] = json!(0.9)),
        "period 2: `shares` sum to 1.1, not 1 (the shares of new devices: one per variant, summing to 1)"
    );
    assert_eq!(
        err(&|c| c["periods"][0]["shares"] = json!({"A": 1.5, "B": -0.5})),
        "period 1: `shares` gives `A` 1.5 (a share is between 0 and 1) (the shares of new devices: one per variant, summing to 1)"
    );
    // Rounding within SHARES_TOLERANCE is fine.
    let mut rounded = good.clone();
    rounded["periods"][0]["shares"] = json!({"A": 0.4996, "B": 0.4996});
    assert!(analyze(&counts_of(rounded), Settings::default()).is_ok());
    assert_eq!(
        err(&|c| c["periods"][0]["counts"]["A"]["goals"]["g"]["conversions"] = json!(1001)),
        "period 1, variant `A`, goal `g`: 1001 conversions out of 1000 users"
    );
    assert_eq!(
        err(&|c| c["periods"][0]["counts"]["A"]["goals"]["h"] = json!({"conversions": 1})),
        "period 1: goal `h` is not one of the run's goals"
    );
    assert_eq!(
        err(&|c| c["periods"][0]["counts"]["B"]["users"] = json!(981)),
        "variant `B`: its periods hold 2571 users, more than its 2570 in all"
    );
    assert_eq!(
        err(&|c| c["periods"][0]["counts"]["B"]["goals"]["g"]["conversions"] = json!(49)),
        "variant `B`, goal `g`: its periods hold 214 conversions, more than its 213 in all"
    );
    // Fewer in the periods than in the totals is allowed (devices counted before the
    // run had periods): the stratified estimate reads the periods.
    let mut fewer = good.clone();
    fewer["variants"]["B"]["users"] = json!(3000);
    assert!(analyze(&counts_of(fewer), Settings::default()).is_ok());
    // A single period is checked as well.
    assert_eq!(
        err(&|c| {
            let first = c["periods"][0].clone();
            c["periods"] = json!([first]);
            c["periods"][0]["shares"]["B"] = json!(0.7);
        }),
        "period 1: `shares` sum to 1.2, not 1 (the shares of new devices: one per variant, summing to 1)"
    );
}

/// The words a person reads: the table says the run is stratified and the sample-ratio
/// check is against each period's shares; a small arm still reads "not enough data",
/// stratified.
#[test]
fn the_verdict_and_table_say_stratified() {
    let report = analyze(&run(&["A", "B"], &DRIFT), Settings::default()).unwrap();
    let table = render_table(&report);
    assert!(
        table.contains(
            "\nstratified over 2 periods (the shares of new devices changed during the run)"
        ),
        "{table}"
    );
    assert!(
        table.contains("sample ratio: ok (p = 0.506, against each period's shares)"),
        "{table}"
    );
    assert!(
        table.contains("  B leads A (stratified over 2 periods): +0.3 pts"),
        "{table}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        (&json["stratified"], &json["stratified_periods"]),
        (&json!(true), &json!(2))
    );
    assert_eq!(json["goals"]["g"]["variants"]["B"]["periods_dropped"], 0);

    let small: [Period; 2] = [
        (&[0.5, 0.5], &[(3, 1), (4, 1)]),
        (&[0.2, 0.8], &[(1, 0), (4, 2)]),
    ];
    let report = analyze(&run(&["A", "B"], &small), Settings::default()).unwrap();
    assert_eq!(
        report.goals["g"].verdicts,
        ["B vs A (stratified over 1 of 2 periods): not enough data yet (devices: B 8, A 4; a verdict needs at least 10 in each)"]
    );
    // No period usable at all (A never has two devices): nothing compared.
    let starved: [Period; 2] = [
        (&[0.03, 0.97], &[(1, 1), (40, 4)]),
        (&[0.03, 0.97], &[(1, 0), (40, 2)]),
    ];
    let mut counts = run(&["A", "B"], &starved);
    counts.variants = {
        let mut v = indexmap_like::OrderedMap::default();
        for (name, c) in counts.variants.iter() {
            let mut c = c.clone();
            c.users += 20; // devices counted before the run had periods
            v.insert(name.clone(), c);
        }
        v
    };
    let report = analyze(&counts, Settings::default()).unwrap();
    let b = report.goals["g"].variants.get("B").unwrap();
    assert_eq!(
        (b.diff, b.p_value, b.periods_used, b.periods_dropped),
        (None, None, Some(0), Some(2))
    );
    assert_eq!(
        report.goals["g"].verdicts,
        ["B vs A (stratified over 0 of 2 periods): not enough data yet"]
    );
}
