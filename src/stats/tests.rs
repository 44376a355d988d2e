//! Reference values from scipy 1.17.1 / statsmodels 0.15.0, produced by
//!     python3 tests/golden/make_stats_references.py
//! (an independent implementation: statsmodels `proportions_ztest`,
//! `confint_proportions_2indep` (Newcombe), scipy `ttest_ind`, `chisquare`, numerical
//! integration of the Beta posteriors, `multipletests`, the MOVER-R lift limits solved
//! numerically with `brentq`). Small-sample intervals and planning: `interval_tests`.

use super::*;
use crate::util::random::SplitMix;

/// Relative closeness (with a floor for values that are zero).
fn close(got: f64, want: f64, tolerance: f64, what: &str) {
    if want.is_nan() {
        return;
    }
    let error = (got - want).abs() / want.abs().max(1e-300);
    assert!(
        error <= tolerance || (want == 0.0 && got.abs() < 1e-15),
        "{what}: got {got}, want {want} (relative error {error:e})"
    );
}

type ProportionCase = (
    &'static str,
    u64,
    u64,
    u64,
    u64,
    f64,
    f64,
    f64,
    f64,
    f64,
    f64,
    f64,
    f64,
    f64,
    f64,
);

/// (name, ca, na, cb, nb, z, p, diff, ci_low, ci_high, lift, lift_low, lift_high,
///  chance_to_beat, expected_loss); NaN = not computed by the reference (undefined, or
///  too slow to integrate).
const PROPORTIONS: &[ProportionCase] = &[
    (
        "basic",
        100,
        1000,
        130,
        1000,
        2.102740605622114,
        0.03548845046647471,
        0.03,
        0.0020023487152830075,
        0.05807048502220285,
        0.30000000000000004,
        0.01747778122191712,
        0.6607599457474418,
        0.9821650661153509,
        9.237449150464755e-05,
    ),
    (
        "zero_control",
        0,
        500,
        7,
        500,
        2.655060341673138,
        0.007929422297591835,
        0.014,
        0.0035117971334198105,
        0.02861306913778529,
        f64::NAN,
        f64::NAN,
        f64::NAN,
        0.9962021970650957,
        7.505002759123192e-06,
    ),
    (
        "all_converted",
        200,
        200,
        190,
        200,
        -3.2025630761017436,
        0.0013621046715841978,
        -0.050000000000000044,
        -0.08957814813877607,
        -0.020560383047900595,
        -0.050000000000000044,
        -0.08957814813877607,
        -0.020809869038398543,
        0.0004242783304274153,
        0.04950699355185117,
    ),
    (
        "tiny",
        1,
        12,
        3,
        10,
        1.311981820108913,
        0.18952626866051037,
        0.21666666666666667,
        -0.11520627234581021,
        0.5275225683302085,
        2.6,
        -0.4061549151595025,
        21.196572547913178,
        0.8881987577629749,
        0.008695652173913042,
    ),
    (
        "huge",
        51234,
        1000000,
        51900,
        1000000,
        2.129462369633019,
        0.033216025047478955,
        0.0006659999999999999,
        5.300928664419408e-05,
        0.001279001971453904,
        0.012999180231877183,
        0.001028484973143895,
        0.025112984939436922,
        f64::NAN,
        f64::NAN,
    ),
    (
        "unequal",
        45,
        300,
        400,
        2700,
        -0.08561185736478338,
        0.9317749722555227,
        -0.0018518518518518545,
        -0.04848895472267597,
        0.03670794092199181,
        -0.012345679012345734,
        -0.25185215011446793,
        0.3166928182116038,
        0.4407167305682709,
        0.010718139800133529,
    ),
];

#[test]
fn proportion_statistics_match_statsmodels_and_scipy() {
    for &(name, ca, na, cb, nb, z, p, diff, lo, hi, lift, lift_lo, lift_hi, beat, loss) in
        PROPORTIONS
    {
        let a = Proportion {
            conversions: ca,
            users: na,
        };
        let b = Proportion {
            conversions: cb,
            users: nb,
        };
        let (gz, gp) = two_proportion_z(a, b).unwrap();
        close(gz, z, 1e-9, &format!("{name} z"));
        close(gp, p, 1e-9, &format!("{name} p"));
        let d = difference(a, b, 0.95);
        close(d.estimate, diff, 1e-12, &format!("{name} diff"));
        close(d.low, lo, 1e-9, &format!("{name} ci_low"));
        close(d.high, hi, 1e-9, &format!("{name} ci_high"));
        match relative_lift(a, b, 0.95) {
            Some(l) => {
                close(l.estimate, lift, 1e-12, &format!("{name} lift"));
                close(l.low, lift_lo, 1e-9, &format!("{name} lift_low"));
                close(l.high, lift_hi, 1e-9, &format!("{name} lift_high"));
            }
            None => assert!(
                lift.is_nan(),
                "{name}: lift undefined only with no control conversions"
            ),
        }
        close(
            chance_to_beat(a, b),
            beat,
            1e-7,
            &format!("{name} chance_to_beat"),
        );
        close(
            expected_loss(a, b),
            loss,
            1e-6,
            &format!("{name} expected_loss"),
        );
    }
}

