//! The report and its verdict words, from counts (the maths is checked in `stats`).

use super::*;

fn counts(json: &str) -> Counts {
    serde_json::from_str(json).unwrap()
}

const ISSUE_EXAMPLE: &str = r#"{"experiment": "moon_mars", "control": "Moon", "variants": {"Moon": {"users": 1000, "goals": {"click": {"conversions": 100}}}, "Mars": {"users": 1000, "goals": {"click": {"conversions": 130}}}}}"#;

#[test]
fn the_issue_example() {
    let report = analyze(&counts(ISSUE_EXAMPLE), Settings::default()).unwrap();
    assert_eq!(report.control, "Moon");
    assert_eq!(report.srm_p_value, Some(1.0));
    let click = &report.goals["click"];
    let mars = click.variants.get("Mars").unwrap();
    // statsmodels proportions_ztest([130, 100], [1000, 1000]) = (2.1027406, 0.0354885)
    assert!((mars.z.unwrap() - 2.102740605622114).abs() < 1e-9);
    assert!((mars.p_value.unwrap() - 0.03548845046647471).abs() < 1e-9);
    assert_eq!(
        mars.p_value_holm, mars.p_value,
        "one comparison: Holm changes nothing"
    );
    let moon = click.variants.get("Moon").unwrap();
    assert_eq!(
        (moon.users, moon.conversions, moon.diff),
        (1000, 100, None),
        "control rows carry counts only"
    );
    // Newcombe: statsmodels confint_proportions_2indep(130, 1000, 100, 1000) =
    // (0.0020023487152830075, 0.05807048502220285). The interval excludes 0 but the
    // always-valid test does not reject: "leads", not "beats".
    assert_eq!(click.verdicts, vec!["Mars leads Moon: +3.0 pts [+0.2, +5.8], p = 0.035; keep collecting (significant only if this is the single planned look)"]);
}

#[test]
fn three_variants_get_holm_and_an_srm_flag() {
    let c = counts(
        r#"{"experiment": "e", "variants": {
            "A": {"users": 5000, "goals": {"g": {"conversions": 500}}},
            "B": {"users": 5600, "goals": {"g": {"conversions": 640}}},
            "C": {"users": 4400, "goals": {"g": {"conversions": 470}}}}}"#,
    );
    let report = analyze(&c, Settings::default()).unwrap();
    assert_eq!(report.control, "A", "the first variant by default");
    assert!(report.srm_p_value.unwrap() < SRM_THRESHOLD);
    let g = &report.goals["g"];
    let (b, cc) = (g.variants.get("B").unwrap(), g.variants.get("C").unwrap());
    let raw = [b.p_value.unwrap(), cc.p_value.unwrap()];
    let holm = stats::holm(&raw);
    assert_eq!(
        (b.p_value_holm.unwrap(), cc.p_value_holm.unwrap()),
        (holm[0], holm[1])
    );
    // The mismatch comes first, and nothing is called a win. statsmodels:
    // confint_proportions_2indep(640, 5600, 500, 5000) = (0.00247, 0.02604),
    // (470, 4400, 500, 5000) = (-0.00549, 0.01922); proportions_ztest p = 0.01779,
    // 0.27824; Holm 0.03558, 0.27824.
    assert_eq!(
        g.verdicts,
        [
            "Sample-ratio mismatch (p < 0.001) — do not trust this comparison. B leads A: +1.4 pts [+0.2, +2.6], p = 0.018 (Holm 0.036)",
            "Sample-ratio mismatch (p < 0.001) — do not trust this comparison. C leads A: +0.7 pts [-0.5, +1.9], p = 0.278",
        ],
    );
    // With the configured 56/44… weights there is no mismatch.
    let mut weighted = c.clone();
    weighted.weights = Some(
        [
            ("A".to_string(), 50.0),
            ("B".to_string(), 56.0),
            ("C".to_string(), 44.0),
        ]
        .into(),
    );
    assert!(
        analyze(&weighted, Settings::default())
            .unwrap()
            .srm_p_value
            .unwrap()
            > 0.5
    );
}

