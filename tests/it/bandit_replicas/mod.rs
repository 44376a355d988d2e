//! Bandits on several replicas: two real `abproxy serve` processes (own data directories,
//! the same secret and config) and a real Prometheus scraping both every second. With
//! `counts: prometheus` each replica reads the sum over both at every boundary and the
//! two reach the same periods without talking to each other; with Prometheus gone they
//! keep their shares, count it, log it, and say so in the results.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::results::{Prometheus, PROMETHEUS};
use crate::support::binary::{ProxyProcess, BIN};
use crate::support::*;

mod query;

const KEY: &str = "split";
const UPDATE_EVERY_S: u64 = 4;

fn replica_config(dir: &Path, upstream: &MockUpstream, secret: &Path, prometheus: &str) -> PathBuf {
    let config = dir.join("abproxy.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0
data_dir: {data}
secret_file: {secret}
admin:
  listen: 127.0.0.1:0
upstreams:
  app: {upstream}
default_upstream: app
prometheus:
  url: {prometheus}
  settle: 2s
experiments:
  {KEY}:
    title: Three ways
    state: active
    variants:
      A: {{ weight: 1 }}
      B: {{ weight: 1 }}
      C: {{ weight: 1 }}
    fallback: A
    goals:
      click: {{ event: button_click }}
    bandit:
      algorithm: thompson
      goal: click
      update_every: {UPDATE_EVERY_S}s
      burn_in: 10
      min_share: 1%
      counts: prometheus
",
            data = dir.join("data").display(),
            secret = secret.display(),
            upstream = upstream.url(),
        ),
    )
    .unwrap();
    config
}

/// A replica and every line it logged so far.
struct Replica {
    name: &'static str,
    process: ProxyProcess,
    log: Vec<String>,
}

impl Replica {
    fn start(name: &'static str, config: &Path) -> Replica {
        let process = ProxyProcess::serve(config);
        let log = process.startup_log.clone();
        Replica { name, process, log }
    }

    fn log(&mut self) -> &[String] {
        self.log.extend(self.process.drain_log());
        &self.log
    }

