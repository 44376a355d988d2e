//! Automated decisions on several replicas: two real `abproxy serve` processes (own data
//! directories, the same secret and config) and a real Prometheus scraping both every
//! second. With `decide.counts: prometheus` each replica reads every replica's counts and
//! upstream windows at the same boundary, so both record the same decision (same `at`,
//! `id` and evidence) without talking to each other, and a webhook receiver gets it twice
//! under one `X-Abproxy-Delivery`, to drop the duplicate by. A replica that fell behind
//! (stopped over the boundaries of the streak) catches up to the same decision.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::decisions::{
    config, devices, notify, record_where, records, traffic, verify_signature, FlakyUpstream,
    Receiver,
};
use crate::results::{Prometheus, PROMETHEUS};
use crate::support::binary::ProxyProcess;
use crate::support::*;

const KEY: &str = "moon_mars";
/// Long enough for a window of a few scrapes (1 s apart) after `settle` (2 s).
const EVERY_S: u64 = 4;

/// The replica's config in `dir`: the decisions tests' Moon and Mars, decisions read
/// from Prometheus, notify mode, the errors guardrail only, the webhook of `receiver`.
fn replica_config(
    dir: &Path,
    moon: &MockUpstream,
    mars: &FlakyUpstream,
    receiver: &Receiver,
    secret: &Path,
    prometheus: &str,
) -> PathBuf {
    let decide = format!(
        "      mode: notify
      every: {EVERY_S}s
      min_duration: 1h
      counts: prometheus
      guardrails:
        errors: {{ max_ratio: 2.0, min_requests: 20, failures: 2 }}
        latency_p95: false
"
    );
    let tail = format!(
        "{}secret_file: {}\nprometheus:\n  url: {prometheus}\n  settle: 2s\n",
        notify(receiver, dir),
        secret.display()
    );
    let path = dir.join("abproxy.yaml");
    std::fs::write(&path, config(dir, &moon.url(), &mars.url(), &decide, &tail)).unwrap();
    path
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// When the replica started its run (Unix ms), from its results.
async fn run_started_ms(admin: std::net::SocketAddr) -> u64 {
    let url = format!("http://{admin}/api/experiments/{KEY}/results");
    let (status, _, body) = get(&url, &[]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let results: Value = serde_json::from_slice(&body).unwrap();
    let started = results["run"]["started_at"]
        .as_str()
        .unwrap_or_else(|| panic!("a run: {results:#}"));
    unix_ms(humantime::parse_rfc3339(started).unwrap())
}

/// An instant query at `at_ms`: each sample's value by its (instance, variant).
async fn by_instance_and_variant(
    prometheus: &Prometheus,
    promql: &str,
    at_ms: u64,
) -> BTreeMap<(String, String), f64> {
    let url = format!(
        "{}/api/v1/query?query={}&time={}.{:03}",
        prometheus.url,
        abproxy::transport::json_get::query_component(promql),
        at_ms / 1000,
        at_ms % 1000
    );
    let (status, _, body) = get(&url, &[]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).unwrap();
    answer["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer:#}"))
        .iter()
        .map(|s| {
            let label = |name: &str| s["metric"][name].as_str().unwrap().to_string();
            let value = s["value"][1].as_str().unwrap().parse().unwrap();
            ((label("instance"), label("variant")), value)
        })
        .collect()
}

/// Two replicas (own data directories, the same secret and config) and a Prometheus
/// scraping both, the decisions' upstreams and webhook receiver; both replicas have
/// evaluated a boundary, their runs old enough for the rule to count a window.
struct Cluster {
    a: ProxyProcess,
    b: ProxyProcess,
    prometheus: Prometheus,
    receiver: Receiver,
    upstreams: (MockUpstream, FlakyUpstream),
    dirs: [tempfile::TempDir; 3],
}

impl Cluster {
    async fn start() -> Cluster {
        let moon = MockUpstream::start("moon").await;
        let mars = FlakyUpstream::start("mars", 3).await;
        let receiver = Receiver::start().await;
        let shared = tempfile::tempdir().unwrap();
        let secret = shared.path().join("secret");
        std::fs::write(&secret, "replicas-share-this-secret-of-forty-bytes\n").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let prometheus_url = format!("http://127.0.0.1:{port}");
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let config =
            |dir: &Path| replica_config(dir, &moon, &mars, &receiver, &secret, &prometheus_url);
        let a = ProxyProcess::serve(&config(dir_a.path()));
        let b = ProxyProcess::serve(&config(dir_b.path()));
        let prometheus = Prometheus::start_on(&[a.admin, b.admin], port, "").await;
        prometheus.wait_scraping(KEY, 2).await;
        // The rule skips a run's first `every` (its window is partial), by each replica's
        // own run start: traffic starts once both runs are past it, so that the first
        // window with enough requests is one both evaluate.
        let runs_old_enough = run_started_ms(a.admin)
            .await
            .max(run_started_ms(b.admin).await)
            + EVERY_S * 1000;
        let wait = runs_old_enough.saturating_sub(unix_ms(SystemTime::now()));
        tokio::time::sleep(Duration::from_millis(wait)).await;
        for admin in [a.admin, b.admin] {
            eventually(
                Duration::from_secs(60),
                "both replicas evaluated a boundary",
                || async {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    crate::decisions::decisions(admin).await["state"]["last_evaluated_at"]
                        .is_string()
                },
            )
            .await;
        }
        Cluster {
            a,
            b,
            prometheus,
            receiver,
            upstreams: (moon, mars),
            dirs: [shared, dir_a, dir_b],
        }
    }
}

/// Wait until `receiver` got the record `id` twice (once from each replica); every
/// post's `kind`.
async fn delivered_twice(receiver: &Receiver, id: &str, evidence: &Value) -> Vec<Value> {
    let of_record = |body: &[u8]| serde_json::from_slice::<Value>(body).unwrap()["id"] == id;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while receiver
        .bodies()
        .iter()
        .filter(|(_, body)| of_record(body))
        .count()
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the webhook did not get record {id} from both replicas"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let posts = receiver.bodies();
    let kinds: Vec<Value> = posts
        .iter()
        .map(|(_, body)| serde_json::from_slice::<Value>(body).unwrap()["kind"].clone())
        .collect();
    let posts: Vec<_> = posts
        .into_iter()
        .filter(|(_, body)| of_record(body))
        .collect();
    assert_eq!(posts.len(), 2, "one post from each replica: {kinds:?}");
    for (headers, body) in &posts {
        verify_signature(headers, body);
        assert_eq!(headers["x-abproxy-delivery"], id);
        let body: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(body["id"], id);
        assert_eq!(&body["evidence"], evidence);
    }
    kinds
}

fn is_guardrail_errors(record: &Value) -> bool {
    record["kind"] == "guardrail_errors"
}

/// Each replica has its guardrail record once in the run.
async fn recorded_once(admins: [std::net::SocketAddr; 2]) {
    for admin in admins {
        let all = records(&crate::decisions::decisions(admin).await);
        assert_eq!(
            all.iter().filter(|r| is_guardrail_errors(r)).count(),
            1,
            "once per run: {all:#?}"
        );
    }
}

/// Two replicas, devices split between them, Mars failing 3 requests in 10: both
/// record the same `guardrail_errors` decision at the same boundary, its figures the
/// sum of both replicas' windows, and the webhook gets it twice under one delivery id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_reading_prometheus_record_the_same_decision_and_deliver_it_under_one_id() {
    if !require_tools(&[PROMETHEUS], "apt-get install prometheus") {
        return;
    }
    // Every part bound: a part left to `..` would be dropped (stopped) here.
    let Cluster {
        a,
        b,
        prometheus,
        receiver,
        upstreams: _upstreams,
        dirs: _dirs,
    } = Cluster::start().await;

    // Each replica serves its own devices, and only them.
    let (devices_a, devices_b) = (
        Arc::new(devices(a.addr, 10).await),
        Arc::new(devices(b.addr, 10).await),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let load_a = traffic(a.addr, devices_a, stop.clone());
    let load_b = traffic(b.addr, devices_b, stop.clone());
    let record_a = record_where(a.admin, "a's guardrail record", is_guardrail_errors).await;
    let record_b = record_where(b.admin, "b's guardrail record", is_guardrail_errors).await;
    stop.store(true, Ordering::SeqCst);
    let (seen_a, seen_b) = (load_a.await.unwrap(), load_b.await.unwrap());
    assert!(!seen_a.is_empty() && !seen_b.is_empty());

    assert_eq!(record_a["variant"], "Mars", "{record_a:#}");
    assert_eq!(record_a["mode"], "notify");
    assert_eq!(record_a["action"], "rollback");
    assert_eq!(record_a["applied"], false);
    assert_eq!(record_a["evidence"]["consecutive"], 2, "{record_a:#}");
    // The whole record: at, run, kind, variant, action, id, reason and every figure.
    assert_eq!(record_a, record_b, "the same decision on both replicas");
    recorded_once([a.admin, b.admin]).await;

    // The figures are both replicas' windows summed: Prometheus's increase of each
    // replica's own counters over the window ending at the boundary.
    let at_ms = unix_ms(humantime::parse_rfc3339(record_a["at"].as_str().unwrap()).unwrap());
    let window = |classes: &str| {
        format!(
            r#"sum by (instance, variant) (increase(abproxy_variant_responses_total{{experiment="{KEY}"{classes}}}[{EVERY_S}s]))"#
        )
    };
    let requests = by_instance_and_variant(&prometheus, &window(""), at_ms).await;
    let errors =
        by_instance_and_variant(&prometheus, &window(r#",code_class=~"5xx|error""#), at_ms).await;
    let instances = [a.admin.to_string(), b.admin.to_string()];
    let evidence = &record_a["evidence"];
    for (figures, field, variant, side) in [
        (&requests, "requests", "Mars", "variant"),
        (&requests, "requests", "Moon", "control"),
        (&errors, "errors", "Mars", "variant"),
    ] {
        let own: Vec<f64> = instances
            .iter()
            .map(|i| {
                figures
                    .get(&(i.clone(), variant.to_string()))
                    .copied()
                    .unwrap_or(0.0)
            })
            .collect();
        let recorded = evidence[field][side].as_u64().unwrap() as f64;
        // Rounded once on the sum, not on each replica's share.
        assert!(
            (recorded - own.iter().sum::<f64>()).abs() <= 1.0,
            "{variant}'s {field}: {recorded} is a's and b's {own:?} at {at_ms}"
        );
        assert!(
            own.iter().all(|&n| n >= 1.0 && n.round() < recorded),
            "{variant}'s {field}: both replicas served some, neither all: {own:?} of {recorded}"
        );
    }

    // Two posts, one from each replica, under the one delivery id.
    let kinds = delivered_twice(&receiver, record_a["id"].as_str().unwrap(), evidence).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "guardrail_errors").count(),
        2,
        "no other guardrail post: {kinds:?}"
    );
    drop((a, b));
}

/// A replica stalled (SIGSTOP) over the boundaries where the streak builds, resumed after
/// the other decided: reading Prometheus at each boundary it missed, in order, it counts
/// the same windows and records the same decision at the same boundary, under the same
/// id, instead of a later one of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_fell_behind_catches_up_boundary_by_boundary_to_the_same_decision() {
    if !require_tools(&[PROMETHEUS], "apt-get install prometheus") {
        return;
    }
    let Cluster {
        a,
        b,
        prometheus: _prometheus,
        receiver,
        upstreams: _upstreams,
        dirs: _dirs,
    } = Cluster::start().await;
    let (devices_a, devices_b) = (
        Arc::new(devices(a.addr, 10).await),
        Arc::new(devices(b.addr, 10).await),
    );
    let before = crate::decisions::decisions(b.admin).await;
    b.signal(libc::SIGSTOP);
    let stop = Arc::new(AtomicBool::new(false));
    let load_a = traffic(a.addr, devices_a, stop.clone());
    // Its requests wait for b to resume.
    let load_b = traffic(b.addr, devices_b, stop.clone());
    let record_a = record_where(a.admin, "a's guardrail record", is_guardrail_errors).await;
    // One boundary more after a decided: b is at least `failures` boundaries behind.
    let at_ms = unix_ms(humantime::parse_rfc3339(record_a["at"].as_str().unwrap()).unwrap());
    let behind = (at_ms + EVERY_S * 1000 + 500).saturating_sub(unix_ms(SystemTime::now()));
    tokio::time::sleep(Duration::from_millis(behind)).await;
    b.signal(libc::SIGCONT);
    let record_b = record_where(b.admin, "b's guardrail record", is_guardrail_errors).await;
    stop.store(true, Ordering::SeqCst);
    let _ = (load_a.await.unwrap(), load_b.await.unwrap());

    let last_before = &before["state"]["last_evaluated_at"];
    let last_before = humantime::parse_rfc3339(last_before.as_str().unwrap()).unwrap();
    assert!(
        unix_ms(last_before) + EVERY_S * 1000 < at_ms,
        "b stopped before the streak began: {before:#} {record_a:#}"
    );
    assert_eq!(record_a["evidence"]["consecutive"], 2, "{record_a:#}");
    assert_eq!(record_a, record_b, "the same decision on both replicas");
    recorded_once([a.admin, b.admin]).await;
    delivered_twice(
        &receiver,
        record_a["id"].as_str().unwrap(),
        &record_a["evidence"],
    )
    .await;
    drop((a, b));
}
