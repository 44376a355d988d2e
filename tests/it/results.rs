//! Results from live traffic: `GET /api/experiments/{key}/results`, `abproxy analyze
//! --admin`, and `abproxy analyze --prometheus` against Debian's Prometheus scraping two
//! replicas, one of which goes away.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::binary::BIN;
use crate::support::*;

pub const PROMETHEUS: &str = "/usr/bin/prometheus";

fn goals_config(moon: &MockUpstream, mars: &MockUpstream) -> String {
    moon_mars_config(moon, mars, 50, 50)
        + "    control: Moon
    goals:
      click: { event: button_click }
      revenue: { event: purchase, value: { param: amount } }
"
}

/// What a replica was driven with, per variant: (users, clicks, revenue sum).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Driven {
    moon: (u64, u64, f64),
    mars: (u64, u64, f64),
}

/// `n` new visitors; every third clicks; every fifth buys for 4.
async fn drive(proxy: &TestProxy, n: usize) -> Driven {
    let mut driven = Driven::default();
    for i in 0..n {
        let (_, headers, _) = get(&proxy.url("/"), &[]).await;
        let jar = cookies_after(&headers, "");
        let arm = if headers["x-upstream"] == "moon" {
            &mut driven.moon
        } else {
            &mut driven.mars
        };
        arm.0 += 1;
        let mut events = Vec::new();
        if i % 3 == 0 {
            events.push(r#"{"event": "button_click"}"#);
            arm.1 += 1;
        }
        if i % 5 == 0 {
            events.push(r#"{"event": "purchase", "params": {"amount": 4}}"#);
            arm.2 += 4.0;
        }
        if !events.is_empty() {
            let (status, _, body) = send_text(
                http::Request::post(proxy.url("/_ab/events")).header("cookie", jar),
                &format!("[{}]", events.join(",")),
            )
            .await;
            assert_eq!(status, 202, "{body}");
        }
    }
    driven
}

fn analyze(args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .arg("analyze")
        .args(args)
        .output()
        .expect("abproxy runs");
    assert!(
        out.status.success(),
        "abproxy analyze {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// The users, conversions and value sums of a report (or of results) per variant.
fn observed(report: &Value) -> Driven {
    let arm = |name: &str| {
        let click = &report["goals"]["click"]["variants"][name];
        let revenue = &report["goals"]["revenue"]["variants"][name];
        (
            click["users"].as_u64().unwrap(),
            click["conversions"].as_u64().unwrap(),
            revenue["mean"].as_f64().unwrap() * revenue["users"].as_f64().unwrap(),
        )
    };
    let round = |(u, c, r): (u64, u64, f64)| (u, c, (r * 1e6).round() / 1e6);
    Driven {
        moon: round(arm("Moon")),
        mars: round(arm("Mars")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_come_from_the_live_counts_through_the_api_and_analyze_admin() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = TestProxy::start(&goals_config(&moon, &mars)).await;
    let driven = drive(&proxy, 60).await;
    let admin = format!("http://{}", proxy.admin);

    let (status, _, body) = get(&format!("{admin}/api/experiments/moon_mars/results"), &[]).await;
    assert_eq!(status, 200);
    let results: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(observed(&results), driven);
    assert_eq!(results["control"], "Moon");
    assert_eq!(results["run"]["number"], 1);
    assert_eq!(results["confidence"], 0.95);
    assert!(results["srm_p_value"].is_number());
    assert!(results["verdicts"]["click"][0]
        .as_str()
        .unwrap()
        .starts_with("Mars"));
    assert_eq!(
        results["counts"]["weights"],
        serde_json::json!({"Mars": 50.0, "Moon": 50.0})
    );

    let (status, _, body) = get(
        &format!("{admin}/api/experiments/moon_mars/results?confidence=0.99"),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let strict: Value = serde_json::from_slice(&body).unwrap();
    let width = |r: &Value| {
        let m = &r["goals"]["click"]["variants"]["Mars"];
        m["ci_high"].as_f64().unwrap() - m["ci_low"].as_f64().unwrap()
    };
    assert!(width(&strict) > width(&results), "99% intervals are wider");
    let (status, _, _) = get(
        &format!("{admin}/api/experiments/moon_mars/results?confidence=2"),
        &[],
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, _) = get(&format!("{admin}/api/experiments/nope/results"), &[]).await;
    assert_eq!(status, 404);
    // Paths that only look like a results path get an answer, not a dropped connection.
    for path in ["/api/experiments/results", "/api/experiments//results"] {
        let (status, _, _) = get(&format!("{admin}{path}"), &[]).await;
        assert_eq!(status, 405, "{path}");
    }

    let from_cli = tokio::task::block_in_place(|| {
        analyze(&[
            "--admin",
            &admin,
            "--experiment",
            "moon_mars",
            "--format",
            "json",
        ])
    });
    assert_eq!(observed(&from_cli), driven);
    assert_eq!(
        from_cli["goals"]["click"]["variants"]["Mars"]["p_value"],
        results["goals"]["click"]["variants"]["Mars"]["p_value"]
    );
    let table = tokio::task::block_in_place(|| {
        Command::new(BIN)
            .args(["analyze", "--admin", &admin])
            .output()
            .unwrap()
    });
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("run 1 (since "), "{table}");
    assert!(
        table.contains("goal click") && table.contains("goal revenue"),
        "{table}"
    );
    proxy.stop().await;
}

/// A Prometheus server on loopback scraping the given admin listeners every second.
pub struct Prometheus {
    child: Child,
    pub url: String,
    /// Its command line, to start it again on the same storage.
    args: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(targets: &[SocketAddr]) -> Prometheus {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Prometheus::start_on(targets, port, "").await
    }

    /// As [`Prometheus::start`], listening on `port` (for replicas told its URL before
    /// it starts), its API under `route_prefix` ("" or "/prom", as behind a proxy).
    pub async fn start_on(targets: &[SocketAddr], port: u16, route_prefix: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: abproxy\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ),
        )
        .unwrap();
        let route = if route_prefix.is_empty() {
            "/"
        } else {
            route_prefix
        };
        let args = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            format!("--web.external-url=http://127.0.0.1:{port}{route_prefix}"),
            format!("--web.route-prefix={route}"),
        ];
        let prometheus = Prometheus {
            child: Prometheus::spawn(&args),
            url: format!("http://127.0.0.1:{port}{route_prefix}"),
            args,
            _dir: dir,
        };
        prometheus.ready().await;
        prometheus
    }

    fn spawn(args: &[String]) -> Child {
        Command::new(PROMETHEUS)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts")
    }

    async fn ready(&self) {
        let ready = format!("{}/-/ready", self.url);
        eventually(Duration::from_secs(30), "Prometheus is ready", || {
            let ready = ready.clone();
            async move {
                let client = client();
                match client.request(request(&ready, &[])).await {
                    Ok(r) => r.status() == 200,
                    Err(_) => false,
                }
            }
        })
        .await;
    }

    /// Stop it (SIGTERM, as an orchestrator does), its storage kept.
    pub fn stop(&mut self) {
        // SAFETY: kill(2) on the pid of a child we own; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "Prometheus did not stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start it again after [`Prometheus::stop`], on the same port and storage.
    pub async fn restart(&mut self) {
        self.child = Prometheus::spawn(&self.args);
        self.ready().await;
    }

    /// Wait until Prometheus has scraped `replicas` replicas in run 1 of `key`.
    pub async fn wait_scraping(&self, key: &str, replicas: usize) {
        let promql = format!("count(abproxy_experiment_run{{experiment=\"{key}\"}} == 1)");
        crate::support::eventually(
            std::time::Duration::from_secs(30),
            &format!("Prometheus scrapes {replicas} replicas"),
            || async { self.value(&promql).await == Some(replicas as f64) },
        )
        .await;
    }

    /// An instant query's single value (or `None` for an empty vector).
    pub async fn value(&self, promql: &str) -> Option<f64> {
        let url = format!(
            "{}/api/v1/query?query={}",
            self.url,
            abproxy::transport::json_get::query_component(promql)
        );
        let (status, _, body) = get(&url, &[]).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let answer: Value = serde_json::from_slice(&body).unwrap();
        answer["data"]["result"][0]["value"][1]
            .as_str()
            .map(|v| v.parse().unwrap())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `abproxy analyze --prometheus URL --experiment moon_mars --format json`.
fn analyze_prometheus(url: &str) -> Value {
    tokio::task::block_in_place(|| {
        analyze(&[
            "--prometheus",
            url,
            "--experiment",
            "moon_mars",
            "--format",
            "json",
        ])
    })
}

/// Two replicas; one stops, then comes back (same data directory) under a new address.
/// `analyze --prometheus` counts the stopped replica although its series went stale,
/// and counts the one that came back once, not once per address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyze_prometheus_sums_replicas_including_gone_and_moved_ones() {
    if !require_tools(&[PROMETHEUS], "apt-get install prometheus") {
        return;
    }
    let (moon, mars) = moon_and_mars().await;
    let a = TestProxy::start(&goals_config(&moon, &mars)).await;
    let b = TestProxy::start(&goals_config(&moon, &mars)).await;
    // Where b will come back: reserved now, so Prometheus can be told about it.
    let b_moved_admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b_moved = b_moved_admin.local_addr().unwrap();
    let prometheus = Prometheus::start(&[a.admin, b.admin, b_moved]).await;
    let (from_a, from_b) = (drive(&a, 50).await, drive(&b, 30).await);
    let users = |d: &Driven| (d.moon.0 + d.mars.0) as f64;
    let all_users = users(&from_a) + users(&from_b);
    eventually(
        Duration::from_secs(20),
        "Prometheus has scraped both replicas' final counts",
        || async { prometheus.value("sum(abproxy_assignments_total)").await == Some(all_users) },
    )
    .await;

    // Replica b goes away: its series go stale, and a plain sum forgets it.
    let (b_dir, b_config) = b.stop_keep_files().await;
    eventually(Duration::from_secs(20), "b's series are stale", || async {
        prometheus.value("sum(abproxy_assignments_total)").await == Some(users(&from_a))
    })
    .await;
    let url = prometheus.url.clone();
    let report = analyze_prometheus(&url);
    let sum = |x: (u64, u64, f64), y: (u64, u64, f64)| (x.0 + y.0, x.1 + y.1, x.2 + y.2);
    let expected = Driven {
        moon: sum(from_a.moon, from_b.moon),
        mars: sum(from_a.mars, from_b.mars),
    };
    assert_eq!(
        observed(&report),
        expected,
        "b's counts kept after it went away"
    );
    assert_eq!(report["control"], "Moon");
    assert!(
        report["srm_p_value"].is_number(),
        "weights came from the replicas"
    );

    // b comes back from its data directory under another address, and serves more.
    b_moved_admin.set_nonblocking(true).unwrap();
    let admin = tokio::net::TcpListener::from_std(b_moved_admin).unwrap();
    let b = TestProxy::start_at_with_admin(b_dir, b_config, admin).await;
    let more = drive(&b, 10).await;
    let b_now = users(&from_b) + users(&more);
    let on_new_address = format!(r#"sum(abproxy_assignments_total{{instance="{b_moved}"}})"#);
    eventually(
        Duration::from_secs(20),
        "b scraped at its new address",
        || async { prometheus.value(&on_new_address).await == Some(b_now) },
    )
    .await;
    let report = analyze_prometheus(&url);
    assert_eq!(
        observed(&report),
        Driven {
            moon: sum(expected.moon, more.moon),
            mars: sum(expected.mars, more.mars),
        },
        "b counted once, with what it served at its new address"
    );
    a.stop().await;
    b.stop().await;
}

/// A run whose weights moved: `analyze --prometheus` reads the per-period series and gives
/// the admin API's stratified answer, number for number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyze_prometheus_stratifies_by_period_like_the_admin_api() {
    if !require_tools(&[PROMETHEUS], "apt-get install prometheus") {
        return;
    }
    let (moon, mars) = moon_and_mars().await;
    let proxy = TestProxy::start(&goals_config(&moon, &mars)).await;
    let prometheus = Prometheus::start(&[proxy.admin]).await;
    let first = drive(&proxy, 60).await;
    let moved = goals_config(&moon, &mars).replace(
        &moon_mars_config(&moon, &mars, 50, 50),
        &moon_mars_config(&moon, &mars, 20, 80),
    );
    std::fs::write(
        &proxy.config_path,
        crate::support::with_data_dir(&moved, proxy.dir.path()),
    )
    .unwrap();
    let admin = format!("http://{}", proxy.admin);
    let results_url = format!("{admin}/api/experiments/moon_mars/results");
    eventually(
        Duration::from_secs(20),
        "the reload starts period 2",
        || async {
            let (_, _, body) = get(&results_url, &[]).await;
            let results: Value = serde_json::from_slice(&body).unwrap();
            results["periods"].as_array().map(Vec::len) == Some(2)
        },
    )
    .await;
    let second = drive(&proxy, 90).await;
    let all = (first.moon.0 + first.mars.0 + second.moon.0 + second.mars.0) as f64;
    eventually(
        Duration::from_secs(20),
        "Prometheus has scraped the final per-period counts",
        || async {
            prometheus
                .value("sum(abproxy_period_assignments_total)")
                .await
                == Some(all)
                && prometheus
                    .value(r#"sum(abproxy_period_share{period="2"})"#)
                    .await
                    .is_some()
        },
    )
    .await;
    let (_, _, body) = get(&results_url, &[]).await;
    let from_admin: Value = serde_json::from_slice(&body).unwrap();
    let from_prometheus = analyze_prometheus(&prometheus.url);
    assert_eq!(from_admin["stratified"], true, "{from_admin}");
    assert_eq!(from_prometheus["stratified"], true, "{from_prometheus}");
    let close = |a: &Value, b: &Value, what: &str| {
        let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
        assert!(
            (a - b).abs() <= 1e-12 * a.abs().max(1.0),
            "{what}: {a} vs {b}"
        );
    };
    close(
        &from_admin["srm_p_value"],
        &from_prometheus["srm_p_value"],
        "srm",
    );
    for goal in ["click", "revenue"] {
        for (variant, keys) in [
            ("Moon", &["users", "conversions", "rate"][..]),
            (
                "Mars",
                &[
                    "users",
                    "rate",
                    "diff",
                    "ci_low",
                    "ci_high",
                    "p_value",
                    "p_value_sequential",
                ][..],
            ),
        ] {
            for key in keys {
                close(
                    &from_admin["goals"][goal]["variants"][variant][key],
                    &from_prometheus["goals"][goal]["variants"][variant][key],
                    &format!("{goal} {variant} {key}"),
                );
            }
        }
    }
    proxy.stop().await;
}

/// The admin page shows the devices over time and, per goal, the verdicts, the table
/// and two server-drawn SVG charts (the charts over time need the history the flusher
/// writes each second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_shows_results_tables_and_charts() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = TestProxy::start(&goals_config(&moon, &mars)).await;
    let first = drive(&proxy, 30).await;
    tokio::time::sleep(abproxy::counting::store::FLUSH_INTERVAL + Duration::from_millis(300)).await;
    let second = drive(&proxy, 30).await;
    let (status, headers, body) = get(&format!("http://{}/experiments", proxy.admin), &[]).await;
    assert_eq!(status, 200);
    let page = String::from_utf8(body.to_vec()).unwrap();
    let section = &page[page
        .find(r#"<section class="results" data-key="moon_mars">"#)
        .expect("a results section")..];
    assert!(section.contains("goal click") && section.contains("goal revenue"));
    let verdicts = section.matches(r#"<p class="verdict"#).count();
    assert_eq!(
        verdicts, 2,
        "one verdict per goal (one variant against the control)"
    );
    let moon_users = first.moon.0 + second.moon.0;
    assert!(
        section.contains(&format!("Moon</td><td>{moon_users}</td>")),
        "Moon's users in the table"
    );
    assert_eq!(
        section.matches("<svg").count(),
        5,
        "the devices over time, and two charts per goal (rates now, difference over time)"
    );
    assert_eq!(
        section.matches("<polyline").count(),
        4,
        "a devices line per variant, and Mars's difference to Moon per goal"
    );
    for title in [
        "Devices per variant over the run",
        "Difference to Moon over the run (goal click)",
        "Difference to Moon over the run (goal revenue)",
        "Conversion rate per variant (goal click)",
    ] {
        assert!(
            section.contains(&format!(r#"class="title">{title}</text>"#)),
            "{title}"
        );
    }
    assert!(!section.contains("no data yet") && !section.contains("no devices yet"));
    // One word for devices in every column header and label, and why exposures exceed them.
    let column_headers: Vec<&str> = page
        .split("<th")
        .skip(1)
        .map(|h| h.split("</th>").next().unwrap())
        .collect();
    assert!(
        column_headers
            .iter()
            .any(|h| h.ends_with(">devices</abbr>")),
        "{column_headers:?}"
    );
    for word in ["users", "assigned", "visits"] {
        assert!(
            !column_headers
                .iter()
                .any(|h| h.to_lowercase().ends_with(word)),
            "{word}: {column_headers:?}"
        );
    }
    assert!(page.contains("a device makes many requests, so exposures exceed devices"));
    assert!(!page.contains("src=\"http"), "no external resources");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    proxy.stop().await;
}

/// A proxy with a token (so it can be changed) and the two goals, in state `state`.
pub async fn goals_proxy_with_token(
    moon: &MockUpstream,
    mars: &MockUpstream,
    state: &str,
) -> TestProxy {
    let dir = tempfile::tempdir().unwrap();
    let config_path = crate::admin::write_config_with_token(
        dir.path(),
        moon,
        mars,
        state,
        "    control: Moon
    goals:
      click: { event: button_click }
      revenue: { event: purchase, value: { param: amount } }
",
    );
    TestProxy::start_at(dir, config_path).await
}

pub async fn patch_state(proxy: &TestProxy, body: &str) {
    let (status, _, answer) = send_text(
        http::Request::patch(format!("http://{}/api/experiments/moon_mars", proxy.admin))
            .header("authorization", format!("Bearer {}", crate::admin::TOKEN)),
        body,
    )
    .await;
    assert_eq!(status, 200, "{body}: {answer}");
}

pub async fn results_of(proxy: &TestProxy, query: &str) -> (u16, Value) {
    let (status, _, body) = get(
        &format!(
            "http://{}/api/experiments/moon_mars/results{query}",
            proxy.admin
        ),
        &[("authorization", &format!("Bearer {}", crate::admin::TOKEN))],
    )
    .await;
    (status.as_u16(), serde_json::from_slice(&body).unwrap())
}

/// The detour the issue describes: stop (run 1 ends), start again (run 2), roll out.
/// Run 2 is what the API, `analyze` and the metrics show by default; run 1 stays
/// reachable with `?run=1` and `analyze --run 1`, and a bad run is a clear 4xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_run_stays_reachable_through_the_api_and_analyze() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = goals_proxy_with_token(&moon, &mars, "active").await;
    let first = drive(&proxy, 45).await;
    patch_state(&proxy, r#"{"state":"inactive"}"#).await;
    patch_state(&proxy, r#"{"state":"active"}"#).await;
    let second = drive(&proxy, 12).await;
    patch_state(&proxy, r#"{"state":"rollout","rollout_variant":"Mars"}"#).await;

    let (status, latest) = results_of(&proxy, "").await;
    assert_eq!(status, 200);
    assert_eq!(latest["run"]["number"], 2, "the last run by default");
    assert_eq!(observed(&latest), second);
    let numbers: Vec<&Value> = latest["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["number"])
        .collect();
    assert_eq!(numbers, [1, 2], "every run is listed");
    let (status, earlier) = results_of(&proxy, "?run=1").await;
    assert_eq!(status, 200, "{earlier}");
    assert_eq!(earlier["run"]["number"], 1);
    assert!(earlier["run"]["ended_at"].is_string());
    assert_eq!(observed(&earlier), first, "run 1's counts, not run 2's");
    let (status, strict) = results_of(&proxy, "?run=1&confidence=0.99").await;
    assert_eq!(
        (status, &strict["confidence"]),
        (200, &serde_json::json!(0.99))
    );

    for (query, status, message) in [
        (
            "?run=3",
            404,
            "experiment `moon_mars` has no run 3 (its runs are 1, 2)",
        ),
        ("?run=0", 404, "has no run 0"),
        ("?run=one", 400, "run: `one` is not a run number"),
        ("?run=-1", 400, "is not a run number"),
        ("?run=", 400, "is not a run number"),
        ("?run=1&run=2", 400, "run: given twice"),
    ] {
        let (got, answer) = results_of(&proxy, query).await;
        assert_eq!(got, status, "{query}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(message),
            "{query}: {answer}"
        );
    }

    // The page: the run asked for, or the last one with the reason.
    for (query, status, shows) in [
        ("", 200, "Showing <strong>run 2</strong> of 2"),
        ("?run.moon_mars=1", 200, "Showing <strong>run 1</strong> of 2"),
        (
            "?run.moon_mars=9",
            404,
            "experiment `moon_mars` has no run 9 (its runs are 1, 2): showing the last run instead.",
        ),
        ("?run.moon_mars=x", 400, "run.moon_mars: run: `x` is not a run number"),
        ("?run.nope=1", 404, "run.nope: no experiment `nope`"),
    ] {
        let (got, _, page) = get(
            &format!("http://{}/experiments{query}", proxy.admin),
            &[("authorization", &format!("Bearer {}", crate::admin::TOKEN))],
        )
        .await;
        let page = String::from_utf8_lossy(&page);
        assert_eq!(got.as_u16(), status, "{query}");
        assert!(page.contains(shows), "{query}: {page}");
    }

    // The metrics are those of the last run, started again from 0 with it
    // (`abproxy_experiment_run` says which).
    let m = proxy.metrics().await;
    let run_gauge = m
        .iter()
        .find(|(k, _)| {
            k.starts_with(r#"abproxy_experiment_run{control="Moon",experiment="moon_mars""#)
        })
        .map(|(_, v)| *v);
    assert_eq!(run_gauge, Some(2.0));
    let assigned = |variant: &str| {
        m[&format!(r#"abproxy_assignments_total{{experiment="moon_mars",variant="{variant}"}}"#)]
    };
    assert_eq!(
        (assigned("Moon"), assigned("Mars")),
        (second.moon.0 as f64, second.mars.0 as f64)
    );

    let admin = format!("http://{}", proxy.admin);
    let cli = |args: &[&str]| {
        tokio::task::block_in_place(|| {
            Command::new(BIN)
                .arg("analyze")
                .args(["--admin", &admin, "--token", crate::admin::TOKEN])
                .args(args)
                .output()
                .unwrap()
        })
    };
    let json = cli(&[
        "--experiment",
        "moon_mars",
        "--run",
        "1",
        "--format",
        "json",
    ]);
    assert!(
        json.status.success(),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(observed(&report), first);
    let table = cli(&["--experiment", "moon_mars", "--run", "1"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.starts_with("run 1 (")
            && table
                .lines()
                .next()
                .unwrap()
                .contains("; the latest is run 2) from http://"),
        "{table}"
    );
    let latest_table = cli(&["--experiment", "moon_mars"]);
    let latest_table = String::from_utf8_lossy(&latest_table.stdout);
    assert!(
        latest_table.starts_with("run 2 (") && !latest_table.contains("the latest is"),
        "{latest_table}"
    );
    let missing = cli(&["--experiment", "moon_mars", "--run", "7"]);
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("404 Not Found: experiment `moon_mars` has no run 7 (its runs are 1, 2)"),
        "{stderr}"
    );
    proxy.stop().await;
}

/// Rolling the winner out straight from the active run (the page's one click) ends
/// run 1 and starts none: the results and the metrics keep showing run 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_out_from_the_active_run_keeps_its_results_in_view() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = goals_proxy_with_token(&moon, &mars, "active").await;
    let driven = drive(&proxy, 30).await;
    patch_state(&proxy, r#"{"state":"rollout","rollout_variant":"Mars"}"#).await;
    let (_, results) = results_of(&proxy, "").await;
    assert_eq!(results["run"]["number"], 1);
    assert!(results["run"]["ended_at"].is_string());
    assert_eq!(observed(&results), driven);
    // Rolled out: every new visitor gets Mars, and nothing more is counted.
    for _ in 0..5 {
        let (_, headers, _) = get(&proxy.url("/"), &[]).await;
        assert_eq!(headers["x-upstream"], "mars");
    }
    let m = proxy.metrics().await;
    let total: f64 = ["Moon", "Mars"]
        .iter()
        .map(|v| {
            m[&format!(r#"abproxy_assignments_total{{experiment="moon_mars",variant="{v}"}}"#)]
        })
        .sum();
    assert_eq!(total, (driven.moon.0 + driven.mars.0) as f64);
    proxy.stop().await;
}