    async fn results(&self) -> Value {
        let url = format!(
            "http://{}/api/experiments/{KEY}/results",
            self.process.admin
        );
        let (status, _, body) = get(&url, &[]).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    /// Each `/metrics` line of `metric` whose labels contain every one of `labels`:
    /// labels → value.
    async fn metric(&self, metric: &str, labels: &[&str]) -> BTreeMap<String, f64> {
        let (_, _, body) = get(&format!("http://{}/metrics", self.process.admin), &[]).await;
        String::from_utf8_lossy(&body)
            .lines()
            .filter_map(|l| l.strip_prefix(metric)?.strip_prefix('{'))
            .filter(|l| labels.iter().all(|want| l.contains(want)))
            .map(|l| {
                let (labels, value) = l.rsplit_once(' ').unwrap();
                (
                    labels.trim_end_matches('}').to_string(),
                    value.parse().unwrap(),
                )
            })
            .collect()
    }

    async fn weights(&self) -> BTreeMap<String, f64> {
        let of_key = format!("experiment=\"{KEY}\"");
        self.metric("abproxy_variant_weight", &[&of_key]).await
    }

    async fn counts_unavailable(&self) -> f64 {
        let outcome = [r#"outcome="counts_unavailable""#];
        let m = self.metric("abproxy_bandit_updates_total", &outcome).await;
        m.values().sum()
    }

    /// The last boundary the bandit evaluated (Unix ms).
    async fn last_at(&self) -> Option<u64> {
        let results = self.results().await;
        let at = results["bandit"]["status"]["last_at"].as_str()?;
        Some(unix_ms(humantime::parse_rfc3339(at).ok()?))
    }

    /// Wait until the bandit evaluated the boundary `at_ms` or a later one.
    async fn evaluated(&self, at_ms: u64) {
        eventually(
            Duration::from_secs(60),
            &format!("{} evaluates the boundary {at_ms}", self.name),
            || async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                self.last_at().await.is_some_and(|at| at >= at_ms)
            },
        )
        .await;
    }

    /// The boundary (Unix ms) of each period the bandit started, from the log line
    /// "bandit of split: period N started: … (boundary AT)".
    fn boundaries_of_periods(&mut self) -> BTreeMap<u64, u64> {
        self.log()
            .iter()
            .filter_map(|l| {
                let rest = l.split(&format!("bandit of {KEY}: period ")).nth(1)?;
                let (number, rest) = rest.split_once(" started")?;
                let at = rest.rsplit_once("(boundary ")?.1.strip_suffix(')')?;
                let at = humantime::parse_rfc3339(at).ok()?;
                Some((number.parse().ok()?, unix_ms(at)))
            })
            .collect()
    }
}

/// The first boundary after `at_ms`.
fn boundary_after(at_ms: u64) -> u64 {
    at_ms - at_ms % (UPDATE_EVERY_S * 1000) + UPDATE_EVERY_S * 1000
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A period as both replicas must agree on it: number, shares and inputs (not its
/// `started_at`, the moment each replica computed it).
fn agreed(period: &Value) -> Value {
    serde_json::json!({
        "number": period["number"],
        "shares": period["shares"],
        "inputs": period["inputs"],
    })
}

fn periods(results: &Value) -> Vec<Value> {
    results["counts"]["periods"]
        .as_array()
        .unwrap_or_else(|| panic!("results without periods: {results}"))
        .iter()
        .map(agreed)
        .collect()
}

/// `abproxy simulate` against one replica, off the runtime (it blocks): its stdout.
fn simulate(
    target: std::net::SocketAddr,
    rate: &'static str,
    seed: &'static str,
) -> tokio::task::JoinHandle<String> {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(BIN)
            .arg("simulate")
            .args(["--target", &format!("http://{target}")])
            .args(["--duration", "6s", "--rate", rate, "--seed", seed])
            .args(["--click-probs", "A=0.05,B=0.10,C=0.30", "--params", "{}"])
            .output()
            .expect("abproxy simulate runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
}

/// `replica`'s (devices, conversions on click) by variant at `at_ms`, as Prometheus
/// scraped them from it.
async fn by_variant_at(
    prometheus: &Prometheus,
    replica: &Replica,
    at_ms: u64,
) -> BTreeMap<String, (u64, u64)> {
    let instance = replica.process.admin;
    let users = vector_at(
        prometheus,
        &format!(r#"abproxy_assignments_total{{experiment="{KEY}",instance="{instance}"}}"#),
        at_ms,
    )
    .await;
    let conversions = vector_at(
        prometheus,
        &format!(
            r#"abproxy_conversions_total{{experiment="{KEY}",goal="click",instance="{instance}"}}"#
        ),
        at_ms,
    )
    .await;
    users
        .into_iter()
        .map(|(v, n)| {
            let c = conversions.get(&v).copied().unwrap_or(0);
            (v, (n, c))
        })
        .collect()
}

/// An instant query at `at_ms`: the value of each sample by its `variant` label.
async fn vector_at(prometheus: &Prometheus, promql: &str, at_ms: u64) -> BTreeMap<String, u64> {
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
        .unwrap()
        .iter()
        .map(|s| {
            let v = s["metric"]["variant"].as_str().unwrap().to_string();
            (v, s["value"][1].as_str().unwrap().parse().unwrap())
        })
        .collect()
}

/// Two replicas of the binary (own data directories, the same secret and config), a
/// Prometheus scraping both every second, and traffic through both (three times as much
/// through `a`), up to a boundary both evaluated whose counts are final.
struct Cluster {
    a: Replica,
    b: Replica,
    prometheus: Prometheus,
    dirs: [tempfile::TempDir; 3],
    upstream: MockUpstream,
}

impl Cluster {
    async fn start_and_drive() -> Cluster {
        let upstream = MockUpstream::start("app").await;
        let shared = tempfile::tempdir().unwrap();
        let secret = shared.path().join("secret");
        std::fs::write(&secret, "replicas-share-this-secret-of-forty-bytes\n").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Under a path prefix, as behind a reverse proxy: the replicas' queries keep it.
        let prometheus_url = format!("http://127.0.0.1:{port}/prom");
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let config_a = replica_config(dir_a.path(), &upstream, &secret, &prometheus_url);
        let config_b = replica_config(dir_b.path(), &upstream, &secret, &prometheus_url);
        assert_eq!(
            std::fs::read_to_string(&config_a)
                .unwrap()
                .replace(&dir_a.path().display().to_string(), ""),
            std::fs::read_to_string(&config_b)
                .unwrap()
                .replace(&dir_b.path().display().to_string(), ""),
            "the same config but for the data directory"
        );
        let a = Replica::start("a", &config_a);
        let b = Replica::start("b", &config_b);
        let prometheus =
            Prometheus::start_on(&[a.process.admin, b.process.admin], port, "/prom").await;
        prometheus.wait_scraping(KEY, 2).await;

        // Three times the traffic through a as through b: their own counts differ.
        let (to_a, to_b) = (
            simulate(a.process.addr, "30", "1"),
            simulate(b.process.addr, "10", "2"),
        );
        let (_, _) = (to_a.await.unwrap(), to_b.await.unwrap());
        let traffic_ended = unix_ms(SystemTime::now());
        let local = |results: &Value| -> u64 {
            ["A", "B", "C"]
                .iter()
                .map(|v| {
                    results["counts"]["variants"][v]["users"]
                        .as_u64()
                        .unwrap_or(0)
                })
                .sum()
        };
        let (local_a, local_b) = (local(&a.results().await), local(&b.results().await));
        assert!(
            local_a > local_b && local_b > 0,
            "a {local_a}, b {local_b} devices: {:#}",
            a.results().await
        );

        // Both evaluate a boundary whose counts are final (after the traffic ended and the
        // last scrape of it settled): from then on their periods do not change.
        let settled_boundary = boundary_after(traffic_ended) + UPDATE_EVERY_S * 1000;
        a.evaluated(settled_boundary).await;
        b.evaluated(settled_boundary).await;
        Cluster {
            a,
            b,
            prometheus,
            dirs: [shared, dir_a, dir_b],
            upstream,
        }
    }
}

/// Two replicas, different traffic: the same periods (numbers, shares, inputs) from the
/// same boundaries, inputs the sum of both replicas' counts at the boundary; then
/// Prometheus stops, and both keep their shares, count, log and show the problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_agree_on_the_bandits_periods_through_prometheus_and_keep_shares_without_it() {
    if !require_tools(&[PROMETHEUS], "apt-get install prometheus") {
        return;
    }
    let Cluster {
        mut a,
        mut b,
        mut prometheus,
        ..
    } = Cluster::start_and_drive().await;
    let (results_a, results_b) = (a.results().await, b.results().await);
    let (periods_a, periods_b) = (periods(&results_a), periods(&results_b));
    assert!(
        periods_a.len() >= 2,
        "the bandit started a period: {results_a:#}"
    );
    assert_eq!(periods_a, periods_b, "the same periods on both replicas");
    for r in [&results_a, &results_b] {
        assert!(r["bandit"]["status"]["problem"].is_null(), "{r:#}");
    }

    // Every bandit period from the same boundary on both, with the devices of both
    // replicas at that boundary as Prometheus had them from each.
    let (boundaries_a, boundaries_b) = (a.boundaries_of_periods(), b.boundaries_of_periods());
    assert_eq!(
        boundaries_a.keys().copied().collect::<Vec<_>>(),
        (2..=periods_a.len() as u64).collect::<Vec<_>>(),
        "a logged every period it started: {:#?}",
        a.log()
    );
    assert_eq!(boundaries_a, boundaries_b, "the same boundaries");
    for (period, &at) in &boundaries_a {
        let inputs = &periods_a[*period as usize - 1]["inputs"];
        let (from_a, from_b) = (
            by_variant_at(&prometheus, &a, at).await,
            by_variant_at(&prometheus, &b, at).await,
        );
        for v in ["A", "B", "C"] {
            let (a_v, b_v) = (from_a.get(v).copied(), from_b.get(v).copied());
            let (a_v, b_v) = (a_v.unwrap_or_default(), b_v.unwrap_or_default());
            assert_eq!(
                (inputs[v]["users"].as_u64(), inputs[v]["conversions"].as_u64()),
                (Some(a_v.0 + b_v.0), Some(a_v.1 + b_v.1)),
                "period {period}, {v}: the inputs are a's {a_v:?} and b's {b_v:?} at its boundary {at}"
            );
        }
        let users = |m: &BTreeMap<String, (u64, u64)>| m.values().map(|c| c.0).sum::<u64>();
        assert!(
            users(&from_a) > 0 && users(&from_b) > 0,
            "period {period}: both replicas had devices at its boundary"
        );
    }

    // The weights in force on both are the rule's on every device of both replicas.
    let mut all_devices = BTreeMap::new();
    for v in ["A", "B", "C"] {
        let of = |r: &Value, field: &str| {
            let c = &r["counts"]["variants"][v];
            let n = if field == "users" {
                &c["users"]
            } else {
                &c["goals"]["click"]["conversions"]
            };
            n.as_u64().unwrap_or(0)
        };
        all_devices.insert(
            v.to_string(),
            abproxy::stats::analysis::ArmInputs {
                users: of(&results_a, "users") + of(&results_b, "users"),
                conversions: of(&results_a, "conversions") + of(&results_b, "conversions"),
            },
        );
    }
    let bandit = abproxy::config::Bandit {
        algorithm: abproxy::config::BanditAlgorithm::Thompson,
        goal: "click".into(),
        update_every: Duration::from_secs(UPDATE_EVERY_S),
        burn_in: 10,
        min_share: 0.01,
        counts: abproxy::config::BanditCounts::Prometheus,
        pos: Default::default(),
    };
    let abproxy::experiments::bandit::Update::Start {
        weights: expected, ..
    } = abproxy::experiments::bandit::evaluate(&bandit, &all_devices, &BTreeMap::new())
    else {
        panic!("every variant past its burn-in: {all_devices:?}")
    };
    let expected: BTreeMap<String, f64> = expected
        .iter()
        .map(|(v, &w)| (format!(r#"experiment="{KEY}",variant="{v}""#), w as f64))
        .collect();

    // Prometheus goes away: both keep their shares, and say why.
    let (weights_a, weights_b) = (a.weights().await, b.weights().await);
    assert_eq!(
        weights_a, expected,
        "a's weights are the rule's on {all_devices:?}"
    );
    assert_eq!(weights_a, weights_b, "the same weights in force");
    let (unavailable_a, unavailable_b) =
        (a.counts_unavailable().await, b.counts_unavailable().await);
    prometheus.stop();
    let stopped = unix_ms(SystemTime::now());
    for (replica, before) in [(&a, unavailable_a), (&b, unavailable_b)] {
        eventually(
            Duration::from_secs(60),
            &format!("{} counts two boundaries without Prometheus", replica.name),
            || async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                replica.counts_unavailable().await >= before + 2.0
            },
        )
        .await;
        let results = replica.results().await;
        let status = &results["bandit"]["status"];
        let at = humantime::parse_rfc3339(status["last_at"].as_str().unwrap()).unwrap();
        assert!(unix_ms(at) + 2000 >= stopped, "{status}");
        let problem = status["problem"]
            .as_str()
            .unwrap_or_else(|| panic!("{status}"));
        assert!(
            problem.contains("the shares in force were kept"),
            "{problem}"
        );
        assert_eq!(periods(&results), periods_a, "no period without the counts");
    }
    assert_eq!(a.weights().await, weights_a, "a's weights kept");
    assert_eq!(b.weights().await, weights_b, "b's weights kept");
    for replica in [&mut a, &mut b] {
        let name = replica.name;
        let logged = replica
            .log()
            .iter()
            .filter(|l| {
                l.contains(&format!("bandit of {KEY}: cannot read the counts"))
                    && l.contains("keeping the shares in force")
            })
            .count();
        assert!(logged >= 2, "{name} logged the problem at each boundary");
    }

    // Prometheus comes back on its storage: the next boundary reads the same counts, the
    // problem clears, and the shares stay.
    prometheus.restart().await;
    for replica in [&a, &b] {
        eventually(
            Duration::from_secs(60),
            &format!("{}'s problem clears with Prometheus back", replica.name),
            || async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                replica.results().await["bandit"]["status"]["problem"].is_null()
            },
        )
        .await;
        let results = replica.results().await;
        let status = &results["bandit"]["status"];
        assert_eq!(status["last_outcome"], "shares unchanged", "{status}");
        assert_eq!(periods(&results), periods_a);
    }
    assert_eq!(a.weights().await, weights_a);
    assert_eq!(b.weights().await, weights_b);
    for replica in [&mut a, &mut b] {
        replica.process.signal(libc::SIGTERM);
        assert!(replica.process.wait(Duration::from_secs(30)).success());
    }
}

/// A replica that stops (scaled down, or in a rolling restart) leaves its series stale
/// in Prometheus, but its devices are still the run's: the replica left goes on counting
/// them, so its bandit starts no period from its own devices alone. A replica that
/// joins then adopts the shares in force at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replicas_devices_stay_counted_and_a_joining_one_adopts_the_shares() {
    if !require_tools(&[PROMETHEUS], "apt-get install prometheus") {
        return;
    }
    let Cluster {
        a,
        mut b,
        prometheus,
        dirs,
        upstream,
    } = Cluster::start_and_drive().await;
    let before = a.results().await;
    let weights = a.weights().await;
    let a_devices: u64 = ["A", "B", "C"]
        .iter()
        .map(|v| before["counts"]["variants"][v]["users"].as_u64().unwrap())
        .sum();
    b.process.signal(libc::SIGTERM);
    assert!(b.process.wait(Duration::from_secs(30)).success());
    let all = format!(r#"sum(abproxy_assignments_total{{experiment="{KEY}"}})"#);
    eventually(
        Duration::from_secs(30),
        "b's series are stale: a plain sum has a's devices only",
        || async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            prometheus.value(&all).await == Some(a_devices as f64)
        },
    )
    .await;
    let stale = unix_ms(SystemTime::now());
    a.evaluated(boundary_after(stale) + UPDATE_EVERY_S * 1000)
        .await;
    let after = a.results().await;
    assert_eq!(
        periods(&after),
        periods(&before),
        "no period from a's devices alone: {:#}",
        after["bandit"]
    );
    assert_eq!(a.weights().await, weights);
    let status = &after["bandit"]["status"];
    assert!(status["problem"].is_null(), "{status}");
    assert_eq!(status["last_outcome"], "shares unchanged", "{status}");

    // A replica that joins now (a new data directory: its own run 1) reads the boundary
    // before its run at once, and hashes new devices by the shares a uses, not by the
    // config's burn-in weights until the next boundary.
    let dir_c = tempfile::tempdir().unwrap();
    let config_c = replica_config(
        dir_c.path(),
        &upstream,
        &dirs[0].path().join("secret"),
        &format!("{}", prometheus.url),
    );
    let mut c = Replica::start("c", &config_c);
    eventually(
        Duration::from_secs(30),
        "c starts a period from the last boundary",
        || {
            let started = !c.boundaries_of_periods().is_empty();
            async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                started
            }
        },
    )
    .await;
    let joined = c.results().await;
    let run_started = humantime::parse_rfc3339(joined["run"]["started_at"].as_str().unwrap())
        .map(unix_ms)
        .unwrap();
    let boundaries_c = c.boundaries_of_periods();
    assert_eq!(
        boundaries_c.keys().collect::<Vec<_>>(),
        [&2],
        "{:#?}",
        c.log()
    );
    assert!(
        boundaries_c[&2] < run_started,
        "the boundary before c's run ({run_started}): {boundaries_c:?}"
    );
    assert_eq!(c.weights().await, weights, "c hashes by a's weights");
    assert_eq!(
        periods(&joined)[1]["shares"],
        periods(&after).last().unwrap()["shares"]
    );
}
