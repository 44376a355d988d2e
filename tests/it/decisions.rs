//! Automated decisions end to end, with the real binary and real sockets: a variant whose
//! upstream fails is rolled back (and in `notify` mode only reported), a clear winner is
//! promoted, a run past `max_duration` times out, clients' broken bodies never count
//! against a variant, an unreachable Prometheus means no decision and a record saying
//! why, and a change that cannot be written is recorded as failed, not half-applied.
//! Every evaluation runs at `every: 1s`. `srm`: a sample-ratio mismatch read from a fake
//! Prometheus freezes the run and its bandit.

mod srm;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::support::binary::{ProxyProcess, BIN};
use crate::support::{cookies_after, get, parse_metrics, raw_http, serve_http, MockUpstream};

/// Generous: the machine is shared, and each evaluation needs a second of traffic.
const WITHIN: Duration = Duration::from_secs(90);

/// An upstream answering 500 to `fail_in_10` of every 10 requests (deterministic), 200
/// with `X-Upstream: <name>` otherwise.
pub(crate) struct FlakyUpstream {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl FlakyUpstream {
    pub(crate) async fn start(name: &'static str, fail_in_10: usize) -> FlakyUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicUsize::new(0));
        let task = serve_http(listener, move |req: Request<Incoming>| {
            let served = served.clone();
            async move {
                let _ = req.into_body().collect().await;
                let n = served.fetch_add(1, Ordering::SeqCst);
                let status = if n % 10 < fail_in_10 { 500 } else { 200 };
                Response::builder()
                    .status(status)
                    .header("x-upstream", name)
                    .body(Full::new(Bytes::from(name)))
                    .unwrap()
            }
        });
        FlakyUpstream { addr, task }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FlakyUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A webhook receiver: every POST's headers and body, answered 200.
pub(crate) struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<(http::HeaderMap, Bytes)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub(crate) async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let kept = got.clone();
        let task = serve_http(listener, move |req: Request<Incoming>| {
            let kept = kept.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                kept.lock().unwrap().push((parts.headers, body));
                Response::new(Full::new(Bytes::from("ok")))
            }
        });
        Receiver { addr, got, task }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub(crate) fn bodies(&self) -> Vec<(http::HeaderMap, Bytes)> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const SECRET: &str = "a webhook secret of the test, long enough";

/// The config of these tests: Moon (the control) and Mars, a click goal, and `decide`.
pub(crate) fn config(dir: &Path, moon: &str, mars: &str, decide: &str, tail: &str) -> String {
    std::fs::write(dir.join("hook.secret"), format!("{SECRET}\n")).unwrap();
    format!(
        "data_dir: {data}
listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
upstreams:
  moon: {moon}
  mars: {mars}
experiments:
  moon_mars:
    state: active
    variants:
      Moon: {{ weight: 50, upstream: moon }}
      Mars: {{ weight: 50, upstream: mars }}
    fallback: Moon
    goals:
      click: {{ event: button_click }}
    decide:
{decide}{tail}",
        data = dir.join("data").display(),
    )
}

pub(crate) fn notify(receiver: &Receiver, dir: &Path) -> String {
    format!(
        "notify:\n  webhook: {}\n  secret_file: {}\n",
        receiver.url(),
        dir.join("hook.secret").display()
    )
}

/// Guardrails on errors only, at 20 requests a window, after 3 evaluations.
const ERRORS_GUARDRAIL: &str = "      every: 1s
      min_duration: 1h
      guardrails:
        action: rollback
        errors: { max_ratio: 2.0, min_requests: 20, failures: 3 }
        latency_p95: false
";

pub(crate) async fn decisions(admin: SocketAddr) -> Value {
    let (status, _, body) = get(
        &format!("http://{admin}/api/experiments/moon_mars/decisions"),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

pub(crate) fn records(answer: &Value) -> Vec<Value> {
    answer["decisions"].as_array().cloned().unwrap_or_default()
}

async fn metrics(admin: SocketAddr) -> HashMap<String, f64> {
    let (_, _, body) = get(&format!("http://{admin}/metrics"), &[]).await;
    parse_metrics(std::str::from_utf8(&body).unwrap())
}

/// Wait until the decisions API has a record that `wanted` accepts; return it.
pub(crate) async fn record_where(
    admin: SocketAddr,
    what: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + WITHIN;
    loop {
        let answer = decisions(admin).await;
        if let Some(found) = records(&answer).into_iter().find(&wanted) {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {what} within {WITHIN:?}; records: {answer:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One device: its cookies and the variant (upstream name) it was sent to.
pub(crate) struct Device {
    cookies: String,
    upstream: String,
}

async fn new_device(proxy: SocketAddr) -> Device {
    let (status, headers, body) = get(&format!("http://{proxy}/"), &[]).await;
    let upstream = headers
        .get("x-upstream")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("{status}: {}", String::from_utf8_lossy(&body)));
    Device {
        cookies: cookies_after(&headers, ""),
        upstream,
    }
}

/// Devices until each variant has at least `per_variant`.
pub(crate) async fn devices(proxy: SocketAddr, per_variant: usize) -> Vec<Device> {
    let mut out: Vec<Device> = Vec::new();
    while ["moon", "mars"]
        .iter()
        .any(|v| out.iter().filter(|d| d.upstream == *v).count() < per_variant)
    {
        out.push(new_device(proxy).await);
    }
    out
}

/// Requests of known devices, round and round, until `stop`: (device index, status,
/// upstream) of each.
pub(crate) fn traffic(
    proxy: SocketAddr,
    devices: Arc<Vec<Device>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<(usize, u16, String)>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        let client = crate::support::client();
        'outer: loop {
            for (i, d) in devices.iter().enumerate() {
                if stop.load(Ordering::SeqCst) {
                    break 'outer;
                }
                let request = crate::support::request(
                    &format!("http://{proxy}/"),
                    &[("cookie", d.cookies.as_str())],
                );
                let (status, headers, _) = crate::support::send(&client, request).await;
                let upstream = headers
                    .get("x-upstream")
                    .map_or(String::new(), |v| v.to_str().unwrap().to_string());
                seen.push((i, status.as_u16(), upstream));
            }
        }
        seen
    })
}

pub(crate) fn verify_signature(headers: &http::HeaderMap, body: &[u8]) {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    let expected = format!(
        "sha256={}",
        abproxy::util::random::hex(&mac.finalize().into_bytes())
    );
    assert_eq!(
        headers["x-abproxy-signature"].to_str().unwrap(),
        expected,
        "the signature is the HMAC-SHA256 of the body with the secret"
    );
}

/// The webhook body of the record `id`, once it arrived.
async fn delivered(receiver: &Receiver, id: &str) -> (http::HeaderMap, Value) {
    let deadline = std::time::Instant::now() + WITHIN;
    loop {
        for (headers, body) in receiver.bodies() {
            let value: Value = serde_json::from_slice(&body).unwrap();
            if value["id"] == id {
                verify_signature(&headers, &body);
                return (headers, value);
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the webhook did not get record {id}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The failing-Mars scenario of the rollback tests: a working Moon, a Mars failing 3 in
/// 10, devices of both sending requests until 2 s after the guardrail's record.
struct Breach {
    _upstreams: (MockUpstream, FlakyUpstream),
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    yaml: String,
    proxy: ProxyProcess,
    receiver: Receiver,
    devices: Arc<Vec<Device>>,
    record: Value,
    seen: Vec<(usize, u16, String)>,
}

async fn breach(decide: &str) -> Breach {
    let moon = MockUpstream::start("moon").await;
    let mars = FlakyUpstream::start("mars", 3).await;
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("abproxy.yaml");
    let yaml = config(
        dir.path(),
        &moon.url(),
        &mars.url(),
        decide,
        &notify(&receiver, dir.path()),
    );
    std::fs::write(&path, &yaml).unwrap();
    let proxy = ProxyProcess::serve(&path);

    let devices = Arc::new(devices(proxy.addr, 10).await);
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(proxy.addr, devices.clone(), stop.clone());
    let record = record_where(proxy.admin, "guardrail record", |r| {
        r["kind"] == "guardrail_errors"
    })
    .await;
    // Traffic goes on for a while after the decision.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let seen = load.await.unwrap();
    Breach {
        _upstreams: (moon, mars),
        _dir: dir,
        path,
        yaml,
        proxy,
        receiver,
        devices,
        record,
        seen,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variant_failing_30_percent_is_rolled_back_and_the_control_sees_nothing_change() {
    let Breach {
        path,
        proxy,
        receiver,
        devices,
        record,
        seen,
        // Bound, not dropped: the files and upstreams must outlive the checks.
        _dir,
        _upstreams,
        ..
    } = breach(&format!("      mode: act\n{ERRORS_GUARDRAIL}")).await;

    assert_eq!(record["variant"], "Mars");
    assert_eq!(record["mode"], "act");
    assert_eq!(record["action"], "rollback");
    assert_eq!(record["rollout_variant"], "Moon");
    assert_eq!(record["applied"], true, "{record:#}");
    assert_eq!(record["run"], 1);
    // Exactly `failures` consecutive breaching evaluations.
    assert_eq!(record["evidence"]["consecutive"], 3, "{record:#}");
    assert!(
        record["evidence"]["variant"].as_f64().unwrap() > 0.2,
        "{record:#}"
    );
    assert!(record["evidence"]["requests"]["variant"].as_u64().unwrap() >= 20);

    // The file says what is in force, its other lines kept.
    let after = std::fs::read_to_string(&path).unwrap();
    assert!(after.contains("state: rollout"), "{after}");
    assert!(after.contains("rollout_variant: Moon"), "{after}");
    assert!(
        after.contains("      Moon: { weight: 50, upstream: moon }"),
        "{after}"
    );

    // The control's devices: Moon, 200, before and after; Mars's devices end on Moon.
    for (i, status, upstream) in &seen {
        if devices[*i].upstream == "moon" {
            assert_eq!(
                (*status, upstream.as_str()),
                (200, "moon"),
                "a control device saw a change"
            );
        }
    }
    let last_of_mars = seen
        .iter()
        .rev()
        .find(|(i, _, _)| devices[*i].upstream == "mars")
        .unwrap();
    assert_eq!(
        last_of_mars.2, "moon",
        "after the rollback Mars's devices get the control"
    );

    // The webhook got the signed record.
    let (headers, body) = delivered(&receiver, record["id"].as_str().unwrap()).await;
    assert_eq!(
        headers["x-abproxy-delivery"],
        record["id"].as_str().unwrap()
    );
    for field in [
        "at",
        "experiment",
        "run",
        "kind",
        "variant",
        "mode",
        "action",
        "applied",
        "reason",
        "evidence",
    ] {
        assert_eq!(body[field], record[field], "{field}");
    }
    assert!(
        body["text"].as_str().unwrap().contains("moon_mars"),
        "{body:#}"
    );

    let m = metrics(proxy.admin).await;
    assert_eq!(
        m[r#"abproxy_decisions_total{experiment="moon_mars",kind="guardrail_errors"}"#],
        1.0
    );
    assert!(
        m[r#"abproxy_variant_responses_total{code_class="5xx",experiment="moon_mars",variant="Mars"}"#]
            > 0.0
    );
    assert_eq!(
        m.get(r#"abproxy_variant_responses_total{code_class="5xx",experiment="moon_mars",variant="Moon"}"#),
        Some(&0.0)
    );
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_notify_mode_the_same_breach_changes_nothing_and_still_notifies() {
    // `mode` left out: notify is the default.
    let Breach {
        path,
        yaml,
        proxy,
        receiver,
        devices,
        record,
        seen,
        // Bound, not dropped: the files and upstreams must outlive the checks.
        _dir,
        _upstreams,
        ..
    } = breach(ERRORS_GUARDRAIL).await;

    assert_eq!(record["mode"], "notify");
    assert_eq!(record["action"], "rollback", "what it would have done");
    assert_eq!(record["applied"], false);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        yaml,
        "the file is untouched"
    );
    let last_of_mars = seen
        .iter()
        .rev()
        .find(|(i, _, _)| devices[*i].upstream == "mars")
        .unwrap();
    assert_eq!(last_of_mars.2, "mars", "Mars's devices still get Mars");
    let (_, body) = delivered(&receiver, record["id"].as_str().unwrap()).await;
    assert_eq!(body["applied"], false);
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("nothing was changed"),
        "{body:#}"
    );
    // Once per run: one record, however many breaching evaluations followed.
    let all = records(&decisions(proxy.admin).await);
    assert_eq!(
        all.iter()
            .filter(|r| r["kind"] == "guardrail_errors")
            .count(),
        1,
        "{all:#?}"
    );
    drop(proxy);
}

/// A proxy with healthy Moon and Mars upstreams and this `decide` block (and `tail`).
struct Started {
    _upstreams: (MockUpstream, MockUpstream),
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    yaml: String,
    proxy: ProxyProcess,
}

async fn start(decide: &str, tail: &str) -> Started {
    let (moon, mars) = crate::support::moon_and_mars().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("abproxy.yaml");
    let yaml = config(dir.path(), &moon.url(), &mars.url(), decide, tail);
    std::fs::write(&path, &yaml).unwrap();
    let proxy = ProxyProcess::serve(&path);
    Started {
        _upstreams: (moon, mars),
        _dir: dir,
        path,
        yaml,
        proxy,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_winner_is_promoted() {
    let decide = "      mode: act
      every: 1s
      min_duration: 0s
      min_devices: 100
      promote: { goal: click, confidence: 0.95 }
";
    let Started {
        path,
        proxy,
        _upstreams,
        _dir,
        ..
    } = start(decide, "").await;
    let mut simulate = std::process::Command::new(BIN)
        .args(["simulate", "--target"])
        .arg(format!("http://{}", proxy.addr))
        .args(["--duration", "120s", "--rate", "60"])
        .args([
            "--click-probs",
            "Moon=0.10,Mars=0.30",
            "--params",
            "{}",
            "--seed",
            "7",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("simulate starts");
    let record = record_where(proxy.admin, "promotion", |r| r["kind"] == "promote").await;
    let _ = simulate.kill();
    let _ = simulate.wait();

    assert_eq!(record["variant"], "Mars");
    assert_eq!(record["action"], "rollout");
    assert_eq!(record["applied"], true, "{record:#}");
    let evidence = &record["evidence"];
    assert!(
        evidence["p_value_sequential_holm"].as_f64().unwrap() < 0.05,
        "{record:#}"
    );
    for v in ["Moon", "Mars"] {
        assert!(
            evidence["devices"][v].as_u64().unwrap() >= 100,
            "{record:#}"
        );
    }
    let after = std::fs::read_to_string(&path).unwrap();
    assert!(
        after.contains("state: rollout") && after.contains("rollout_variant: Mars"),
        "{after}"
    );
    // The page shows it.
    let (_, _, page) = get(&format!("http://{}/experiments", proxy.admin), &[]).await;
    let page = String::from_utf8_lossy(&page);
    assert!(
        page.contains("Automated decisions") && page.contains("rollout → Mars"),
        "{page}"
    );
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_duration_the_run_times_out() {
    let decide = "      mode: act
      every: 1s
      min_duration: 0s
      min_devices: 0
      max_duration: 3s
      on_timeout: stop
";
    let Started {
        path,
        proxy,
        _upstreams,
        _dir,
        ..
    } = start(decide, "").await;
    let record = record_where(proxy.admin, "timeout", |r| r["kind"] == "timeout").await;
    assert_eq!(record["action"], "stop");
    assert_eq!(record["applied"], true, "{record:#}");
    assert!(record["evidence"]["age_ms"].as_u64().unwrap() >= 3_000);
    let after = std::fs::read_to_string(&path).unwrap();
    assert!(after.contains("state: inactive"), "{after}");
    // Inactive: every device gets the fallback.
    let device = new_device(proxy.addr).await;
    assert_eq!(device.upstream, "moon");
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_sending_broken_bodies_to_a_variant_do_not_trip_its_guardrail() {
    let decide = "      mode: act
      every: 1s
      min_duration: 1h
      guardrails:
        errors: { max_ratio: 2.0, min_requests: 20, failures: 2 }
        latency_p95: false
";
    let Started {
        path,
        yaml,
        proxy,
        _upstreams,
        _dir,
    } = start(decide, "").await;
    let devices = Arc::new(devices(proxy.addr, 10).await);
    let mars_cookies = devices
        .iter()
        .find(|d| d.upstream == "mars")
        .unwrap()
        .cookies
        .clone();
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(proxy.addr, devices.clone(), stop.clone());
    // Broken chunked bodies from a Mars device, for several evaluations.
    let started = std::time::Instant::now();
    let mut broken = 0;
    while started.elapsed() < Duration::from_secs(6) {
        let (status, _, _) = raw_http(
            proxy.addr,
            &format!(
                "POST /echo HTTP/1.1\r\nHost: x\r\nCookie: {mars_cookies}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(status, 400);
        broken += 1;
    }
    stop.store(true, Ordering::SeqCst);
    let seen = load.await.unwrap();
    assert!(
        seen.len() > 100,
        "enough traffic for the guardrail to judge: {}",
        seen.len()
    );

    let answer = decisions(proxy.admin).await;
    assert!(
        records(&answer).is_empty(),
        "no decision from the clients' faults: {answer:#}"
    );
    assert!(
        answer["state"]["last_evaluated_at"].is_string(),
        "evaluations did happen: {answer:#}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), yaml);
    let m = metrics(proxy.admin).await;
    assert!(m[r#"abproxy_client_errors_total{kind="body"}"#] >= broken as f64);
    assert_eq!(
        m.get(r#"abproxy_variant_responses_total{code_class="error",experiment="moon_mars",variant="Mars"}"#),
        Some(&0.0)
    );
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_prometheus_down_nothing_is_decided_and_a_record_says_why() {
    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let decide = "      mode: act
      every: 1s
      min_duration: 0s
      min_devices: 0
      max_duration: 2s
      counts: prometheus
";
    let tail = format!("prometheus:\n  url: http://{closed}\n  settle: 0s\n");
    let Started {
        path,
        yaml,
        proxy,
        _upstreams,
        _dir,
    } = start(decide, &tail).await;
    let record = record_where(proxy.admin, "no_decision record", |r| {
        r["kind"] == "no_decision"
    })
    .await;
    assert!(
        record["reason"].as_str().unwrap().contains("Prometheus"),
        "{record:#}"
    );
    assert_eq!(record["action"], "none");
    assert_eq!(record["applied"], false);
    // Past max_duration now, and still nothing decided, and recorded only once.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let all = records(&decisions(proxy.admin).await);
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        yaml,
        "nothing changed"
    );
    let m = metrics(proxy.admin).await;
    assert_eq!(
        m[r#"abproxy_decisions_total{experiment="moon_mars",kind="no_decision"}"#],
        1.0
    );
    assert_eq!(
        m[r#"abproxy_decisions_total{experiment="moon_mars",kind="timeout"}"#],
        0.0
    );
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_that_cannot_be_written_is_recorded_as_failed_and_nothing_is_half_applied() {
    let (moon, mars) = crate::support::moon_and_mars().await;
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config_dir = dir.path().join("conf");
    std::fs::create_dir(&config_dir).unwrap();
    let path = config_dir.join("abproxy.yaml");
    let decide = "      mode: act
      every: 1s
      min_duration: 0s
      min_devices: 0
      max_duration: 2s
      on_timeout: stop
";
    let yaml = config(
        dir.path(),
        &moon.url(),
        &mars.url(),
        decide,
        &notify(&receiver, dir.path()),
    );
    std::fs::write(&path, &yaml).unwrap();
    // No file can be created beside the config: the atomic write fails.
    let Some(_guard) = crate::support::ImmutableDir::set(&config_dir) else {
        return;
    };
    let proxy = ProxyProcess::serve(&path);
    let record = record_where(proxy.admin, "timeout record", |r| r["kind"] == "timeout").await;
    assert_eq!(record["applied"], false, "{record:#}");
    assert!(
        record["error"].as_str().unwrap().contains("cannot write"),
        "{record:#}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), yaml);
    // Still serving both variants: the stop was not applied in memory either.
    let devices = devices(proxy.addr, 1).await;
    assert!(devices.iter().any(|d| d.upstream == "mars"));
    let (_, body) = delivered(&receiver, record["id"].as_str().unwrap()).await;
    assert!(
        body["text"].as_str().unwrap().contains("NOT applied"),
        "{body:#}"
    );
    let (_, _, page) = get(&format!("http://{}/experiments", proxy.admin), &[]).await;
    let page = String::from_utf8_lossy(&page);
    assert!(page.contains("not applied: cannot write"), "{page}");
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_human_change_after_a_decision_is_respected_and_survives_a_restart() {
    let moon = MockUpstream::start("moon").await;
    let mars = FlakyUpstream::start("mars", 3).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("abproxy.yaml");
    // A decision first (the timeout's `keep`, which changes nothing), then a failing Mars
    // that the guardrail would roll back (as the first test shows) if no human had
    // changed the experiment in between.
    let decide = "      mode: act
      every: 1s
      min_duration: 0s
      min_devices: 0
      max_duration: 2s
      on_timeout: keep
      guardrails:
        errors: { max_ratio: 2.0, min_requests: 20, failures: 2 }
        latency_p95: false
";
    let yaml = config(dir.path(), &moon.url(), &mars.url(), decide, "");
    std::fs::write(&path, &yaml).unwrap();
    let mut proxy = ProxyProcess::serve(&path);
    let keep = record_where(proxy.admin, "timeout keep", |r| r["kind"] == "timeout").await;
    assert_eq!(
        (keep["action"].as_str(), keep["applied"].as_bool()),
        (Some("keep"), Some(true))
    );

    // A human changes the weights in the file.
    let edited = yaml.replace(
        "Moon: { weight: 50, upstream: moon }",
        "Moon: { weight: 60, upstream: moon }",
    );
    crate::support::write_by_rename(&path, &edited);
    let deadline = std::time::Instant::now() + WITHIN;
    while !decisions(proxy.admin).await["state"]["human_changed"]
        .as_bool()
        .unwrap_or(false)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the human change was not seen"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Failing traffic for several evaluations, before and after a restart (killed, not
    // stopped: what is on disk is all there is).
    for round in 0..2 {
        let devices = Arc::new(devices(proxy.addr, 10).await);
        let stop = Arc::new(AtomicBool::new(false));
        let load = traffic(proxy.addr, devices.clone(), stop.clone());
        tokio::time::sleep(Duration::from_secs(5)).await;
        stop.store(true, Ordering::SeqCst);
        let seen = load.await.unwrap();
        let failed = seen.iter().filter(|(_, status, _)| *status == 500).count();
        assert!(
            failed > 40,
            "round {round}: Mars failed enough to breach: {failed}"
        );
        let answer = decisions(proxy.admin).await;
        assert_eq!(
            records(&answer),
            vec![keep.clone()],
            "round {round}: {answer:#}"
        );
        assert_eq!(answer["state"]["human_changed"], true, "round {round}");
        if round == 0 {
            let _ = proxy.child.kill();
            let _ = proxy.child.wait();
            proxy = ProxyProcess::serve(&path);
        }
    }
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        edited,
        "the human's file stays"
    );
    drop(proxy);
}
