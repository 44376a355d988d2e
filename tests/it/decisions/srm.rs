//! A sample-ratio mismatch end to end: a real `abproxy serve` whose `decide` and bandit
//! read `counts: prometheus` from a fake Prometheus answering canned counts (1000 Moon
//! devices against 800 Mars ones at 50/50 weights, p ≈ 2e-6). In `act` mode the run is
//! frozen: one `srm` record, no promotion although Mars converts three times as often,
//! no rollback, the file untouched, and the bandit stops updating and says why. In
//! `notify` mode the same mismatch is only recorded and the bandit goes on. A control
//! run with the designed split shows that these conversions do promote Mars.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::{decisions, metrics, record_where, records, WITHIN};
use crate::support::binary::ProxyProcess;
use crate::support::{get, serve_http};

/// One variant's counts as the fake Prometheus reports them.
#[derive(Clone, Copy)]
struct Arm {
    devices: u64,
    clicks: u64,
}

/// (Moon, Mars).
type Split = (Arm, Arm);

/// As designed, and no difference: nothing to decide.
const EVEN: Split = (
    Arm {
        devices: 1000,
        clicks: 100,
    },
    Arm {
        devices: 1000,
        clicks: 100,
    },
);
/// As designed, and Mars clearly better: a promotion.
const EVEN_MARS_BETTER: Split = (
    Arm {
        devices: 1000,
        clicks: 100,
    },
    Arm {
        devices: 1000,
        clicks: 300,
    },
);
/// 1000 against 800 at 50/50 (χ² = 22.2, p ≈ 2.4e-6), and Mars clearly better.
const SKEWED_MARS_BETTER: Split = (
    Arm {
        devices: 1000,
        clicks: 100,
    },
    Arm {
        devices: 800,
        clicks: 240,
    },
);

/// A Prometheus that answers `/api/v1/query` with the counts of `split`, read from what
/// the query asks for (the metric inside its `last_over_time(…)`): devices, clicks,
/// 50/50 weights, and one period holding all of it; empty vectors to the upstream-window
/// queries (`increase(…)`). With `refuse_bandit` the bandit's own clicks query (the only
/// one naming `goal="click"`) is refused as Prometheus refuses a bad query. A query it
/// does not know is refused and kept in `unknown`.
struct FakePrometheus {
    addr: SocketAddr,
    split: Arc<Mutex<Split>>,
    refuse_bandit: Arc<AtomicBool>,
    unknown: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakePrometheus {
    async fn start(split: Split) -> FakePrometheus {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let split = Arc::new(Mutex::new(split));
        let refuse_bandit = Arc::new(AtomicBool::new(false));
        let unknown = Arc::new(Mutex::new(Vec::new()));
        let (s, r, u) = (split.clone(), refuse_bandit.clone(), unknown.clone());
        let task = serve_http(listener, move |req: Request<Incoming>| {
            let promql = query_of(req.uri());
            let split = *s.lock().unwrap();
            let (status, body) = match answer(&promql, split, r.load(Ordering::SeqCst)) {
                Ok(samples) => (
                    200,
                    json!({"status": "success",
                           "data": {"resultType": "vector", "result": samples}}),
                ),
                Err(why) => {
                    if why.starts_with("unknown") {
                        u.lock().unwrap().push(promql.clone());
                    }
                    (
                        400,
                        json!({"status": "error", "errorType": "bad_data", "error": why}),
                    )
                }
            };
            std::future::ready(
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body.to_string())))
                    .unwrap(),
            )
        });
        FakePrometheus {
            addr,
            split,
            refuse_bandit,
            unknown,
            task,
        }
    }

    fn set(&self, split: Split) {
        *self.split.lock().unwrap() = split;
    }

    fn unknown(&self) -> Vec<String> {
        self.unknown.lock().unwrap().clone()
    }
}

