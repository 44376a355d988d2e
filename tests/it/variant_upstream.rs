//! The per-variant upstream series the guardrails read (`abproxy_variant_responses_total`,
//! `abproxy_variant_duration_seconds`), through the real binary: a variant whose
//! upstream answers 500, one whose upstream is down (served by the fallback, whose answer
//! is not the variant's), a client's broken body (never the variant's); and their
//! PromQL (`counting::upstream_window::prometheus_queries`) in Prometheus's own engine.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::support::binary::ProxyProcess;
use crate::support::*;

const PROMTOOL: &str = "/usr/bin/promtool";
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];
const VARIANTS: [&str; 3] = ["Control", "Broken", "Down"];

/// An upstream that answers every request `500`.
async fn failing_upstream() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_: http::Request<Incoming>| async {
                    let mut response = http::Response::new(Full::new(Bytes::from("broken")));
                    *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                    Ok::<_, hyper::Error>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, task)
}

fn responses(m: &HashMap<String, f64>, variant: &str, class: &str) -> f64 {
    m[&format!(
        r#"abproxy_variant_responses_total{{code_class="{class}",experiment="split",variant="{variant}"}}"#
    )]
}

fn observed(m: &HashMap<String, f64>, variant: &str) -> f64 {
    m[&format!(
        r#"abproxy_variant_duration_seconds_count{{experiment="split",variant="{variant}"}}"#
    )]
}

