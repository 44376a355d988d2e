//! `abproxy simulate`, the real binary against an in-process proxy on real sockets: the
//! original demo's report, the sample-ratio check against the proxy's own weights,
//! `--click-probs` names checked, and experiments under a `match.path_prefix`.

use std::process::Command;

use crate::support::binary::BIN;
use crate::support::*;

/// Run the binary off the test's runtime (it blocks): (exit code, stdout, stderr).
async fn simulate(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(BIN)
            .arg("simulate")
            .args(&args)
            .output()
            .expect("abproxy runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

fn args(proxy: &TestProxy, admin: bool, rest: &[&str]) -> Vec<String> {
    let mut args = vec!["--target".to_string(), format!("http://{}", proxy.addr)];
    if admin {
        args.extend(["--admin".to_string(), format!("http://{}", proxy.admin)]);
    }
    args.extend(rest.iter().map(|s| s.to_string()));
    args
}

/// The lines of the block under `header` (up to the next header or blank line).
fn block<'o>(out: &'o str, header: &str) -> Vec<&'o str> {
    out.lines()
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| {
            !l.is_empty() && !l.ends_with(" Exp Split:") && !l.ends_with(" Exp events:")
        })
        .collect()
}

/// `Mars: 208 visits (52.00%)` → ("Mars", 208, "52.00").
fn split_line(line: &str) -> (&str, u64, &str) {
    let (name, rest) = line.split_once(": ").unwrap();
    let (n, rest) = rest.split_once(" visits (").unwrap();
    (name, n.parse().unwrap(), rest.strip_suffix("%)").unwrap())
}

/// `Mars: 208 visits, 62 clicks, Conv=29.81 +- 6.35%, Exact: 30.00%`
/// → ("Mars", 208, 62, "29.81 +- 6.35%", "30.00%").
fn events_line(line: &str) -> (&str, u64, u64, &str, &str) {
    let (name, rest) = line.split_once(": ").unwrap();
    let (n, rest) = rest.split_once(" visits, ").unwrap();
    let (clicks, rest) = rest.split_once(" clicks, Conv=").unwrap();
    let (conv, exact) = rest.split_once(", Exact: ").unwrap();
    (
        name,
        n.parse().unwrap(),
        clicks.parse().unwrap(),
        conv,
        exact,
    )
}

/// New devices, their groups from `/_ab/assignments`, clicks through `/_ab/events`; the
/// report is the original demo's (title, split, events, same order), and the clicks it
/// reports are exactly the conversions the proxy counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_prints_the_demo_report_of_what_the_proxy_counted() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = TestProxy::start(
        &(moon_mars_config(&moon, &mars, 50, 50)
            + "    goals:\n      click: { event: button_click, params: { button: reserve } }\n  btn:\n    title: Button colour\n    state: active\n    variants:\n      White: { weight: 1 }\n      Gold: { weight: 1 }\n    fallback: White\n"),
    )
    .await;
    let (code, out, err) = simulate(args(
        &proxy,
        true,
        &[
            "-n",
            "400",
            "--click-probs",
            "Moon=0.1,Mars=0.3",
            "--seed",
            "7",
        ],
    ))
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Moon/Mars Exp Split:\n"), "{out}");
    let split: Vec<_> = block(&out, "Moon/Mars Exp Split:")
        .into_iter()
        .map(split_line)
        .collect();
    let events: Vec<_> = block(&out, "Moon/Mars Exp events:")
        .into_iter()
        .map(events_line)
        .collect();
    let names = |v: Vec<&str>| v.join(",");
    assert_eq!(
        names(split.iter().map(|s| s.0).collect()),
        "Mars,Moon",
        "{out}"
    );
    assert_eq!(
        names(events.iter().map(|e| e.0).collect()),
        "Mars,Moon",
        "{out}"
    );
    let total: u64 = split.iter().map(|s| s.1).sum();
    assert_eq!(total, 400, "{out}");
    for ((name, n, percent), (_, visits, clicks, conv, exact)) in split.iter().zip(&events) {
        assert_eq!(
            *percent,
            format!("{:.2}", 100.0 * *n as f64 / 400.0),
            "{out}"
        );
        assert_eq!(n, visits, "{out}");
        let p = *clicks as f64 / *n as f64;
        let two_se = 2.0 * (p * (1.0 - p) / *n as f64).sqrt();
        assert_eq!(
            *conv,
            format!("{:.2} +- {:.2}%", 100.0 * p, 100.0 * two_se),
            "{out}"
        );
        let given = if *name == "Moon" { "10.00%" } else { "30.00%" };
        assert_eq!(*exact, given, "{out}");
    }
    // The tag-only experiment has its split under its title, and no events block.
    let btn = block(&out, "Button colour Exp Split:");
    assert_eq!(btn.len(), 2, "{out}");
    assert!(!out.contains("Button colour Exp events:"), "{out}");

    let m = proxy.metrics().await;
    let counted: f64 = ["Moon", "Mars"]
        .iter()
        .map(|v| {
            m[&format!(
                r#"abproxy_conversions_total{{experiment="moon_mars",goal="click",variant="{v}"}}"#
            )]
        })
        .sum();
    let clicks: u64 = events.iter().map(|e| e.2).sum();
    assert_eq!(
        counted, clicks as f64,
        "every simulated click is one conversion"
    );
    assert!(clicks > 40 && clicks < 120, "about 0.2 × 400: {clicks}");
    for (variant, n, _) in &split {
        let assigned = m[&format!(
            r#"abproxy_assignments_total{{experiment="moon_mars",variant="{variant}"}}"#
        )];
        assert_eq!(
            assigned, *n as f64,
            "{variant}: the split is the proxy's assignments"
        );
    }
    for expected in [
        "moon_mars:\n  z-test Mars vs Moon: z = ",
        "  SRM against the proxy's weights Moon=50 Mars=50: p = ",
        "independence of moon_mars and btn",
        "chi2 = ",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in\n{out}");
    }
    proxy.stop().await;
}

