//! The `abproxy` binary: `check`, signals, `demo`, `healthcheck`, every `--help`.

use std::time::Duration;

use crate::support::binary::{self, ProxyProcess};
use crate::support::*;

/// The minimal config of PRODUCT.md, accepted as it is.
const VALID: &str = include_str!("../golden/product_minimal.yaml");

#[test]
fn check_accepts_the_product_minimal_config_and_the_shipped_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("minimal.yaml");
    std::fs::write(&path, VALID).unwrap();
    let (code, out) = binary::check(&path);
    assert_eq!(code, 0, "{out}");
    let shipped = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/abproxy.yaml"));
    let (code, out) = binary::check(shipped);
    assert_eq!(code, 0, "{out}");
}

/// Each broken config gets exit 1 and `PATH:LINE:COL: message` naming the key.
#[test]
fn check_reports_file_line_column_and_key() {
    let cases: Vec<(String, &str)> = vec![
        (VALID.replace("    fallback: Moon", "    fallback: Moon\n    colour: red"), "15:5: experiments.moon_mars.colour: unknown key `colour`"),
        (VALID.replace("weight: 50, upstream: mars", "weight: 50, upstream: venus"), "13:27: experiments.moon_mars.variants.Mars.upstream: unknown upstream `venus` (defined upstreams: moon, mars)"),
        (VALID.replace("weight: 50", "weight: 0"), "11:5: experiments.moon_mars.variants: the weights sum to 0"),
        (VALID.replace("fallback: Moon", "fallback: Venus"), "14:5: experiments.moon_mars.fallback: `Venus` is not a variant of moon_mars (variants: Moon, Mars)"),
        (VALID.replace("moon_mars:", "Moon/Mars:"), "8:3: experiments.Moon/Mars: `Moon/Mars` is not a valid experiment key"),
        (VALID.replace("state: active", "state: paused"), "10:5: experiments.moon_mars.state: `paused` is not a state (inactive, active or rollout)"),
        (VALID.replace("state: active", "state: rollout"), "10:5: experiments.moon_mars.state: state `rollout` needs `rollout_variant`"),
        (VALID.replace("  mars: http://127.0.0.1:9002", "  moon: http://127.0.0.1:9002"), "6:3: duplicate key `moon` (first defined at line 5)"),
        (VALID.replace("listen: 127.0.0.1:8080", "listen: localhost"), "1:1: listen: `localhost` is not an IP:port address"),
        (VALID.replace("    title: Moon/Mars", "    title: [Moon"), "YAML syntax error"),
        (VALID.replace("weight: 50, upstream: moon", "weight: lots, upstream: moon"), "12:15: experiments.moon_mars.variants.Moon.weight: `lots` is not a whole number from 0 to 1000000"),
        (VALID.to_string() + "timeouts:\n  connect: 5\n", "16:3: timeouts.connect: `5` needs a unit"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, (text, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&path, text).unwrap();
        let (code, out) = binary::check(&path);
        assert_eq!(code, 1, "case {i} must fail: {out}");
        let prefix = format!("{}:", path.display());
        assert!(out.starts_with(&prefix), "case {i}: {out}");
        assert!(
            out[prefix.len()..].contains(expected),
            "case {i}: expected {expected:?} in {out:?}"
        );
        assert_eq!(out.lines().count(), 1, "one error, one line: {out}");
        let line_col = &out[prefix.len()..].split(": ").next().unwrap();
        assert!(
            line_col
                .split(':')
                .all(|n| n.parse::<u32>().is_ok_and(|n| n > 0)),
            "LINE:COL in {out}"
        );
    }
}

/// A config with a bandit and a Prometheus source passes `check`; its refusals are
/// placed like any other.
#[test]
fn check_accepts_a_bandit_and_places_its_refusals() {
    let with_bandit = VALID.to_string()
        + "    goals:
      click: { event: button_click }
    bandit:
      algorithm: thompson
      goal: click
      counts: prometheus
      min_share: 1%
prometheus:
  url: http://127.0.0.1:9090
  settle: 15s
";
    let prometheus = "prometheus:\n  url: http://127.0.0.1:9090\n  settle: 15s\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bandit.yaml");
    std::fs::write(&path, &with_bandit).unwrap();
    let (code, out) = binary::check(&path);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        format!("{}: ok (2 upstreams, 1 experiments)\n", path.display())
    );

    let cases = [
        (
            with_bandit.replace(prometheus, ""),
            "20:7: experiments.moon_mars.bandit.counts: `counts: prometheus` needs the top-level `prometheus: { url: http://HOST:9090 }`",
        ),
        (
            with_bandit.replace("min_share: 1%", "min_share: 50%"),
            "21:7: experiments.moon_mars.bandit.min_share: `50%` × 2 variants is 100%",
        ),
        (
            with_bandit.replace("goal: click", "goal: signup"),
            "19:7: experiments.moon_mars.bandit.goal: `signup` is not a goal of the experiment (goals: click)",
        ),
        (
            with_bandit.replace("url: http://127.0.0.1:9090", "url: https://127.0.0.1:9090"),
            "23:3: prometheus.url: `https://127.0.0.1:9090`: only http:// is supported",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        std::fs::write(&path, text).unwrap();
        let (code, out) = binary::check(&path);
        assert_eq!(code, 1, "case {i} must fail: {out}");
        assert!(
            out.starts_with(&format!("{}:{expected}", path.display())),
            "case {i}: expected {expected:?} in {out:?}"
        );
    }
}

