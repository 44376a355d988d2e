//! `abproxy analyze --counts` and `abproxy plan`, through the binary; `analyze` against a
//! source that is not there.

use std::process::Command;

use crate::support::binary::BIN;

const ISSUE_EXAMPLE: &str = r#"{"experiment": "moon_mars", "control": "Moon", "variants": {"Moon": {"users": 1000, "goals": {"click": {"conversions": 100}}}, "Mars": {"users": 1000, "goals": {"click": {"conversions": 130}}}}}"#;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("abproxy runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn counts_file(dir: &tempfile::TempDir, json: &str) -> String {
    let path = dir.path().join("counts.json");
    std::fs::write(&path, json).unwrap();
    path.display().to_string()
}

#[test]
fn analyze_counts_as_json_and_table() {
    let dir = tempfile::tempdir().unwrap();
    let file = counts_file(&dir, ISSUE_EXAMPLE);
    let (code, out, err) = run(&["analyze", "--counts", &file, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["experiment"], "moon_mars");
    assert_eq!(json["control"], "Moon");
    assert_eq!(json["srm_p_value"], 1.0);
    let mars = &json["goals"]["click"]["variants"]["Mars"];
    for key in [
        "users",
        "conversions",
        "rate",
        "diff",
        "ci_low",
        "ci_high",
        "relative_lift",
        "z",
        "p_value",
        "p_value_holm",
        "p_value_sequential",
        "ci_low_sequential",
        "ci_high_sequential",
        "chance_to_beat_control",
        "expected_loss",
    ] {
        assert!(mars[key].is_number(), "Mars lacks {key}: {mars}");
    }
    // statsmodels: proportions_ztest([130, 100], [1000, 1000]) → z 2.1027406, p 0.0354885
    assert!((mars["p_value"].as_f64().unwrap() - 0.03548845046647471).abs() < 1e-9);
    let moon = json["goals"]["click"]["variants"]["Moon"]
        .as_object()
        .unwrap();
    assert_eq!(
        moon.keys().collect::<Vec<_>>(),
        ["users", "conversions", "rate"],
        "control rows: counts only"
    );

    let (code, out, _) = run(&["analyze", "--counts", &file]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Mars leads Moon: +3.0 pts [+0.2, +5.8], p = 0.035; keep collecting"),
        "{out}"
    );
    assert!(out.contains("sample ratio: ok"), "{out}");
}

#[test]
fn analyze_refuses_bad_input_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(&["analyze", "--counts", &counts_file(&dir, "{not json")]);
    assert_eq!(code, 1);
    assert!(err.contains("is not a counts file"), "{err}");
    let (code, _, err) = run(&[
        "analyze",
        "--counts",
        &counts_file(
            &dir,
            &ISSUE_EXAMPLE.replace("\"Moon\", \"variants\"", "\"Venus\", \"variants\""),
        ),
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("control `Venus` is not one of the variants"),
        "{err}"
    );
    let (code, _, err) = run(&["analyze", "--counts", "/nonexistent/counts.json"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read"), "{err}");
}

/// A run whose shares moved (the `drift` case of `tests/golden/make_strata_references.py`):
/// the file's `periods` make the analysis stratified, and both outputs say so.
const WITH_PERIODS: &str = r#"{"experiment": "headline", "control": "A",
 "variants": {"A": {"users": 1410, "goals": {"click": {"conversions": 90}}},
              "B": {"users": 2570, "goals": {"click": {"conversions": 213}}}},
 "periods": [
  {"number": 1, "started_at": "2026-11-30T10:00:00Z", "shares": {"A": 0.5, "B": 0.5},
   "inputs": null,
   "counts": {"A": {"users": 1000, "goals": {"click": {"conversions": 50}}},
              "B": {"users": 980, "goals": {"click": {"conversions": 48}}}}},
  {"number": 2, "started_at": "2026-11-30T11:00:00Z", "shares": {"A": 0.2, "B": 0.8},
   "inputs": {"A": {"users": 1000, "conversions": 50}, "B": {"users": 980, "conversions": 48}},
   "counts": {"A": {"users": 410, "goals": {"click": {"conversions": 40}}},
              "B": {"users": 1590, "goals": {"click": {"conversions": 165}}}}}]}"#;

#[test]
fn analyze_counts_with_periods_is_stratified() {
    let dir = tempfile::tempdir().unwrap();
    let file = counts_file(&dir, WITH_PERIODS);
    let (code, out, err) = run(&["analyze", "--counts", &file, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["stratified"], true, "{json}");
    assert_eq!(json["stratified_periods"], 2, "{json}");
    let b = &json["goals"]["click"]["variants"]["B"];
    // numpy: the stratified difference and the pooled-per-period p of the `drift` case.
    assert!(
        (b["diff"].as_f64().unwrap() - 0.002614273977020909).abs() < 1e-12,
        "{b}"
    );
    assert!(
        (b["p_value"].as_f64().unwrap() - 0.7883061236936119).abs() < 1e-9,
        "{b}"
    );
    assert_eq!(
        (&b["periods_used"], &b["periods_dropped"]),
        (&2.into(), &0.into())
    );

    let (code, out, err) = run(&["analyze", "--counts", &file]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\nstratified over 2 periods ("), "{out}");
    assert!(
        out.contains("B leads A (stratified over 2 periods): +0.3 pts [-1.6, +2.1], p = 0.788; keep collecting"),
        "{out}"
    );

    // An inconsistent period is refused with the reason.
    let bad = counts_file(
        &dir,
        &WITH_PERIODS.replace(r#""A": 0.2, "B": 0.8"#, r#""A": 0.2, "B": 0.9"#),
    );
    let (code, _, err) = run(&["analyze", "--counts", &bad]);
    assert_eq!(code, 1);
    assert!(
        err.contains("period 2: `shares` sum to 1.1, not 1"),
        "{err}"
    );
}

/// The devices per arm `plan` prints after `label` (the line after it).
fn per_arm_after(out: &str, label: &str) -> u64 {
    let mut lines = out.lines().skip_while(|l| !l.contains(label));
    lines
        .next()
        .unwrap_or_else(|| panic!("no {label:?} in\n{out}"));
    let line = lines.next().unwrap();
    line.trim()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no number in {line:?}"))
}

const SEQUENTIAL: &str = "looking as often as you like";
const FIXED: &str = "one look at the end";

#[test]
fn plan_prints_devices_per_arm_and_days() {
    let (code, out, err) = run(&[
        "plan",
        "--baseline",
        "0.10",
        "--mde",
        "0.02",
        "--daily-users",
        "1000",
    ]);
    assert_eq!(code, 0, "{err}");
    // (1.96·√(2·0.11·0.89) + 0.8416·√(0.09 + 0.1056))² / 0.02² = 3840.85 → 3841 per arm.
    assert!(
        out.contains("3841 devices per arm, 7682 in all (2 arms)"),
        "{out}"
    );
    assert!(out.contains("at 1000 devices a day: 8 days"), "{out}");
    assert_eq!(per_arm_after(&out, FIXED), 3841, "{out}");
    // The always-valid test needs more: 7602.81 (section `plan` of
    // tests/golden/make_stats_references.py) → 7603 per arm, 15 206 in all, 16 days.
    assert_eq!(per_arm_after(&out, SEQUENTIAL), 7603, "{out}");
    assert!(
        out.contains(
            "7603 devices per arm, 15206 in all (2 arms)\n    at 1000 devices a day: 16 days"
        ),
        "{out}"
    );
    let (code, _, err) = run(&["plan", "--baseline", "0.99", "--mde", "0.02"]);
    assert_eq!(code, 1);
    assert!(err.contains("between 0 and 1"), "{err}");
}

/// At the sequential size `plan` prints, the always-valid test reads "significant" with
/// the requested power (one device fewer does not); and the verdict agrees with the plan:
/// counts at exactly that size and effect are "significant", at the fixed-horizon size
/// they only lead.
#[test]
fn the_plan_gives_the_size_the_verdict_needs() {
    let (code, out, err) = run(&[
        "plan",
        "--baseline",
        "0.10",
        "--mde",
        "0.02",
        "--power",
        "0.8",
    ]);
    assert_eq!(code, 0, "{err}");
    let sequential = per_arm_after(&out, SEQUENTIAL);
    let power = |n: u64| abproxy::stats::sequential_power(0.10, 0.02, 0.05, 1, 5_000, n as f64);
    assert!(
        power(sequential) >= 0.8 && power(sequential - 1) < 0.8,
        "{out}"
    );
    // (A seeded simulation of the real test at this size: stats::interval_tests.)

    let dir = tempfile::tempdir().unwrap();
    let verdict_at = |n: u64| {
        let json = format!(
            r#"{{"experiment": "e", "control": "A", "variants": {{"A": {{"users": {n}, "goals": {{"g": {{"conversions": {}}}}}}}, "B": {{"users": {n}, "goals": {{"g": {{"conversions": {}}}}}}}}}}}"#,
            (n as f64 * 0.10).round(),
            (n as f64 * 0.12).round()
        );
        let (code, out, err) = run(&["analyze", "--counts", &counts_file(&dir, &json)]);
        assert_eq!(code, 0, "{err}");
        out.lines()
            .find(|l| l.trim_start().starts_with("B "))
            .unwrap()
            .trim()
            .to_string()
    };
    let at_plan = verdict_at(sequential);
    assert!(
        at_plan.starts_with("B beats A: +2.0 pts") && at_plan.ends_with("; significant"),
        "{at_plan}"
    );
    let at_fixed = verdict_at(per_arm_after(&out, FIXED));
    assert!(
        at_fixed.starts_with("B leads A: +2.0 pts")
            && at_fixed
                .ends_with("keep collecting (significant only if this is the single planned look)"),
        "{at_fixed}"
    );
}

/// `--arms 3`: two comparisons with the control, each at alpha / 2 (Bonferroni). scipy:
/// (norm.ppf(1 − 0.025/2)·√(2·0.11·0.89) + norm.ppf(0.8)·√(0.09 + 0.1056))² / 0.02² =
/// 4651.42 → 4652 per arm; the always-valid test 8534.69 → 8535 (section `plan` of
/// tests/golden/make_stats_references.py).
#[test]
fn plan_adjusts_for_more_arms_with_bonferroni() {
    let plan = |arms: &str| {
        let (code, out, err) = run(&[
            "plan",
            "--baseline",
            "0.10",
            "--mde",
            "0.02",
            "--arms",
            arms,
        ]);
        assert_eq!(code, 0, "{err}");
        out
    };
    let (two, three) = (plan("2"), plan("3"));
    assert!(!two.contains("Bonferroni"), "{two}");
    assert!(
        three.contains("3 arms: 2 comparisons with the control, each at alpha = 0.025 (Bonferroni"),
        "{three}"
    );
    assert_eq!(per_arm_after(&three, FIXED), 4652, "{three}");
    assert!(
        three.contains("4652 devices per arm, 13956 in all (3 arms)"),
        "{three}"
    );
    assert_eq!(per_arm_after(&three, SEQUENTIAL), 8535, "{three}");
    assert!(per_arm_after(&three, FIXED) > per_arm_after(&two, FIXED));
    assert!(per_arm_after(&three, SEQUENTIAL) > per_arm_after(&two, SEQUENTIAL));
    let (code, _, err) = run(&["plan", "--baseline", "0.1", "--mde", "0.02", "--arms", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("--arms at least 2"), "{err}");
}

/// A new experiment, before any device and after one: the results API, the admin page
/// and `analyze --admin` say "not enough data" and print no NaN (with no devices the
/// Wald bounds were NaN: `+0.0 [NaN, NaN]` in the table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_experiment_reads_not_enough_data_everywhere() {
    use crate::support::*;
    let (moon, mars) = moon_and_mars().await;
    let proxy = TestProxy::start(
        &(moon_mars_config(&moon, &mars, 50, 50)
            + "    control: Moon\n    goals:\n      click: { event: button_click }\n"),
    )
    .await;
    let admin = format!("http://{}", proxy.admin);
    for devices in [0, 1] {
        if devices == 1 {
            let (status, _, _) = get(&proxy.url("/"), &[]).await;
            assert_eq!(status, 200);
        }
        let (status, _, body) =
            get(&format!("{admin}/api/experiments/moon_mars/results"), &[]).await;
        assert_eq!(status, 200);
        let api = String::from_utf8(body.to_vec()).unwrap();
        let results: serde_json::Value = serde_json::from_str(&api).unwrap();
        let verdict = results["verdicts"]["click"][0].as_str().unwrap();
        assert!(
            verdict.starts_with("Mars vs Moon: not enough data yet (")
                && verdict.contains("a verdict needs at least 10 in each"),
            "{verdict}"
        );
        let (status, _, page) = get(&format!("{admin}/experiments"), &[]).await;
        assert_eq!(status, 200);
        let page = String::from_utf8(page.to_vec()).unwrap();
        assert!(
            page.contains("Mars vs Moon: not enough data yet ("),
            "{page}"
        );
        let url = admin.clone();
        let (code, table, err) = tokio::task::spawn_blocking(move || {
            run(&["analyze", "--admin", &url, "--experiment", "moon_mars"])
        })
        .await
        .unwrap();
        assert_eq!(code, 0, "{err}");
        assert!(table.contains("not enough data"), "{table}");
        for (what, text) in [("api", &api), ("page", &page), ("table", &table)] {
            assert!(
                !text.contains("NaN"),
                "{what} with {devices} device(s):\n{text}"
            );
        }
    }
    proxy.stop().await;
}

/// A port that was just bound and closed: nothing listens there, connecting is refused.
fn closed_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// `analyze --admin` / `--prometheus` against a stopped server: the URL it could not
/// reach and why, not the HTTP client's `client error (Connect)`.
#[test]
fn analyze_names_the_url_it_cannot_reach_and_why() {
    let addr = closed_port();
    let (code, out, err) = run(&["analyze", "--admin", &format!("http://{addr}")]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        err.trim_end(),
        format!(
            "abproxy: cannot reach the proxy's admin listener at http://{addr}/api/experiments: connection refused (nothing listens there) — is abproxy running, and is this its admin address (admin.listen)?"
        )
    );
    let (code, _, err) = run(&[
        "analyze",
        "--admin",
        &format!("http://{addr}/"),
        "--experiment",
        "moon_mars",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "cannot reach the proxy's admin listener at http://{addr}/api/experiments/moon_mars/results: connection refused"
        )),
        "{err}"
    );
    let (code, _, err) = run(&["analyze", "--prometheus", &format!("http://{addr}")]);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim_end(),
        format!(
            "abproxy: cannot reach Prometheus at http://{addr}/api/v1/query: connection refused (nothing listens there) — is Prometheus running at this address?"
        )
    );
    assert!(!err.contains("client error"), "{err}");
}