#[test]
fn bayesian_sums_are_symmetric_and_bounded() {
    let a = Proportion {
        conversions: 51_234,
        users: 1_000_000,
    };
    let b = Proportion {
        conversions: 51_900,
        users: 1_000_000,
    };
    let beat = chance_to_beat(a, b);
    close(beat + chance_to_beat(b, a), 1.0, 1e-9, "P(B>A) + P(A>B)");
    // With a z of 2.13 (one-sided p ≈ 0.0166), P(B>A) ≈ 0.983.
    assert!((beat - 0.983).abs() < 0.002, "{beat}");
    assert!(expected_loss(a, b) < expected_loss(b, a));
}

#[test]
fn degenerate_inputs_have_no_test() {
    let none = Proportion {
        conversions: 0,
        users: 100,
    };
    let all = Proportion {
        conversions: 100,
        users: 100,
    };
    assert_eq!(two_proportion_z(none, none), None);
    assert_eq!(two_proportion_z(all, all), None);
    assert_eq!(
        two_proportion_z(
            Proportion {
                conversions: 0,
                users: 0
            },
            none
        ),
        None
    );
    assert_eq!(relative_lift(none, all, 0.95), None);
    assert_eq!(sequential(none, none, 0.95, 5_000), None);
    assert_eq!(sample_ratio_mismatch(&[10], &[1.0]), None);
    assert_eq!(
        welch(
            ValueSums {
                users: 1,
                sum: 1.0,
                sum_sq: 1.0
            },
            ValueSums {
                users: 5,
                sum: 1.0,
                sum_sq: 1.0
            },
            0.95
        ),
        None
    );
}

/// (n_a, sum_a, sumsq_a, n_b, sum_b, sumsq_b, t, df, p, diff, ci_low, ci_high)
const WELCH: &[(u64, f64, f64, u64, f64, f64, f64, f64, f64, f64, f64, f64)] = &[
    (
        400,
        1546.6906735739794,
        97584.33447033861,
        420,
        2577.2949098751965,
        198741.18353799437,
        1.7868651415933279,
        764.6457207941143,
        0.07435532754568867,
        2.2696897681488526,
        -0.2238183624357717,
        4.763197898733477,
    ),
    (
        50,
        638.4664570735547,
        38070.56562851959,
        60,
        501.66114701474453,
        37774.92081316938,
        -0.9463867970701078,
        103.05124700663163,
        0.3461651921669184,
        -4.408310024558684,
        -13.646384314130616,
        4.829764265013248,
    ),
];

#[test]
fn welch_matches_scipy() {
    for &(na, sa, qa, nb, sb, qb, t, df, p, diff, lo, hi) in WELCH {
        let w = welch(
            ValueSums {
                users: na,
                sum: sa,
                sum_sq: qa,
            },
            ValueSums {
                users: nb,
                sum: sb,
                sum_sq: qb,
            },
            0.95,
        )
        .unwrap();
        close(w.t, t, 1e-8, "t");
        close(w.df, df, 1e-8, "df");
        close(w.p_value, p, 1e-7, "p");
        close(w.difference.estimate, diff, 1e-9, "diff");
        close(w.difference.low, lo, 1e-7, "ci_low");
        close(w.difference.high, hi, 1e-7, "ci_high");
    }
}

/// (observed, weights, chi2, p)
const SRM: &[(&[u64], &[f64], f64, f64)] = &[
    (&[5000, 5000], &[1.0, 1.0], 0.0, 1.0),
    (&[5100, 4900], &[1.0, 1.0], 4.0, 0.04550026389635857),
    (
        &[2400, 7600],
        &[1.0, 3.0],
        5.333333333333333,
        0.020921335337794035,
    ),
    (
        &[1000, 1100, 900],
        &[1.0, 1.0, 1.0],
        20.0,
        4.539992976248486e-05,
    ),
    (&[10, 30], &[1.0, 3.0], 0.0, 1.0),
    (&[4850, 5150], &[1.0, 1.0], 9.0, 0.0026997960632601883),
];