async fn scrape(proxy: &ProxyProcess) -> HashMap<String, f64> {
    let (status, _, body) = get(&format!("http://{}/metrics", proxy.admin), &[]).await;
    assert_eq!(status, 200);
    parse_metrics(std::str::from_utf8(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_variant_counts_what_its_own_upstream_answered_on_the_first_attempt() {
    let good = MockUpstream::start("good").await;
    let (failing, _failing_task) = failing_upstream().await;
    // A port nothing listens on: connections are refused.
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("abproxy.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0
data_dir: {data}
admin:
  listen: 127.0.0.1:0
upstreams:
  good: {good}
  failing: {failing}
  down: {down}
experiments:
  split:
    title: Three upstreams
    state: active
    variants:
      Control: {{ weight: 1, upstream: good }}
      Broken: {{ weight: 1, upstream: failing }}
      Down: {{ weight: 1, upstream: down }}
    fallback: Control
    upstream_down: fallback
",
            data = dir.path().join("data").display(),
            good = good.url(),
        ),
    )
    .unwrap();
    let proxy = ProxyProcess::serve(&config);

    let before = scrape(&proxy).await;
    for variant in VARIANTS {
        for class in CLASSES {
            assert_eq!(responses(&before, variant, class), 0.0, "{variant} {class}");
        }
        assert_eq!(observed(&before, variant), 0.0, "{variant}");
    }

    // New devices, hashed over the three variants; each keeps its cookies.
    let client = client();
    let mut cookies_of = HashMap::new();
    let mut answered_500 = 0.0;
    for _ in 0..90 {
        let url = format!("http://{}/page", proxy.addr);
        let (status, headers, _) = send(&client, request(&url, &[])).await;
        let cookies: Vec<&str> = headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .map(|c| c.to_str().unwrap().split(';').next().unwrap())
            .collect();
        let id = set_device_id(&headers).expect("a new device gets an id");
        cookies_of.insert(id, cookies.join("; "));
        match status.as_u16() {
            500 => answered_500 += 1.0,
            200 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    // The good upstream saw Control's requests and Down's, retried by the fallback.
    let at_good = good.requests();
    let reached_good = |variant: &str| {
        let tag = format!("split={variant}");
        at_good
            .iter()
            .filter(|r| r.headers["x-ab-assignments"].to_str().unwrap() == tag)
            .count() as f64
    };
    let (control, fallen_back) = (reached_good("Control"), reached_good("Down"));
    assert!(
        control > 0.0 && fallen_back > 0.0 && answered_500 > 0.0,
        "90 devices reach all three variants: {control} {fallen_back} {answered_500}"
    );
    assert_eq!(control + fallen_back + answered_500, 90.0);

    let m = scrape(&proxy).await;
    assert_eq!(responses(&m, "Control", "2xx"), control);
    assert_eq!(responses(&m, "Broken", "5xx"), answered_500);
    assert_eq!(responses(&m, "Down", "error"), fallen_back);
    // The fallback's answers are its upstream's, not the variant's.
    assert_eq!(responses(&m, "Down", "2xx"), 0.0);
    let counted: f64 = VARIANTS
        .iter()
        .flat_map(|v| CLASSES.map(|c| responses(&m, v, c)))
        .sum();
    assert_eq!(counted, 90.0, "one count per request, nothing else");
    // A head came back for Control and Broken; Down never answered.
    assert_eq!(observed(&m, "Control"), control);
    assert_eq!(observed(&m, "Broken"), answered_500);
    assert_eq!(observed(&m, "Down"), 0.0);
    assert_eq!(
        m[r#"abproxy_fallback_served_total{experiment="split",variant="Down"}"#],
        fallen_back
    );

    // A broken chunked body from a device pinned to Control: the client's fault, never
    // its variant's.
    let pinned = at_good
        .iter()
        .find(|r| r.headers["x-ab-assignments"] == "split=Control")
        .map(|r| r.headers["x-device-id"].to_str().unwrap().to_string())
        .unwrap();
    let (status, _, body) = raw_http(
        proxy.addr,
        &format!(
            "POST /echo HTTP/1.1\r\nHost: a\r\nCookie: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            cookies_of[&pinned]
        ),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let after = scrape(&proxy).await;
    assert_eq!(
        after[r#"abproxy_client_errors_total{kind="body"}"#],
        m[r#"abproxy_client_errors_total{kind="body"}"#] + 1.0
    );
    for variant in VARIANTS {
        for class in CLASSES {
            assert_eq!(
                responses(&after, variant, class),
                responses(&m, variant, class),
                "{variant} {class}"
            );
        }
    }
    // The same device's well-formed request is Control's (the pin held).
    let (status, _, _) = raw_http(
        proxy.addr,
        &format!(
            "GET /page HTTP/1.1\r\nHost: a\r\nCookie: {}\r\nConnection: close\r\n\r\n",
            cookies_of[&pinned]
        ),
    )
    .await;
    assert_eq!(status, 200);
    let last = scrape(&proxy).await;
    assert_eq!(responses(&last, "Control", "2xx"), control + 1.0);
    assert_eq!(observed(&last, "Control"), control + 1.0);
}

/// The guardrail queries in Prometheus's own engine (`promtool test rules`), at 10m with
/// a 5m window, on two replicas of variant B:
/// - r1: 2xx 100 → 160 and 5xx 0 → 6 over the window (a 1m step, so `increase` over
///   [5m] at 10m sees 5m…10m: no extrapolation past the samples at both ends);
/// - r2 restarted between 7m and 8m: 2xx 50 → 57, then 0 → 8: a reset, so its increase is
///   7 + 8 = 15, and B's 2xx 60 + 15 = 75;
/// - another experiment's series: not counted.
///
/// The buckets are those of the unit test of `stats::upstream` (10 ≤ 0.1 s, 90 ≤ 0.5 s,
/// 100 in all over the window), whose p95 is 0.75 there and in `histogram_quantile`; its
/// other hand cases (the lowest bucket, `+Inf`, a dip) give here what they give there.
#[test]
fn the_guardrail_queries_sum_every_replicas_increase_over_the_window() {
    if !require_tools(&[PROMTOOL], "apt-get install prometheus") {
        return;
    }
    let [responses, buckets] =
        abproxy::counting::upstream_window::prometheus_queries("k", Duration::from_secs(300));
    let series = |metric: &str, labels: &str, values: &str| {
        format!(
            "      - series: '{metric}{{experiment=\"k\",variant=\"B\",{labels}}}'\n        values: '{values}'\n"
        )
    };
    let total = "abproxy_variant_responses_total";
    let bucket = "abproxy_variant_duration_seconds_bucket";
    let r1 = r#"instance="a:1",job="abproxy""#;
    let r2 = r#"instance="b:1",job="abproxy""#;
    let mut input = String::new();
    // 0m … 10m, one sample a minute: +12 a minute from 5m on.
    input += &series(
        total,
        &format!(r#"code_class="2xx",{r1}"#),
        "0 10 20 30 40 100 112 124 136 148 160",
    );
    input += &series(
        total,
        &format!(r#"code_class="5xx",{r1}"#),
        "0 0 0 0 0 0 0 0 2 4 6",
    );
    // A restart between 7m and 8m: 7 before it in the window, then 0 → 8.
    input += &series(
        total,
        &format!(r#"code_class="2xx",{r2}"#),
        "0 10 20 30 40 50 52 57 0 4 8",
    );
    input += &format!(
        "      - series: '{total}{{experiment=\"other\",variant=\"B\",code_class=\"2xx\",{r1}}}'\n        values: '0 100 200 300 400 500 600 700 800 900 1000'\n"
    );
    for (le, values) in [
        ("0.1", "0 0 0 0 0 0 2 4 6 8 10"),
        ("0.5", "0 0 0 0 0 0 18 36 54 72 90"),
        ("1", "0 0 0 0 0 0 20 40 60 80 100"),
        ("+Inf", "0 0 0 0 0 0 20 40 60 80 100"),
    ] {
        input += &series(bucket, &format!(r#"le="{le}",{r1}"#), values);
    }
    // The hand cases of `stats::upstream`'s unit tests, as constant buckets.
    for (case, le, value) in [
        ("lowest", "0.01", "20"),
        ("lowest", "0.1", "20"),
        ("lowest", "+Inf", "20"),
        ("inf", "0.1", "0"),
        ("inf", "0.5", "9"),
        ("inf", "30", "9"),
        ("inf", "+Inf", "10"),
        ("dip", "0.1", "9"),
        ("dip", "0.5", "8.5"),
        ("dip", "1", "10"),
        ("dip", "+Inf", "10"),
    ] {
        input += &format!(
            "      - series: 'hand{{case=\"{case}\",le=\"{le}\"}}'\n        values: '{value}x10'\n"
        );
    }
    let quoted = |promql: &str| promql.replace('\'', "''");
    let p95 = format!("histogram_quantile(0.95, {buckets})");
    let tests = format!(
        "tests:
  - interval: 1m
    input_series:
{input}    promql_expr_test:
      - expr: '{responses}'
        eval_time: 10m
        exp_samples:
          - labels: '{{variant=\"B\",code_class=\"2xx\"}}'
            value: 75
          - labels: '{{variant=\"B\",code_class=\"5xx\"}}'
            value: 6
      - expr: '{p95}'
        eval_time: 10m
        exp_samples:
          - labels: '{{variant=\"B\"}}'
            value: 0.75
      - expr: 'histogram_quantile(0.95, hand)'
        eval_time: 10m
        exp_samples:
          - labels: '{{case=\"lowest\"}}'
            value: 0.0095
          - labels: '{{case=\"inf\"}}'
            value: 30
          - labels: '{{case=\"dip\"}}'
            value: 0.75
",
        responses = quoted(&responses),
        p95 = quoted(&p95),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("guardrail_query_test.yml");
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
