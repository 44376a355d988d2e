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

/// `abproxy simulate` against a running proxy: new devices, their groups from
/// `/_ab/assignments`, clicks through `/_ab/events`; the clicks it reports are exactly the
/// conversions the proxy counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_drives_a_proxy_like_visitors() {
    use crate::support::*;
    let (moon, mars) = moon_and_mars().await;
    let proxy = TestProxy::start(
        &(moon_mars_config(&moon, &mars, 50, 50)
            + "    goals:\n      click: { event: button_click, params: { button: reserve } }\n  btn:\n    state: active\n    variants:\n      White: { weight: 1 }\n      Gold: { weight: 1 }\n    fallback: White\n"),
    )
    .await;
    let target = format!("http://{}", proxy.addr);
    let out = tokio::task::spawn_blocking(move || {
        run(&[
            "simulate",
            "--target",
            &target,
            "-n",
            "400",
            "--click-probs",
            "Moon=0.1,Mars=0.3",
            "--seed",
            "7",
        ])
    })
    .await
    .unwrap();
    let (code, out, err) = out;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("simulated 400 visits to http://"), "{out}");
    // The number after `label` on a line, up to the next comma.
    let number_after = |line: &str, label: &str| -> u64 {
        line.split(label)
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let clicks: u64 = out
        .lines()
        .filter(|l| l.contains(", clicks "))
        .map(|l| number_after(l, ", clicks "))
        .sum();
    let visits: u64 = out
        .lines()
        .filter(|l| {
            l.trim_start().starts_with("Moon: visits") || l.trim_start().starts_with("Mars: visits")
        })
        .map(|l| number_after(l, "visits "))
        .sum();
    assert_eq!(visits, 400, "{out}");
    let m = proxy.metrics().await;
    let counted: f64 = ["Moon", "Mars"]
        .iter()
        .map(|v| {
            m[&format!(
                r#"abproxy_conversions_total{{experiment="moon_mars",goal="click",variant="{v}"}}"#
            )]
        })
        .sum();
    assert_eq!(
        counted, clicks as f64,
        "every simulated click is one conversion"
    );
    assert!(clicks > 40 && clicks < 120, "about 0.2 × 400: {clicks}");
    for expected in [
        "experiment moon_mars",
        "Exact: 30.00%",
        "z-test Mars vs Moon: z = ",
        "SRM against equal weights: p = ",
        "independence of btn and moon_mars",
        "chi2 = ",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in\n{out}");
    }
    assert_eq!(
        m[r#"abproxy_assignments_total{experiment="btn",variant="Gold"}"#]
            + m[r#"abproxy_assignments_total{experiment="btn",variant="White"}"#],
        400.0
    );
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