#[test]
fn a_clear_effect_is_significant_even_sequentially() {
    let c = counts(
        r#"{"experiment": "e", "variants": {"A": {"users": 20000, "goals": {"g": {"conversions": 2000}}}, "B": {"users": 20000, "goals": {"g": {"conversions": 2500}}}}}"#,
    );
    let report = analyze(&c, Settings::default()).unwrap();
    let verdict = &report.goals["g"].verdicts[0];
    assert!(
        verdict.starts_with("B beats A: +2.5 pts [") && verdict.ends_with("; significant"),
        "{verdict}"
    );
    let worse = c.clone().variants.iter().fold(
        Counts {
            variants: Default::default(),
            ..c.clone()
        },
        |mut acc, (name, v)| {
            let mut v = v.clone();
            if name == "B" {
                v.goals.get_mut("g").unwrap().conversions = 1500;
            }
            acc.variants.insert(name.clone(), v);
            acc
        },
    );
    let verdict = &analyze(&worse, Settings::default()).unwrap().goals["g"].verdicts[0];
    assert!(
        verdict.starts_with("B loses to A: -2.5 pts [") && verdict.ends_with("; significant"),
        "{verdict}"
    );
}

/// "Green beats Blue: +1.8 pts [-0.5, +4.1] … keep collecting" read as a win: an
/// interval across zero only leads.
#[test]
fn an_interval_across_zero_leads_or_trails() {
    let c = counts(
        r#"{"experiment": "e", "control": "Blue", "variants": {"Blue": {"users": 1000, "goals": {"g": {"conversions": 100}}}, "Green": {"users": 1000, "goals": {"g": {"conversions": 118}}}, "Grey": {"users": 1000, "goals": {"g": {"conversions": 90}}}}}"#,
    );
    let report = analyze(&c, Settings::default()).unwrap();
    // statsmodels: confint_proportions_2indep(118, 1000, 100, 1000) = (-0.00939, 0.04544),
    // (90, 1000, 100, 1000) = (-0.03586, 0.01581); proportions_ztest p = 0.19652,
    // 0.44570; multipletests(method="holm") = 0.39304, 0.44570 (shown when it differs).
    assert_eq!(
        report.goals["g"].verdicts,
        [
            "Green leads Blue: +1.8 pts [-0.9, +4.5], p = 0.197 (Holm 0.393); keep collecting",
            "Grey trails Blue: -1.0 pts [-3.6, +1.6], p = 0.446; keep collecting",
        ]
    );
}

/// With three arms the always-valid test is Holm-adjusted too (as `plan --arms 3`
/// assumes): B's sequential p of 0.026 alone is significant, doubled it is not.
#[test]
fn a_third_arm_makes_the_verdict_stricter() {
    let two = r#"{"experiment": "e", "variants": {"A": {"users": 20000, "goals": {"g": {"conversions": 2000}}}, "B": {"users": 20000, "goals": {"g": {"conversions": 2210}}}}}"#;
    let three = two.replace(
        "}}}}}",
        r#"}}}, "C": {"users": 20000, "goals": {"g": {"conversions": 2000}}}}}"#,
    );
    let b = |json: &str| {
        let report = analyze(&counts(json), Settings::default()).unwrap();
        let g = &report.goals["g"];
        (g.variants.get("B").unwrap().clone(), g.verdicts[0].clone())
    };
    let (row, verdict) = b(two);
    // The mixture SPRT formula evaluated with numpy, as in the stats reference script.
    assert!((row.p_value_sequential.unwrap() - 0.025540879923335334).abs() < 1e-9);
    assert_eq!(row.p_value_sequential_holm, row.p_value_sequential);
    assert!(
        verdict.starts_with("B beats A") && verdict.ends_with("; significant"),
        "{verdict}"
    );
    let (row, verdict) = b(&three);
    assert!((row.p_value_sequential_holm.unwrap() - 2.0 * 0.025540879923335334).abs() < 1e-9);
    assert!(
        verdict.starts_with("B leads A")
            && verdict.ends_with("(significant only if this is the single planned look)"),
        "{verdict}"
    );
}