#[test]
fn sample_ratio_mismatch_matches_scipy() {
    for &(observed, weights, chi2, p) in SRM {
        let (g_chi2, g_p) = sample_ratio_mismatch(observed, weights).unwrap();
        close(g_chi2, chi2, 1e-10, "chi2");
        close(g_p, p, 1e-9, "p");
    }
    assert_eq!(
        sample_ratio_mismatch(&[5, 1], &[1.0, 0.0]),
        Some((f64::INFINITY, 0.0)),
        "devices in a zero-weight arm"
    );
}

/// (baseline, mde, alpha, power, n per arm before rounding up)
const SAMPLE_SIZE: &[(f64, f64, f64, f64, f64)] = &[
    (0.1, 0.02, 0.05, 0.8, 3840.84748243627),
    (0.05, 0.01, 0.05, 0.9, 10920.389036645394),
    (0.3, 0.05, 0.01, 0.8, 2048.220041875315),
    (0.5, 0.001, 0.05, 0.8, 3924434.7637976604),
];

#[test]
fn sample_size_matches_the_formula_in_scipy() {
    for &(baseline, mde, alpha, power, n) in SAMPLE_SIZE {
        close(
            sample_size_per_arm(baseline, mde, alpha, power),
            n,
            1e-9,
            "n per arm",
        );
    }
}

/// (raw p-values, Holm-adjusted)
const HOLM: &[(&[f64], &[f64])] = &[
    (&[0.01, 0.04, 0.03], &[0.03, 0.06, 0.06]),
    (&[0.5, 0.001], &[0.5, 0.002]),
    (&[0.02, 0.02, 0.02, 0.2], &[0.08, 0.08, 0.08, 0.2]),
];

#[test]
fn holm_matches_statsmodels() {
    for &(raw, want) in HOLM {
        let got = holm(raw);
        for (g, w) in got.iter().zip(want) {
            close(*g, *w, 1e-12, "holm");
        }
    }
}

/// (ca, na, cb, nb, confidence, tuned_for, p_value, ci_low, ci_high), from the same
/// formulas evaluated with numpy (root of the tuning equation by scipy's brentq).
const SEQUENTIAL: &[(u64, u64, u64, u64, f64, u64, f64, f64, f64)] = &[
    (
        100,
        1000,
        130,
        1000,
        0.95,
        5000,
        0.3786953199509355,
        -0.014416373953647789,
        0.07441637395364778,
    ),
    (
        520,
        5000,
        600,
        5000,
        0.95,
        5000,
        0.20071411272248482,
        -0.0033194568759744546,
        0.03531945687597446,
    ),
    (
        30,
        400,
        33,
        380,
        0.9,
        2000,
        1.0,
        -0.04398228503502382,
        0.06766649556133963,
    ),
];

#[test]
fn sequential_matches_the_reference_evaluation() {
    for &(ca, na, cb, nb, confidence, tuned, p, lo, hi) in SEQUENTIAL {
        let (gp, ci) = sequential(
            Proportion {
                conversions: ca,
                users: na,
            },
            Proportion {
                conversions: cb,
                users: nb,
            },
            confidence,
            tuned,
        )
        .unwrap();
        close(gp, p, 1e-9, "sequential p");
        close(ci.low, lo, 1e-9, "sequential ci_low");
        close(ci.high, hi, 1e-9, "sequential ci_high");
    }
    // Always valid costs width: wider than the fixed-horizon interval at the same data.
    let (a, b) = (
        Proportion {
            conversions: 520,
            users: 5000,
        },
        Proportion {
            conversions: 600,
            users: 5000,
        },
    );
    let fixed = difference(a, b, 0.95);
    let (_, seq) = sequential(a, b, 0.95, 5_000).unwrap();
    assert!(seq.high - seq.low > fixed.high - fixed.low);
    // The tuning point is where the interval is narrowest.
    let width = |tuned| {
        let (_, ci) = sequential(a, b, 0.95, tuned).unwrap();
        ci.high - ci.low
    };
    assert!(width(10_000) < width(1_000) && width(10_000) < width(100_000));
}