fn three_way_config(upstream: &MockUpstream) -> String {
    format!(
        "listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
upstreams:
  app: {}
default_upstream: app
experiments:
  split:
    title: Three ways
    state: active
    variants:
      A: {{ weight: 20 }}
      B: {{ weight: 30 }}
      C: {{ weight: 50 }}
    fallback: A
",
        upstream.url()
    )
}

/// A correct 20/30/50 split is checked against the proxy's 20/30/50, not equal weights;
/// without the admin listener it is not checked at all; against weights that are wrong
/// (given by hand) it is a mismatch. (A correct split reads MISMATCH by chance with
/// probability 0.001, the SRM threshold: a second run is allowed, so the test fails by
/// chance once in a million. Checked against equal weights, the split would read
/// MISMATCH twice with probability 0.996, see below.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_checks_the_split_against_the_proxys_own_weights() {
    let app = MockUpstream::start("app").await;
    let proxy = TestProxy::start(&three_way_config(&app)).await;
    let rest = [
        "-n",
        "300",
        "--click-probs",
        "A=0.1,B=0.1,C=0.1",
        "--seed",
        "3",
    ];

    let mut outputs = Vec::new();
    for _attempt in 0..2 {
        let (code, out, err) = simulate(args(&proxy, true, &rest)).await;
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with("Three ways Exp Split:\n"), "{out}");
        assert!(
            out.contains("  SRM against the proxy's weights A=20 B=30 C=50: p = "),
            "{out}"
        );
        let mismatch = out.contains("MISMATCH");
        outputs.push(out);
        if !mismatch {
            break;
        }
    }
    assert!(
        !outputs.last().unwrap().contains("MISMATCH"),
        "a correct split read MISMATCH twice: {outputs:?}"
    );

    let (code, out, err) = simulate(args(&proxy, false, &rest)).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("split Exp Split:\n"),
        "no title without --admin: {out}"
    );
    assert!(
        out.contains("  SRM: not checked (the designed weights are unknown: give --admin URL"),
        "{out}"
    );
    assert!(!out.contains("MISMATCH"), "{out}");

    // 20/30/50 read as 50/30/20: expected 150/90/60, observed about 60/90/150. The χ²
    // statistic's noncentrality is 300·Σ(p−q)²/q = 189, so it misses p < 0.001 with
    // probability 3e-24 (equal thirds, at 42, missed in 1 run in 480):
    // python3 -c "from scipy.stats import ncx2, chi2; c = chi2.ppf(0.999, 2);
    //   print(ncx2.cdf(c, 2, 189), ncx2.cdf(c, 2, 42))"  → 2.87e-24 0.00208
    let mut wrong = rest.to_vec();
    wrong.extend(["--weights", "A=50,B=30,C=20"]);
    let (code, out, err) = simulate(args(&proxy, false, &wrong)).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("  SRM against the given weights A=50 B=30 C=20: p = 0.0000 (MISMATCH)"),
        "{out}"
    );
    proxy.stop().await;
}