/// A config with a `decide` block and a `notify` webhook passes `check`; its refusals are
/// placed like any other.
#[test]
fn check_accepts_a_decide_block_and_places_its_refusals() {
    let with_decide = VALID.to_string()
        + "    goals:
      click: { event: button_click }
    decide:
      mode: act
      max_duration: 28d
      promote: { goal: click, confidence: 0.95 }
      guardrails:
        action: pause
        errors: { max_ratio: 2.0 }
notify:
  webhook: http://127.0.0.1:9999/hook
  secret_file: hook.secret
";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decide.yaml");
    std::fs::write(&path, &with_decide).unwrap();
    let (code, out) = binary::check(&path);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        format!("{}: ok (2 upstreams, 1 experiments)\n", path.display())
    );

    let cases = [
        (
            with_decide.replace("mode: act", "mode: auto"),
            "18:7: experiments.moon_mars.decide.mode: `auto` is not one of: notify, act",
        ),
        (
            with_decide.replace("max_duration: 28d", "max_duration: 1d"),
            "19:7: experiments.moon_mars.decide.max_duration: `max_duration` (1d) is shorter than `min_duration` (7d)",
        ),
        (
            with_decide.replace("goal: click,", "goal: signup,"),
            "20:18: experiments.moon_mars.decide.promote.goal: `signup` is not a goal of the experiment (goals: click)",
        ),
        (
            with_decide.replace("max_ratio: 2.0", "max_ratio: 1.0"),
            "23:19: experiments.moon_mars.decide.guardrails.errors.max_ratio: `1.0` must be above 1",
        ),
        (
            with_decide.replace("      click: { event: button_click }\n", "      click: { event: button_click }\n    bandit: { algorithm: thompson, goal: click }\n"),
            "23:9: experiments.moon_mars.decide.guardrails.action: `pause` sets a variant's weight, and here the bandit owns the weights: use `rollback`",
        ),
        (
            with_decide.replace("webhook: http://", "webhook: ftp://"),
            "25:3: notify.webhook: `ftp://127.0.0.1:9999/hook` must start with http:// or https://",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        std::fs::write(&path, text).unwrap();
        let (code, out) = binary::check(&path);
        assert_eq!(code, 1, "case {i} must fail: {out}");
        assert!(
            out.starts_with(&format!("{}:{expected}", path.display())),
            "case {i}: expected {expected:?} in {out:?}"
        );
    }
}

fn write_config(
    dir: &tempfile::TempDir,
    upstream: &MockUpstream,
    extra: &str,
) -> std::path::PathBuf {
    let path = dir.path().join("abproxy.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\ndata_dir: {}\nupstreams:\n  app: {}\ndefault_upstream: app\n{extra}",
            dir.path().join("data").display(),
            upstream.url()
        ),
    )
    .unwrap();
    path
}