impl Drop for FakePrometheus {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The decoded `query` parameter of a `/api/v1/query?query=…&time=…` request.
fn query_of(uri: &http::Uri) -> String {
    let query = uri.query().unwrap_or("");
    let raw = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("query="))
        .unwrap_or("");
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

/// The metric a query reads: the name right after its first `last_over_time(` or
/// `increase(`.
fn metric_of(promql: &str) -> Option<&str> {
    let start = ["last_over_time(", "increase("]
        .iter()
        .filter_map(|f| promql.find(f).map(|at| at + f.len()))
        .min()?;
    let rest = &promql[start..];
    Some(&rest[..rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?])
}

fn sample(labels: Value, value: f64) -> Value {
    json!({"metric": labels, "value": [1_790_000_000.0, value.to_string()]})
}

/// The samples answering `promql` with the counts of `(moon, mars)`.
fn answer(promql: &str, (moon, mars): Split, refuse_bandit: bool) -> Result<Vec<Value>, String> {
    let arms = [("Moon", moon), ("Mars", mars)];
    let by_variant = |value: &dyn Fn(Arm) -> f64, extra: Value| -> Vec<Value> {
        arms.iter()
            .map(|(name, arm)| {
                let mut labels = json!({"variant": name});
                for (k, v) in extra.as_object().unwrap() {
                    labels[k] = v.clone();
                }
                sample(labels, value(*arm))
            })
            .collect()
    };
    let devices = |a: Arm| a.devices as f64;
    let clicks = |a: Arm| a.clicks as f64;
    match metric_of(promql) {
        Some("abproxy_variant_responses_total" | "abproxy_variant_duration_seconds_bucket") => {
            Ok(Vec::new())
        }
        Some("abproxy_assignments_total") => Ok(by_variant(&devices, json!({}))),
        Some("abproxy_conversions_total") if promql.contains(r#"goal="click""#) => {
            if refuse_bandit {
                return Err("refused by the test: the bandit's counts are unavailable".into());
            }
            Ok(by_variant(&clicks, json!({})))
        }
        Some("abproxy_conversions_total") => Ok(by_variant(&clicks, json!({"goal": "click"}))),
        Some("abproxy_variant_weight") => Ok(by_variant(&|_| 50.0, json!({}))),
        Some("abproxy_period_assignments_total") => {
            Ok(by_variant(&devices, json!({"period": "1"})))
        }
        Some("abproxy_period_conversions_total") => {
            Ok(by_variant(&clicks, json!({"goal": "click", "period": "1"})))
        }
        Some("abproxy_period_share") => Ok(by_variant(&|_| 0.5, json!({"period": "1"}))),
        // No values are counted (a click has none).
        Some(
            "abproxy_conversion_value_sum"
            | "abproxy_conversion_value_sum_squares"
            | "abproxy_period_conversion_value_sum"
            | "abproxy_period_conversion_value_sum_squares",
        ) => Ok(Vec::new()),
        _ => Err(format!("unknown to the fake Prometheus: {promql}")),
    }
}

/// Moon and Mars at 50/50, a Thompson bandit on clicks and `decide`, both reading the
/// fake Prometheus every second. The upstreams are never asked: every count is the fake's.
fn config(dir: &Path, prometheus: SocketAddr, mode: &str) -> String {
    format!(
        "data_dir: {data}
listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
prometheus:
  url: http://{prometheus}
  settle: 0s
upstreams:
  moon: http://127.0.0.1:9
  mars: http://127.0.0.1:9
experiments:
  moon_mars:
    state: active
    variants:
      Moon: {{ weight: 50, upstream: moon }}
      Mars: {{ weight: 50, upstream: mars }}
    fallback: Moon
    goals:
      click: {{ event: button_click }}
    bandit:
      algorithm: thompson
      goal: click
      update_every: 1s
      burn_in: 10
      counts: prometheus
    decide:
{mode}      every: 1s
      min_duration: 0s
      min_devices: 100
      counts: prometheus
      promote: {{ goal: click, confidence: 0.95 }}
      guardrails:
        action: rollback
        srm: true
",
        data = dir.join("data").display(),
    )
}

async fn results(admin: SocketAddr) -> Value {
    let (status, _, body) = get(
        &format!("http://{admin}/api/experiments/moon_mars/results"),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// Every bandit update of the experiment so far, whatever came of it.
async fn bandit_updates(admin: SocketAddr) -> f64 {
    metrics(admin)
        .await
        .iter()
        .filter(|(k, _)| {
            k.starts_with("abproxy_bandit_updates_total{")
                && k.contains(r#"experiment="moon_mars""#)
        })
        .map(|(_, v)| v)
        .sum()
}

/// Poll `check` every 200 ms until it gives `Some`, failing after [`WITHIN`].
async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + WITHIN;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not within {WITHIN:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The boundary of the decider's last evaluation, in Unix ms.
async fn last_evaluated_ms(admin: SocketAddr) -> Option<u64> {
    let answer = decisions(admin).await;
    let at = answer["state"]["last_evaluated_at"].as_str()?;
    abproxy::util::time::parse_rfc3339(at)
}

/// Wait until the decider has evaluated `n` boundaries after `after_ms` (`every: 1s`):
/// time has passed as the proxy counts it, however slow the machine.
async fn evaluations_after(admin: SocketAddr, after_ms: u64, n: u64) {
    until("more evaluations", || async move {
        last_evaluated_ms(admin)
            .await
            .filter(|&at| at >= after_ms + n * 1_000)
    })
    .await;
}

fn kinds(answer: &Value) -> Vec<String> {
    records(answer)
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_string())
        .collect()
}

/// The `srm` record's contract: about the experiment, a freeze, the p-value as evidence.
fn assert_srm_record(record: &Value, mode: &str, applied: bool) {
    assert_eq!(record["action"], "freeze", "{record:#}");
    assert_eq!(record["variant"], Value::Null, "{record:#}");
    assert_eq!(record["mode"], mode, "{record:#}");
    assert_eq!(record["applied"], applied, "{record:#}");
    assert_eq!(record["run"], 1);
    assert!(
        record.get("rollout_variant").is_none(),
        "never a rollback: {record:#}"
    );
    assert!(record.get("error").is_none(), "{record:#}");
    let p = record["evidence"]["srm_p_value"].as_f64().unwrap();
    // χ² = 2 × 100² / 900 = 22.2 on 1 degree of freedom: p = erfc(√(χ²/2)) = 2.43e-6
    // (python3 -c 'import math; print(math.erfc(math.sqrt(200/18)))').
    assert!((1e-6..5e-6).contains(&p), "{record:#}");
    assert_eq!(record["evidence"]["threshold"], 0.001);
    assert_eq!(record["evidence"]["stratified"], false);
    assert!(record["reason"]
        .as_str()
        .unwrap()
        .contains("Sample-ratio mismatch"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_act_mode_a_sample_ratio_mismatch_freezes_the_run_and_its_bandit() {
    let prometheus = FakePrometheus::start(EVEN).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("abproxy.yaml");
    let yaml = config(dir.path(), prometheus.addr, "      mode: act\n");
    std::fs::write(&path, &yaml).unwrap();
    let proxy = ProxyProcess::serve(&path);
    let admin = proxy.admin;

    // As designed first: the bandit updates, the decider evaluates and decides nothing.
    until("bandit updates", || async move {
        (bandit_updates(admin).await >= 2.0).then_some(())
    })
    .await;
    let before = until("an evaluation", || last_evaluated_ms(admin)).await;
    assert_eq!(kinds(&decisions(admin).await), Vec::<String>::new());

    // The bandit's own reading fails: its status shows that problem...
    prometheus.refuse_bandit.store(true, Ordering::SeqCst);
    until("the bandit's problem", || async move {
        let status = results(admin).await["bandit"]["status"].clone();
        status["problem"]
            .as_str()
            .is_some_and(|p| p.contains("refused by the test"))
            .then_some(())
    })
    .await;

    // ...when the split goes wrong.
    prometheus.set(SKEWED_MARS_BETTER);
    let record = record_where(admin, "srm record", |r| r["kind"] == "srm").await;
    assert_srm_record(&record, "act", true);
    let frozen_at = abproxy::util::time::parse_rfc3339(record["at"].as_str().unwrap()).unwrap();
    assert!(frozen_at > before);

    // The bandit says it is frozen, in place of its earlier problem.
    let status = until("the bandit's freeze", || async move {
        let status = results(admin).await["bandit"]["status"].clone();
        status["problem"]
            .as_str()
            .is_some_and(|p| p.contains("frozen by a sample-ratio mismatch"))
            .then_some(status)
    })
    .await;
    assert_eq!(status["next_at"], Value::Null, "no next update: {status:#}");

    // Three evaluations later (each would have promoted Mars): no update of the bandit,
    // no other decision.
    let updates = bandit_updates(admin).await;
    evaluations_after(admin, frozen_at, 3).await;
    assert_eq!(
        bandit_updates(admin).await,
        updates,
        "the bandit updated after the freeze"
    );
    let answer = decisions(admin).await;
    assert_eq!(kinds(&answer), ["srm"], "{answer:#}");
    assert_eq!(answer["state"]["frozen"], true, "{answer:#}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        yaml,
        "the file is untouched"
    );
    let m = metrics(admin).await;
    for (kind, n) in [
        ("srm", 1.0),
        ("promote", 0.0),
        ("guardrail_errors", 0.0),
        ("no_decision", 0.0),
    ] {
        let key = format!(r#"abproxy_decisions_total{{experiment="moon_mars",kind="{kind}"}}"#);
        assert_eq!(m[&key], n, "{kind}");
    }
    // Frozen, not rolled back: still active, both variants served.
    let (_, _, page) = get(&format!("http://{admin}/api/experiments"), &[]).await;
    let list: Value = serde_json::from_slice(&page).unwrap();
    assert_eq!(list["experiments"][0]["state"], "active", "{list:#}");
    drop(proxy);

    // The freeze is the run's, kept in the data directory: after a restart the bandit
    // is frozen from the start and never updates.
    let proxy = ProxyProcess::serve(&path);
    let admin = proxy.admin;
    let restarted_ms = abproxy::util::time::unix_ms(std::time::SystemTime::now());
    evaluations_after(admin, restarted_ms, 3).await;
    assert_eq!(
        bandit_updates(admin).await,
        0.0,
        "the bandit updated after a restart"
    );
    let status = results(admin).await["bandit"]["status"].clone();
    assert!(
        status["problem"]
            .as_str()
            .unwrap()
            .contains("frozen by a sample-ratio mismatch"),
        "{status:#}"
    );
    let answer = decisions(admin).await;
    assert_eq!(kinds(&answer), ["srm"], "recorded once: {answer:#}");
    assert_eq!(answer["state"]["frozen"], true, "{answer:#}");
    assert_eq!(prometheus.unknown(), Vec::<String>::new());
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_notify_mode_the_same_mismatch_is_recorded_and_the_bandit_goes_on() {
    let prometheus = FakePrometheus::start(SKEWED_MARS_BETTER).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("abproxy.yaml");
    // `mode` left out: notify is the default.
    let yaml = config(dir.path(), prometheus.addr, "");
    std::fs::write(&path, &yaml).unwrap();
    let proxy = ProxyProcess::serve(&path);
    let admin = proxy.admin;

    let record = record_where(admin, "srm record", |r| r["kind"] == "srm").await;
    assert_srm_record(&record, "notify", false);
    let at = abproxy::util::time::parse_rfc3339(record["at"].as_str().unwrap()).unwrap();

    let updates = bandit_updates(admin).await;
    until("bandit updates after the record", || async move {
        (bandit_updates(admin).await >= updates + 3.0).then_some(())
    })
    .await;
    evaluations_after(admin, at, 3).await;
    let status = results(admin).await["bandit"]["status"].clone();
    assert_eq!(status["problem"], Value::Null, "{status:#}");
    let answer = decisions(admin).await;
    // Recorded once, and no promotion recommended on a split not to be trusted.
    assert_eq!(kinds(&answer), ["srm"], "{answer:#}");
    assert_eq!(answer["state"]["frozen"], false, "{answer:#}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        yaml,
        "the file is untouched"
    );
    assert_eq!(prometheus.unknown(), Vec::<String>::new());
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_designed_split_the_same_clicks_promote_mars() {
    let prometheus = FakePrometheus::start(EVEN_MARS_BETTER).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("abproxy.yaml");
    std::fs::write(
        &path,
        config(dir.path(), prometheus.addr, "      mode: act\n"),
    )
    .unwrap();
    let proxy = ProxyProcess::serve(&path);

    let record = record_where(proxy.admin, "promotion", |r| r["kind"] == "promote").await;
    assert_eq!(record["variant"], "Mars");
    assert_eq!(record["applied"], true, "{record:#}");
    assert!(
        record["evidence"]["srm_p_value"].as_f64().unwrap() > 0.001,
        "{record:#}"
    );
    let after = std::fs::read_to_string(&path).unwrap();
    assert!(
        after.contains("state: rollout") && after.contains("rollout_variant: Mars"),
        "{after}"
    );
    let answer = decisions(proxy.admin).await;
    assert_eq!(kinds(&answer), ["promote"], "{answer:#}");
    assert_eq!(answer["state"]["frozen"], false);
    assert_eq!(prometheus.unknown(), Vec::<String>::new());
    drop(proxy);
}