/// A `--click-probs` name that is no variant is an error, not a variant that never
/// clicks: with the admin listener before any visit, without it after the visits (and no
/// report). An admin listener that does not answer is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_refuses_a_click_prob_name_that_is_no_variant() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = TestProxy::start(&moon_mars_config(&moon, &mars, 50, 50)).await;
    let typo = ["-n", "50", "--click-probs", "Moon=0.1,Venus=0.2"];

    let (code, out, err) = simulate(args(&proxy, true, &typo)).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("--click-probs: Venus is not a variant of any experiment (the proxy's variants: moon_mars: Moon, Mars)"),
        "{err}"
    );
    assert_eq!(moon.count() + mars.count(), 0, "checked before any visit");

    let (code, out, err) = simulate(args(&proxy, false, &typo)).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("--click-probs: no visit to / got Venus (variants seen: Mars, Moon)"),
        "{err}"
    );
    assert!(
        out.is_empty(),
        "no report of a simulation that was not the one asked for: {out}"
    );

    let (code, _, err) = simulate(vec![
        "--target".into(),
        format!("http://{}", proxy.addr),
        "--admin".into(),
        "http://127.0.0.1:1".into(),
        "--click-probs".into(),
        "Moon=0.1".into(),
    ])
    .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot read the experiments from the admin listener http://127.0.0.1:1"),
        "{err}"
    );
    proxy.stop().await;
}

/// An experiment under `match.path_prefix: /shop`: with the admin listener, the visits
/// load a page under the prefix by themselves; without it, `--path` says where, and
/// without either the error says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_visits_pages_under_the_experiments_path_prefix() {
    let (moon, mars) = moon_and_mars().await;
    let config = moon_mars_config(&moon, &mars, 50, 50).replace(
        "    fallback: Moon\n",
        "    fallback: Moon\n    match: { path_prefix: /shop }\n    goals:\n      click: { event: button_click }\n",
    ) + "default_upstream: moon\n";
    let proxy = TestProxy::start(&config).await;
    let probs = ["-n", "100", "--click-probs", "Moon=0.5,Mars=0.5"];

    let (code, out, err) = simulate(args(&proxy, true, &probs)).await;
    assert_eq!(code, 0, "{err}");
    let visits: u64 = block(&out, "Moon/Mars Exp Split:")
        .into_iter()
        .map(|l| split_line(l).1)
        .sum();
    assert_eq!(visits, 100, "{out}");
    assert!(out.contains("100 visits to http://"), "{out}");
    assert!(out.contains("/shop, seed "), "{out}");
    let paths: std::collections::BTreeSet<String> = moon
        .requests()
        .iter()
        .chain(&mars.requests())
        .map(|r| r.uri.path().to_string())
        .collect();
    assert_eq!(paths.into_iter().collect::<Vec<_>>(), ["/shop"]);
    let m = proxy.metrics().await;
    let clicks: u64 = block(&out, "Moon/Mars Exp events:")
        .into_iter()
        .map(|l| events_line(l).2)
        .sum();
    let counted: f64 = ["Moon", "Mars"]
        .iter()
        .map(|v| {
            m[&format!(
                r#"abproxy_conversions_total{{experiment="moon_mars",goal="click",variant="{v}"}}"#
            )]
        })
        .sum();
    assert_eq!(counted, clicks as f64, "{out}");

    let mut by_hand = probs.to_vec();
    by_hand.extend(["--path", "/shop/cart"]);
    let (code, out, err) = simulate(args(&proxy, false, &by_hand)).await;
    assert_eq!(code, 0, "{err}");
    let visits: u64 = block(&out, "moon_mars Exp Split:")
        .into_iter()
        .map(|l| split_line(l).1)
        .sum();
    assert_eq!(visits, 100, "{out}");

    let (code, _, err) = simulate(args(&proxy, false, &probs)).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("no visit to / got Moon, Mars (variants seen: none)"),
        "{err}"
    );
    assert!(err.contains("give --path"), "{err}");
    proxy.stop().await;
}