/// SIGTERM: requests in flight finish, the listener closes, the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let app = MockUpstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, &app, "timeouts:\n  shutdown_grace: 10s\n");
    let mut proxy = ProxyProcess::serve(&config);
    let url = format!("http://{}/slow?ms=2500", proxy.addr);
    let in_flight = tokio::spawn(async move { get(&url, &[]).await });
    eventually(
        Duration::from_secs(5),
        "the slow request reaches the upstream",
        || async { app.count() == 1 },
    )
    .await;
    proxy.signal(libc::SIGTERM);
    // While the slow request is still in flight: no new proxy connections, and the
    // admin listener still answers (a last scrape sees every count).
    eventually(
        Duration::from_secs(5),
        "the proxy listener closes",
        || async { tokio::net::TcpStream::connect(proxy.addr).await.is_err() },
    )
    .await;
    let (status, _, metrics) = get(&format!("http://{}/metrics", proxy.admin), &[]).await;
    assert_eq!(status, 200, "admin is up during the drain");
    assert!(String::from_utf8_lossy(&metrics).contains("abproxy_upstream_duration_seconds"));
    assert!(proxy.child.try_wait().unwrap().is_none(), "still draining");
    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!(status, 200, "the in-flight request completes");
    assert_eq!(&body[..], b"app");
    let exit = tokio::task::block_in_place(|| proxy.wait(Duration::from_secs(10)));
    assert!(exit.success(), "exit status {exit:?}");
}

/// SIGHUP re-applies the file even when unchanged; a broken file is logged as
/// PATH:LINE:COL and the previous config keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_logs_refused_configs() {
    let app = MockUpstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, &app, "");
    let proxy = ProxyProcess::serve(&config);
    let metrics_url = format!("http://{}/metrics", proxy.admin);
    let reloads = |result: &'static str| {
        let url = metrics_url.clone();
        async move {
            let (_, _, body) = get(&url, &[]).await;
            parse_metrics(&String::from_utf8_lossy(&body))
                [&format!(r#"abproxy_config_reloads_total{{result="{result}"}}"#)]
        }
    };
    proxy.signal(libc::SIGHUP);
    eventually(Duration::from_secs(5), "SIGHUP reload counted", || async {
        reloads("success").await == 1.0
    })
    .await;

    // Break the file: the watcher (or a SIGHUP) refuses it and logs where.
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        "upstreams:\n  app: http://127.0.0.1:1\ndefault_upstream: nowhere\n",
    )
    .unwrap();
    eventually(Duration::from_secs(5), "refused reload counted", || async {
        reloads("failure").await >= 1.0
    })
    .await;
    let log = proxy.drain_log().join("\n");
    let expected = format!(
        "{}:3:1: default_upstream: unknown upstream `nowhere`",
        config.display()
    );
    assert!(log.contains(&expected), "log lacks {expected:?}:\n{log}");
    let (status, headers, _) = get(&format!("http://{}/", proxy.addr), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["x-upstream"], "app",
        "the last good config still serves"
    );

    // Put the good text back: nothing changes, but the log's last word is no longer the
    // error, and the reload counts as a success.
    std::fs::write(&config, &original).unwrap();
    eventually(
        Duration::from_secs(10),
        "the restored file counted",
        || async { reloads("success").await == 2.0 },
    )
    .await;
    let log = proxy.drain_log().join("\n");
    assert!(
        log.contains("is valid again and the same as the config in force"),
        "the recovery is logged:\n{log}"
    );
}