/// Conversions of `users` devices at `rate`, drawn from the seeded generator.
fn conversions(rng: &mut SplitMix, users: u64, rate: f64) -> u64 {
    (0..users).filter(|_| rng.next_f64() < rate).count() as u64
}

/// A/A: 2 000 seeded experiments with no real difference, 10 looks of 200 devices per
/// arm. The fixed-horizon z-test at the end rejects about 5 %; the sequential test,
/// checked after every look, rejects at most 5 %. With a real difference it still finds
/// it most of the time.
#[test]
fn a_a_simulation_false_positive_rates() {
    let mut rng = SplitMix(20_261_123);
    const EXPERIMENTS: usize = 2_000;
    const LOOKS: u64 = 10;
    const BATCH: u64 = 200;
    let run = |rng: &mut SplitMix, rate_a: f64, rate_b: f64| {
        let (mut fixed, mut seq) = (0, 0);
        for _ in 0..EXPERIMENTS {
            let (mut a, mut b) = (
                Proportion {
                    conversions: 0,
                    users: 0,
                },
                Proportion {
                    conversions: 0,
                    users: 0,
                },
            );
            let mut rejected = false;
            for _ in 0..LOOKS {
                a = Proportion {
                    conversions: a.conversions + conversions(rng, BATCH, rate_a),
                    users: a.users + BATCH,
                };
                b = Proportion {
                    conversions: b.conversions + conversions(rng, BATCH, rate_b),
                    users: b.users + BATCH,
                };
                if let Some((p, _)) = sequential(a, b, 0.95, DEFAULT_SEQUENTIAL_TUNING_USERS) {
                    rejected |= p < 0.05;
                }
            }
            seq += usize::from(rejected);
            fixed += usize::from(two_proportion_z(a, b).is_some_and(|(_, p)| p < 0.05));
        }
        (
            fixed as f64 / EXPERIMENTS as f64,
            seq as f64 / EXPERIMENTS as f64,
        )
    };
    let (fixed, seq) = run(&mut rng, 0.10, 0.10);
    // 2 000 experiments: the fixed-horizon rate's standard error is 0.49 points.
    assert!(
        (0.035..=0.065).contains(&fixed),
        "fixed-horizon false positives {fixed}"
    );
    assert!(
        seq <= 0.05,
        "sequential false positives with 10 looks {seq}"
    );
    let (fixed_power, seq_power) = run(&mut rng, 0.10, 0.13);
    // Analytic power of this design: Φ((|d|·√n − z·√(2p̄q̄)) / √(p₁q₁ + p₂q₂)) ≈ 0.845.
    let n = (LOOKS * BATCH) as f64;
    let (p1, p2) = (0.10f64, 0.13f64);
    let pbar = (p1 + p2) / 2.0;
    let analytic = statrs::distribution::Normal::new(0.0, 1.0).unwrap().cdf(
        ((p2 - p1) * n.sqrt() - z_critical(0.95) * (2.0 * pbar * (1.0 - pbar)).sqrt())
            / (p1 * (1.0 - p1) + p2 * (1.0 - p2)).sqrt(),
    );
    assert!(
        (fixed_power - analytic).abs() < 0.03,
        "fixed power {fixed_power}, analytic {analytic}"
    );
    // Looking every batch costs power, but the sequential test still finds the effect often.
    assert!(
        seq_power > 0.4 && seq_power < fixed_power,
        "sequential power {seq_power}"
    );
}

/// (contingency table, chi2, p) from scipy `chi2_contingency(table, correction=False)`.
#[test]
fn independence_matches_scipy() {
    let cases: &[(Vec<Vec<u64>>, f64, f64)] = &[
        (
            vec![vec![250, 240], vec![260, 250]],
            0.00016012807684098415,
            0.9899037007353162,
        ),
        (
            vec![vec![300, 100], vec![100, 300]],
            200.0,
            2.0884875837625688e-45,
        ),
        (
            vec![vec![10, 20, 30], vec![20, 20, 20]],
            5.333333333333334,
            0.0694834512228015,
        ),
    ];
    for (table, chi2, p) in cases {
        let (g_chi2, g_p) = independence(table).unwrap();
        close(g_chi2, *chi2, 1e-9, "chi2");
        close(g_p, *p, 1e-8, "p");
    }
    assert_eq!(independence(&[vec![1, 2]]), None);
    assert_eq!(
        independence(&[vec![0, 0], vec![1, 2]]),
        None,
        "an empty row"
    );
}