/// 1 device against 2, no conversions, no devices at all: "not enough data", the
/// table shows wide intervals, and no NaN appears anywhere (table, JSON, verdicts).
#[test]
fn tiny_samples_say_not_enough_data_and_never_nan() {
    for (na, ca, nb, cb) in [
        (2, 0, 1, 1),
        (0, 0, 0, 0),
        (0, 0, 3, 1),
        (4, 2, 0, 0),
        (9, 0, 12, 0),
        (1, 1, 1, 1),
    ] {
        let c = counts(&format!(
            r#"{{"experiment": "e", "variants": {{"A": {{"users": {na}, "goals": {{"g": {{"conversions": {ca}}}}}}}, "B": {{"users": {nb}, "goals": {{"g": {{"conversions": {cb}}}}}}}}}}}"#
        ));
        let report = analyze(&c, Settings::default()).unwrap();
        let verdict = &report.goals["g"].verdicts[0];
        assert_eq!(
            verdict,
            &format!("B vs A: not enough data yet (devices: B {nb}, A {na}; a verdict needs at least {MIN_DEVICES_PER_VARIANT} in each)")
        );
        let table = render_table(&report);
        let json = serde_json::to_string(&report).unwrap();
        for text in [&table, &json, verdict] {
            assert!(
                !text.to_lowercase().contains("nan") && !text.contains("inf"),
                "{text}"
            );
        }
        let b = report.goals["g"].variants.get("B").unwrap();
        if na == 0 || nb == 0 {
            assert_eq!(
                (b.diff, b.ci_low, b.ci_high),
                (None, None, None),
                "no rate to compare"
            );
            assert!(table.contains("not enough data"), "{table}");
        } else {
            let width = b.ci_high.unwrap() - b.ci_low.unwrap();
            assert!(width > 0.1, "a wide interval, not a point: {b:?}");
        }
    }
    // 1 device against 2: was `+100.0 pts [+100.0, +100.0]`; Newcombe, statsmodels
    // confint_proportions_2indep(1, 1, 0, 2) = (-0.030547308807040263, 1.0).
    let c = counts(
        r#"{"experiment": "e", "variants": {"A": {"users": 2, "goals": {"g": {"conversions": 0}}}, "B": {"users": 1, "goals": {"g": {"conversions": 1}}}}}"#,
    );
    let table = render_table(&analyze(&c, Settings::default()).unwrap());
    assert!(table.contains("+100.0 [-3.1, +100.0]"), "{table}");
}

#[test]
fn value_goals_get_welch() {
    let c = counts(
        r#"{"experiment": "e", "variants": {
        "A": {"users": 400, "goals": {"revenue": {"conversions": 40, "value_sum": 1546.6906735739794, "value_sum_sq": 97584.33447033861}}},
        "B": {"users": 420, "goals": {"revenue": {"conversions": 55, "value_sum": 2577.2949098751965, "value_sum_sq": 198741.18353799437}}}}}"#,
    );
    let report = analyze(&c, Settings::default()).unwrap();
    let b = report.goals["revenue"].variants.get("B").unwrap();
    // scipy ttest_ind(b, a, equal_var=False).pvalue on the same data (see stats tests).
    assert!((b.p_value_welch.unwrap() - 0.07435532754568867).abs() < 1e-7);
    assert!((b.mean.unwrap() - 2577.2949098751965 / 420.0).abs() < 1e-12);
}

#[test]
fn bad_counts_are_refused_clearly() {
    let err = |json: &str| {
        analyze(&counts(json), Settings::default())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(
            r#"{"experiment": "e", "control": "Z", "variants": {"A": {"users": 1}, "B": {"users": 1}}}"#
        ),
        "control `Z` is not one of the variants"
    );
    assert_eq!(
        err(r#"{"experiment": "e", "variants": {"A": {"users": 1}}}"#),
        "an experiment needs at least two variants to compare"
    );
    assert!(err(r#"{"experiment": "e", "variants": {"A": {"users": 1, "goals": {"g": {"conversions": 2}}}, "B": {"users": 1}}}"#).contains("2 conversions out of 1 users"));
    assert!(err(r#"{"experiment": "e", "weights": {"A": 1}, "variants": {"A": {"users": 1}, "B": {"users": 1}}}"#).contains("weights"));
    assert!(
        serde_json::from_str::<Counts>(r#"{"experiment": "e", "variants": {}, "colour": 1}"#)
            .unwrap_err()
            .to_string()
            .contains("unknown field `colour`")
    );
}

#[test]
fn without_posteriors_only_the_beta_posteriors_are_left_out() {
    let c = counts(
        r#"{"experiment": "e", "variants": {
            "A": {"users": 5000, "goals": {"click": {"conversions": 500}, "buy": {"conversions": 40}}},
            "B": {"users": 5100, "goals": {"click": {"conversions": 560}, "buy": {"conversions": 41}}},
            "C": {"users": 4900, "goals": {"click": {"conversions": 470}, "buy": {"conversions": 52}}}}}"#,
    );
    let json = |r: Report| serde_json::to_value(r).unwrap();
    let mut full = json(analyze(&c, Settings::default()).unwrap());
    let lean = json(analyze_without_posteriors(&c, Settings::default()).unwrap());
    let mut removed = 0;
    for goal in full["goals"].as_object_mut().unwrap().values_mut() {
        for row in goal["variants"].as_object_mut().unwrap().values_mut() {
            let row = row.as_object_mut().unwrap();
            for key in ["chance_to_beat_control", "expected_loss"] {
                removed += usize::from(row.remove(key).is_some());
            }
        }
    }
    assert_eq!(removed, 2 * 2 * 2, "two goals, two variants, two figures");
    assert_eq!(full, lean);
}