/// `abproxy demo` starts the backends of its config and the proxy; the pages are Moon
/// and Mars landing pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_moon_and_mars_pages() {
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (p, a, m1, m2) = (free_port(), free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("demo.yaml");
    std::fs::write(
        &config,
        VALID
            .replace("8080", &p.to_string())
            .replace("8081", &a.to_string())
            .replace("9001", &m1.to_string())
            .replace("9002", &m2.to_string()),
    )
    .unwrap();
    let mut child = std::process::Command::new(binary::BIN)
        .args(["demo", "--config"])
        .arg(&config)
        // The default data_dir (./data) is relative to the working directory.
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let proxy_url = format!("http://127.0.0.1:{p}/");
    let seen = std::sync::Mutex::new(std::collections::HashSet::new());
    eventually(
        Duration::from_secs(15),
        "both pages served through the proxy",
        || async {
            let Ok(response) = client().request(request(&proxy_url, &[])).await else {
                return false;
            };
            let backend = response.headers()["x-backend"]
                .to_str()
                .unwrap()
                .to_string();
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            let page = String::from_utf8_lossy(&body);
            assert!(
                page.contains(&format!("<h1 id=\"title\">{backend}</h1>")),
                "{page}"
            );
            assert!(page.contains("Reserve your spot"));
            assert!(
                !page.contains("http://") && !page.contains("https://"),
                "no external resources"
            );
            let mut seen = seen.lock().unwrap();
            seen.insert(backend);
            seen.len() == 2
        },
    )
    .await;
    // The printed token opens the demo's admin API while it runs.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut out = String::new();
    let token = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the demo prints its admin page line");
        out.push_str(&line);
        out.push('\n');
        if let Some(rest) = line.split("(token for this demo: ").nth(1) {
            break rest.trim_end_matches(')').to_string();
        }
    };
    let auth = format!("Bearer {token}");
    let (status, _, body) = get(
        &format!("http://127.0.0.1:{a}/api/experiments"),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    out.extend(rx.try_iter().map(|l| l + "\n"));
    assert!(
        out.contains(&format!("proxy            http://127.0.0.1:{p}/")),
        "{out}"
    );
    assert!(
        out.contains(&format!("metrics          http://127.0.0.1:{a}/metrics")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "admin page       http://127.0.0.1:{a}/experiments"
        )),
        "{out}"
    );
    assert!(
        out.contains("backend Moon") && out.contains("backend Mars"),
        "{out}"
    );
}

/// `--threads N` deals connections to N workers, each a thread with a current-thread
/// runtime (the first is the main thread's): with one worker and with three, the proxy
/// serves every connection, reloads the file, and drains on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_thread_count_serves_reloads_and_drains() {
    for threads in ["1", "3"] {
        let app = MockUpstream::start("app").await;
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(&dir, &app, "timeouts:\n  shutdown_grace: 10s\n");
        let mut proxy = ProxyProcess::serve_with(&config, &["--threads", threads]);
        let listening = proxy.startup_log.last().unwrap();
        assert!(
            listening.contains(&format!("{threads} worker(s)")),
            "{listening}"
        );
        // Six connections at once, dealt in turn to the workers: all served.
        let url = format!("http://{}/", proxy.addr);
        for answer in get_concurrently(&url, 6) {
            let (status, _, body) = answer.await.unwrap();
            assert_eq!((status.as_u16(), &body[..]), (200, &b"app"[..]));
        }
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, text + "host_header: upstream\n").unwrap();
        let metrics = format!("http://{}/metrics", proxy.admin);
        eventually(
            Duration::from_secs(5),
            "the rewritten file is applied",
            || async {
                let (_, _, body) = get(&metrics, &[]).await;
                parse_metrics(&String::from_utf8_lossy(&body))
                    .get(r#"abproxy_config_reloads_total{result="success"}"#)
                    .copied()
                    == Some(1.0)
            },
        )
        .await;
        // A slow request on each of three connections: the drain lets every one finish,
        // whichever worker holds it.
        let slow = format!("http://{}/slow?ms=1500", proxy.addr);
        let in_flight = get_concurrently(&slow, 3);
        eventually(
            Duration::from_secs(10),
            "the slow requests reach the upstream",
            || async {
                app.requests()
                    .iter()
                    .filter(|r| r.uri.path() == "/slow")
                    .count()
                    == 3
            },
        )
        .await;
        proxy.signal(libc::SIGTERM);
        for request in in_flight {
            let (status, _, body) = request.await.unwrap();
            assert_eq!(
                (status.as_u16(), &body[..]),
                (200, &b"app"[..]),
                "--threads {threads}"
            );
        }
        let exit = tokio::task::block_in_place(|| proxy.wait(Duration::from_secs(10)));
        assert!(exit.success(), "--threads {threads}: {exit:?}");
    }
}