/// `--duration 2s --rate 50` against the real binary: about 100 new devices (never more:
/// 2 s × 50/s is the plan, and the default `-n 1000` does not apply), spread over the
/// two seconds rather than sent at once, with three variants clicking at their own
/// probabilities; no progress line when stderr is not a terminal. The lower bound is
/// generous: a loaded machine may make fewer visits than planned, and the report then
/// says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_runs_for_a_duration_at_a_rate() {
    let app = MockUpstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("abproxy.yaml");
    std::fs::write(
        &config,
        three_way_config(&app).replace(
            "listen: 127.0.0.1:0\nadmin:",
            &format!(
                "listen: 127.0.0.1:0\ndata_dir: {}\nadmin:",
                dir.path().join("data").display()
            ),
        ) + "    goals:\n      click: { event: button_click }\n",
    )
    .unwrap();
    let proxy = crate::support::binary::ProxyProcess::serve(&config);
    let started = std::time::Instant::now();
    let (code, out, err) = simulate(vec![
        "--target".into(),
        format!("http://{}", proxy.addr),
        "--admin".into(),
        format!("http://{}", proxy.admin),
        "--duration".into(),
        "2s".into(),
        "--rate".into(),
        "50".into(),
        "--click-probs".into(),
        "A=0.05,B=0.10,C=0.30".into(),
        "--seed".into(),
        "5".into(),
    ])
    .await;
    let took = started.elapsed();
    assert_eq!(code, 0, "{err}");
    let split: Vec<_> = block(&out, "Three ways Exp Split:")
        .into_iter()
        .map(split_line)
        .collect();
    assert_eq!(
        split.iter().map(|s| s.0).collect::<Vec<_>>(),
        ["A", "B", "C"]
    );
    let devices: u64 = split.iter().map(|s| s.1).sum();
    assert!((20..=100).contains(&devices), "{devices} devices:\n{out}");
    let events: Vec<_> = block(&out, "Three ways Exp events:")
        .into_iter()
        .map(events_line)
        .collect();
    let exact: Vec<&str> = events.iter().map(|e| e.4).collect();
    assert_eq!(exact, ["5.00%", "10.00%", "30.00%"], "{out}");

    // `paced at 50/s for 2s: 100 of 100 planned visits in 2.0 s`
    let paced = out
        .lines()
        .find_map(|l| l.strip_prefix("paced at 50/s for 2s: "))
        .unwrap_or_else(|| panic!("no pacing line in\n{out}"));
    let (made, rest) = paced.split_once(" of 100 planned visits in ").unwrap();
    assert_eq!(made.parse::<u64>().unwrap(), devices, "{out}");
    let seconds: f64 = rest.split_once(" s").unwrap().0.parse().unwrap();
    // The last of the 100 visits is due at 1.98 s: the run cannot end before it, and
    // it ends soon after 2 s even when behind (visits it had no time for are dropped).
    assert!(seconds >= 1.9, "{out}");
    assert!(
        seconds < 20.0 && took < std::time::Duration::from_secs(60),
        "{out}"
    );
    if devices < 100 {
        assert!(rest.contains("(the visits fell behind the pace"), "{out}");
    }

    // The proxy counted every device the report shows.
    let (_, _, metrics) = get(&format!("http://{}/metrics", proxy.admin), &[]).await;
    let metrics = String::from_utf8_lossy(&metrics);
    let assigned: f64 = metrics
        .lines()
        .filter(|l| l.starts_with(r#"abproxy_assignments_total{experiment="split""#))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(assigned, devices as f64, "{metrics}");
    // Fixed weights: one period at most, and the split checked against them.
    assert!(!out.contains(" periods\n"), "{out}");
    assert!(
        out.contains("  SRM against the proxy's weights A=20 B=30 C=50: p = "),
        "{out}"
    );
    assert!(
        !err.contains("/100 devices"),
        "no progress line on a pipe: {err}"
    );
    drop(proxy);

    let (code, _, err) = simulate(vec![
        "--target".into(),
        "http://127.0.0.1:1".into(),
        "--click-probs".into(),
        "A=0.1".into(),
        "--duration".into(),
        "1s".into(),
        "--rate".into(),
        "0".into(),
    ])
    .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("--rate `0` must be a number of new devices per second above 0"),
        "{err}"
    );
}
