//! The bandit's PromQL in Prometheus's own engine (`promtool test rules`), on series made
//! for each kind of replica a cluster has over time.

use std::process::Command;

use crate::support::*;

const PROMTOOL: &str = "/usr/bin/promtool";

/// The bandit's PromQL (`state::bandit::count_queries`) evaluated by Prometheus's own
/// engine (`promtool test rules`) on series made for each case, at 10m:
/// - r1, live, scraped by two jobs: A 100 (5 conversions), B 50 — counted once;
/// - r2, stopped at 5m: its last A 40 (3 conversions) still counts;
/// - r3, moved from c:1 (A 8, stale at 4m) to d:1 (A 13 now): counted once, 13;
/// - r4, in run 2: not counted;
/// - f:1, used by r5 (A 7, stale at 4m) and then by r6 (A 6 now): one series of counts
///   and two replica ids; the query is not refused, and the address counts once, 6;
/// - conversions on another goal: not counted.
///
/// A = 100 + 40 + 13 + 6 = 159 devices, 5 + 3 = 8 conversions; B = 50 and none.
#[test]
fn the_bandits_query_counts_each_replica_of_the_run_once_gone_or_moved() {
    if !require_tools(&[PROMTOOL], "apt-get install prometheus") {
        return;
    }
    let (users, conversions) = abproxy::state::bandit::count_queries("k", 1, "click");
    let series = |metric: &str, labels: &str, values: &str| {
        format!(
            "      - series: '{metric}{{experiment=\"k\",{labels}}}'\n        values: '{values}'\n"
        )
    };
    let run = "abproxy_experiment_run";
    let assigned = "abproxy_assignments_total";
    let converted = "abproxy_conversions_total";
    let mut input = String::new();
    for job in ["abproxy", "dup"] {
        let at = format!(r#"instance="a:1",job="{job}""#);
        input += &series(
            run,
            &format!(r#"control="A",replica="r1",{at}"#),
            "1 1 1 1 1 1 1 1 1 1 1",
        );
        input += &series(
            assigned,
            &format!(r#"variant="A",{at}"#),
            "0 10 20 30 40 50 60 70 80 90 100",
        );
        input += &series(
            assigned,
            &format!(r#"variant="B",{at}"#),
            "0 5 10 15 20 25 30 35 40 45 50",
        );
    }
    let a1 = r#"instance="a:1",job="abproxy""#;
    input += &series(
        converted,
        &format!(r#"variant="A",goal="click",{a1}"#),
        "0 0 1 1 2 2 3 3 4 4 5",
    );
    input += &series(
        converted,
        &format!(r#"variant="A",goal="signup",{a1}"#),
        "77 77 77 77 77 77 77 77 77 77 77",
    );
    let b1 = r#"instance="b:1",job="abproxy""#;
    input += &series(
        run,
        &format!(r#"control="A",replica="r2",{b1}"#),
        "1 1 1 1 1 stale",
    );
    input += &series(
        assigned,
        &format!(r#"variant="A",{b1}"#),
        "10 20 30 40 40 stale",
    );
    input += &series(
        converted,
        &format!(r#"variant="A",goal="click",{b1}"#),
        "0 1 2 3 3 stale",
    );
    for (at, run_values, a_values) in [
        ("c:1", "1 1 1 1 stale", "5 6 7 8 stale"),
        ("d:1", "_ _ _ _ _ _ 1 1 1 1 1", "_ _ _ _ _ _ 9 10 11 12 13"),
    ] {
        let at = format!(r#"instance="{at}",job="abproxy""#);
        input += &series(
            run,
            &format!(r#"control="A",replica="r3",{at}"#),
            run_values,
        );
        input += &series(assigned, &format!(r#"variant="A",{at}"#), a_values);
    }
    let e1 = r#"instance="e:1",job="abproxy""#;
    input += &series(
        run,
        &format!(r#"control="A",replica="r4",{e1}"#),
        "2 2 2 2 2 2 2 2 2 2 2",
    );
    input += &series(
        assigned,
        &format!(r#"variant="A",{e1}"#),
        "1000 1000 1000 1000 1000 1000 1000 1000 1000 1000 1000",
    );
    input += &series(
        converted,
        &format!(r#"variant="A",goal="click",{e1}"#),
        "500 500 500 500 500 500 500 500 500 500 500",
    );
    let f1 = r#"instance="f:1",job="abproxy""#;
    input += &series(
        run,
        &format!(r#"control="A",replica="r5",{f1}"#),
        "1 1 1 1 stale",
    );
    input += &series(
        run,
        &format!(r#"control="A",replica="r6",{f1}"#),
        "_ _ _ _ _ 1 1 1 1 1 1",
    );
    input += &series(
        assigned,
        &format!(r#"variant="A",{f1}"#),
        "7 7 7 7 stale 1 2 3 4 5 6",
    );

    let quoted = |promql: &str| promql.replace('\'', "''");
    let tests = format!(
        "tests:
  - interval: 1m
    input_series:
{input}    promql_expr_test:
      - expr: '{users}'
        eval_time: 10m
        exp_samples:
          - labels: '{{variant=\"A\"}}'
            value: 159
          - labels: '{{variant=\"B\"}}'
            value: 50
      - expr: '{conversions}'
        eval_time: 10m
        exp_samples:
          - labels: '{{variant=\"A\"}}'
            value: 8
",
        users = quoted(&users),
        conversions = quoted(&conversions),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bandit_query_test.yml");
    std::fs::write(&file, &tests).unwrap();
    let out = Command::new(PROMTOOL)
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "{}{}\n{tests}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