/// `count` GETs of `url` at once, each on a connection of its own (`get` makes a new
/// client), so that they are dealt to different workers.
fn get_concurrently(
    url: &str,
    count: usize,
) -> Vec<tokio::task::JoinHandle<(http::StatusCode, http::HeaderMap, bytes::Bytes)>> {
    (0..count)
        .map(|_| {
            let url = url.to_owned();
            tokio::spawn(async move { get(&url, &[]).await })
        })
        .collect()
}

/// `abproxy SUBCOMMAND --help` for every subcommand `abproxy --help` lists: every option
/// (and argument) has a line of description, not only its name and default.
#[test]
fn every_option_of_every_subcommand_has_a_help_line() {
    let help = |args: &[&str]| {
        let out = std::process::Command::new(binary::BIN)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let top = help(&["--help"]);
    let subcommands: Vec<String> = section(&top, "Commands:")
        .iter()
        .map(|(name, _)| name.clone())
        .filter(|name| name != "help")
        .collect();
    assert!(subcommands.len() >= 7, "{top}");
    let mut undescribed = Vec::new();
    for sub in &subcommands {
        let text = help(&[sub, "--help"]);
        let options = section(&text, "Options:");
        assert!(
            options.iter().any(|(spec, _)| spec.contains("--help")),
            "{sub}: {text}"
        );
        for (spec, description) in options.iter().chain(&section(&text, "Arguments:")) {
            if description.is_empty() {
                undescribed.push(format!("abproxy {sub} {spec}"));
            }
        }
    }
    assert!(undescribed.is_empty(), "no help line: {undescribed:#?}");
}

/// The entries of a clap help section: (what is described, its description without the
/// `[default: …]` and `[possible values: …]` clap adds by itself). An entry starts at a
/// line indented by 2 to 6 spaces; a long description may go on to deeper-indented lines.
fn section(help: &str, title: &str) -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut lines = help.lines().skip_while(|l| *l != title).skip(1);
    for line in lines.by_ref() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            break;
        }
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if indent <= 6 {
            let (spec, rest) = text.split_once("  ").unwrap_or((text, ""));
            entries.push((spec.to_string(), rest.trim().to_string()));
        } else if let Some((_, description)) = entries.last_mut() {
            description.push(' ');
            description.push_str(text);
        }
    }
    entries
        .into_iter()
        .map(|(spec, description)| {
            let mut text = description;
            for marker in ["[default: ", "[possible values: "] {
                while let Some(start) = text.find(marker) {
                    let end = text[start..]
                        .find(']')
                        .map_or(text.len(), |e| start + e + 1);
                    text.replace_range(start..end, "");
                }
            }
            (spec, text.trim().to_string())
        })
        .collect()
}

fn healthcheck(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(binary::BIN)
        .arg("healthcheck")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The image's probe, against real sockets: 0 for a serving admin listener's /healthz;
/// 1, naming the URL, for a 404, a listener that never answers, and a proxy that is gone.
#[test]
fn healthcheck_passes_on_a_serving_admin_listener_and_fails_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("abproxy.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\ndata_dir: {}\nupstreams:\n  app: http://127.0.0.1:9\ndefault_upstream: app\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut proxy = ProxyProcess::serve(&config);
    let healthz = format!("http://{}/healthz", proxy.admin);
    let (code, out, err) = healthcheck(&["--url", &healthz]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("{healthz}: 200 OK"));

    let missing = format!("http://{}/nope", proxy.admin);
    let (code, _, err) = healthcheck(&["--url", &missing]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("{missing}: 404 Not Found")), "{err}");

    // Accepted by the kernel's backlog, never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hanging = format!("http://{}/healthz", silent.local_addr().unwrap());
    let started = std::time::Instant::now();
    let (code, _, err) = healthcheck(&["--url", &hanging, "--timeout", "500ms"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("{hanging}: no answer within 500ms")),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the deadline holds"
    );
    drop(silent);

    proxy.signal(libc::SIGTERM);
    assert!(proxy.wait(Duration::from_secs(20)).success());
    let (code, _, err) = healthcheck(&["--url", &healthz]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("{healthz}: cannot be reached")),
        "{err}"
    );
}
