//! `abproxy analyze --counts` and `abproxy plan`, through the binary.

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
        out.contains("Mars beats Moon: +3.0 pts [+0.2, +5.8], p = 0.035; keep collecting"),
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
    let (code, _, err) = run(&["plan", "--baseline", "0.99", "--mde", "0.02"]);
    assert_eq!(code, 1);
    assert!(err.contains("between 0 and 1"), "{err}");
}
