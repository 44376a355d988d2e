//! Experiments over their life: sticky assignments, runs and transitions, traffic,
//! targeting, bots, QA overrides, and what the frontend reads under `/_ab/`.

use std::time::Duration;

use crate::support::*;

const WITHIN: Duration = Duration::from_secs(5);

/// A browser: the cookies it was given, sent back.
struct Visitor {
    jar: String,
}

impl Visitor {
    fn new() -> Visitor {
        Visitor { jar: String::new() }
    }

    fn with_id(id: &str) -> Visitor {
        Visitor {
            jar: format!("device_id={id}"),
        }
    }

    /// GET `url` (extra headers allowed); returns status, headers, body; keeps cookies.
    async fn get(
        &mut self,
        client: &TestClient,
        url: &str,
        extra: &[(&str, &str)],
    ) -> (u16, http::HeaderMap, String) {
        let mut headers: Vec<(&str, &str)> = extra.to_vec();
        let jar = self.jar.clone();
        if !jar.is_empty() {
            headers.push(("cookie", &jar));
        }
        let (status, h, body) = send(client, request(url, &headers)).await;
        self.jar = cookies_after(&h, &self.jar);
        (
            status.as_u16(),
            h,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    async fn upstream(&mut self, client: &TestClient, proxy: &TestProxy) -> String {
        let (status, h, _) = self.get(client, &proxy.url("/"), &[]).await;
        assert_eq!(status, 200);
        h["x-upstream"].to_str().unwrap().to_string()
    }
}

async fn series(proxy: &TestProxy, name: &str, experiment: &str, variant: &str) -> f64 {
    proxy.metrics().await[&format!(r#"{name}{{experiment="{experiment}",variant="{variant}"}}"#)]
}

async fn assignments_total(proxy: &TestProxy, variants: &[&str]) -> f64 {
    let mut total = 0.0;
    for v in variants {
        total += series(proxy, "abproxy_assignments_total", "moon_mars", v).await;
    }
    total
}

async fn reload_to(proxy: &TestProxy, yaml: &str) {
    let before = proxy.metrics().await[r#"abproxy_config_reloads_total{result="success"}"#];
    write_by_rename(&proxy.config_path, &with_data_dir(yaml, proxy.dir.path()));
    eventually(WITHIN, "the new config is applied", || async {
        proxy.metrics().await[r#"abproxy_config_reloads_total{result="success"}"#] > before
    })
    .await;
}

/// 70/30 → 10/90: none of 1 000 assigned devices moves; new devices follow the new weights.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_change_moves_nobody_already_assigned() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = TestProxy::start(&moon_mars_config(&moon, &mars, 70, 30)).await;
    let client = client();
    let mut visitors = Vec::new();
    let mut first = Vec::new();
    for _ in 0..1000 {
        let mut v = Visitor::new();
        first.push(v.upstream(&client, &proxy).await);
        visitors.push(v);
    }
    let moon_share = first.iter().filter(|u| *u == "moon").count() as f64 / 1000.0;
    assert!((moon_share - 0.7).abs() < 0.05, "{moon_share}");
    reload_to(&proxy, &moon_mars_config(&moon, &mars, 10, 90)).await;
    for (v, before) in visitors.iter_mut().zip(&first) {
        assert_eq!(
            &v.upstream(&client, &proxy).await,
            before,
            "an assigned device moved"
        );
    }
    let mut new_moon = 0;
    for _ in 0..1000 {
        new_moon += usize::from(Visitor::new().upstream(&client, &proxy).await == "moon");
    }
    assert!(
        (new_moon as f64 / 1000.0 - 0.1).abs() < 0.04,
        "new devices follow 10/90: {new_moon}"
    );
    proxy.stop().await;
}

/// A restart (new process state, same data directory): pinned devices keep their
/// variant although the weights changed in between, and the counts go on from the
/// data directory without counting anyone twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assignments_survive_a_restart() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = TestProxy::start(&moon_mars_config(&moon, &mars, 50, 50)).await;
    let client = client();
    let mut visitors = Vec::new();
    for _ in 0..200 {
        let mut v = Visitor::new();
        let upstream = v.upstream(&client, &proxy).await;
        visitors.push((v, upstream));
    }
    assert_eq!(assignments_total(&proxy, &["Moon", "Mars"]).await, 200.0);
    let (dir, config_path) = proxy.stop_keep_files().await;
    std::fs::write(
        &config_path,
        with_data_dir(&moon_mars_config(&moon, &mars, 0, 100), dir.path()),
    )
    .unwrap();
    let proxy = TestProxy::start_at(dir, config_path).await;
    for (v, before) in visitors.iter_mut() {
        assert_eq!(&v.upstream(&client, &proxy).await, before);
    }
    assert_eq!(
        assignments_total(&proxy, &["Moon", "Mars"]).await,
        200.0,
        "the counts of before the restart, and no one re-assigned"
    );
    proxy.stop().await;
}

/// Tampered, truncated and foreign cookies are ignored (the device is assigned by hash
/// again), counted, and never an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_cookies_are_ignored_and_counted() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = TestProxy::start(&moon_mars_config(&moon, &mars, 50, 50)).await;
    let client = client();
    let mut v = Visitor::with_id("tamper-1");
    let honest = v.upstream(&client, &proxy).await;
    let signed = v
        .jar
        .split("; ")
        .find(|c| c.starts_with("ab_assignments="))
        .unwrap()
        .to_string();
    let other = if honest == "moon" { "Mars" } else { "Moon" };
    let mine = if honest == "moon" { "Moon" } else { "Mars" };
    let forged = signed.replace(&format!(":{mine}:"), &format!(":{other}:"));
    let cases = [
        (forged.clone(), "bad_signature"),
        (signed[..signed.len() - 4].to_string(), "malformed"),
        (
            "ab_assignments=v1.moon_mars:Mars:1.00112233445566778899aabbccddeeff".to_string(),
            "bad_signature",
        ),
        ("ab_assignments=garbage".to_string(), "malformed"),
    ];
    for (i, (cookie, reason)) in cases.iter().enumerate() {
        let jar = format!("device_id=tamper-1; {cookie}");
        let (status, headers, _) =
            send(&client, request(&proxy.url("/"), &[("cookie", &jar)])).await;
        assert_eq!(status, 200, "case {i}");
        assert_eq!(
            headers["x-upstream"],
            honest.as_str(),
            "case {i}: the hash decides, not the forged cookie"
        );
        let m = proxy.metrics().await;
        assert!(
            m[&format!(r#"abproxy_assignment_cookie_rejected_total{{reason="{reason}"}}"#)] >= 1.0,
            "case {i}"
        );
    }
    // Another device's valid cookie does not transfer.
    let jar = format!("device_id=someone-else; {signed}");
    send(&client, request(&proxy.url("/"), &[("cookie", &jar)])).await;
    let m = proxy.metrics().await;
    assert_eq!(
        m[r#"abproxy_assignment_cookie_rejected_total{reason="bad_signature"}"#],
        3.0
    );
    assert_eq!(
        m[r#"abproxy_assignment_cookie_rejected_total{reason="malformed"}"#],
        2.0
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_zero_keeps_its_devices_and_a_removed_variant_reassigns_them() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = TestProxy::start(&moon_mars_config(&moon, &mars, 0, 100)).await;
    let client = client();
    let mut on_mars = Vec::new();
    for _ in 0..30 {
        let mut v = Visitor::new();
        assert_eq!(v.upstream(&client, &proxy).await, "mars");
        on_mars.push(v);
    }
    reload_to(&proxy, &moon_mars_config(&moon, &mars, 100, 0)).await;
    for v in on_mars.iter_mut() {
        assert_eq!(
            v.upstream(&client, &proxy).await,
            "mars",
            "weight 0 keeps its devices"
        );
    }
    for _ in 0..30 {
        assert_eq!(
            Visitor::new().upstream(&client, &proxy).await,
            "moon",
            "and gets no new ones"
        );
    }
    // Remove Mars: its devices are assigned afresh (all to Moon, the only variant).
    let without_mars = moon_mars_config(&moon, &mars, 100, 0)
        .replace("      Mars: { weight: 0, upstream: mars }\n", "");
    let assigned_before = assignments_total(&proxy, &["Moon"]).await;
    reload_to(&proxy, &without_mars).await;
    for v in on_mars.iter_mut() {
        assert_eq!(v.upstream(&client, &proxy).await, "moon");
    }
    assert_eq!(
        assignments_total(&proxy, &["Moon"]).await - assigned_before,
        30.0,
        "counted as new assignments"
    );
    proxy.stop().await;
}

/// inactive → active → inactive → active: run 2 counts only devices assigned in run 2;
/// run-1 devices keep their variant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_count_only_devices_assigned_in_the_current_run() {
    let (moon, mars) = moon_and_mars().await;
    let active = moon_mars_config(&moon, &mars, 50, 50);
    let inactive = active.replace("state: active", "state: inactive");
    let proxy = TestProxy::start(&inactive).await;
    let client = client();
    assert_eq!(
        Visitor::new().upstream(&client, &proxy).await,
        "moon",
        "inactive: fallback"
    );
    assert_eq!(assignments_total(&proxy, &["Moon", "Mars"]).await, 0.0);

    reload_to(&proxy, &active).await;
    let mut run1 = Vec::new();
    for _ in 0..20 {
        let mut v = Visitor::new();
        let u = v.upstream(&client, &proxy).await;
        run1.push((v, u));
    }
    assert_eq!(assignments_total(&proxy, &["Moon", "Mars"]).await, 20.0);
    reload_to(&proxy, &inactive).await;
    for (v, _) in run1.iter_mut() {
        assert_eq!(
            v.upstream(&client, &proxy).await,
            "moon",
            "inactive serves the fallback"
        );
    }
    reload_to(&proxy, &active).await;
    for (v, before) in run1.iter_mut() {
        assert_eq!(
            &v.upstream(&client, &proxy).await,
            before,
            "run-1 devices keep their variant"
        );
    }
    assert_eq!(
        assignments_total(&proxy, &["Moon", "Mars"]).await,
        0.0,
        "and are not counted in run 2 (the metrics show the last run)"
    );
    for _ in 0..7 {
        Visitor::new().upstream(&client, &proxy).await;
    }
    assert_eq!(assignments_total(&proxy, &["Moon", "Mars"]).await, 7.0);

    let book: serde_json::Value =
        serde_json::from_slice(&std::fs::read(proxy.dir.path().join("data/runs.json")).unwrap())
            .unwrap();
    let runs = book["experiments"]["moon_mars"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["number"], 1);
    assert!(runs[0]["ended_at"].is_string());
    assert_eq!(runs[1]["number"], 2);
    assert!(runs[1]["ended_at"].is_null());
    proxy.stop().await;
}

/// Every pair of states through an edited file: the allowed ones apply, the refused
/// ones are refused with the experiment and both states named, at the `state:` key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_through_the_file() {
    let (moon, mars) = moon_and_mars().await;
    let config = |state: &str| {
        moon_mars_config(&moon, &mars, 50, 50).replace("state: active", &format!("state: {state}"))
            + "    rollout_variant: Mars\n"
    };
    let states = ["inactive", "active", "rollout"];
    for from in states {
        for to in states {
            let refused = matches!(
                (from, to),
                ("inactive", "rollout") | ("rollout", "inactive")
            );
            let proxy = TestProxy::start(&config(from)).await;
            let before = proxy.metrics().await;
            write_by_rename(
                &proxy.config_path,
                &with_data_dir(&(config(to) + "# changed\n"), proxy.dir.path()),
            );
            let key = if refused { "failure" } else { "success" };
            let series = format!(r#"abproxy_config_reloads_total{{result="{key}"}}"#);
            eventually(WITHIN, &format!("{from} → {to} is {key}"), || async {
                proxy.metrics().await[&series] > before[&series]
            })
            .await;
            let book: serde_json::Value = serde_json::from_slice(
                &std::fs::read(proxy.dir.path().join("data/runs.json")).unwrap(),
            )
            .unwrap();
            let in_force = if refused { from } else { to };
            assert_eq!(
                book["experiments"]["moon_mars"]["state"], in_force,
                "{from} → {to}"
            );
            proxy.stop().await;
        }
    }
    // The message, through `abproxy check` against the same data directory.
    let proxy = TestProxy::start(&config("inactive")).await;
    let path = proxy.config_path.clone();
    std::fs::write(&path, with_data_dir(&config("rollout"), proxy.dir.path())).unwrap();
    let (code, out) = crate::support::binary::check(&path);
    assert_eq!(code, 1);
    assert_eq!(
        out.trim(),
        format!(
            "{}:11:5: experiments.moon_mars.state: inactive → rollout is not an allowed transition \
             (activate it first: there is nothing to roll out)",
            path.display()
        )
    );
    proxy.stop().await;
}

/// traffic: 10 enrolls 10 % ± 1 point, and the enrolled still split 50/50 ± 2 points.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_enrolls_a_share_with_an_unbiased_split() {
    let (moon, mars) = moon_and_mars().await;
    let app = MockUpstream::start("app").await;
    let proxy = TestProxy::start(&format!(
        "upstreams:\n  app: {}\ndefault_upstream: app\nexperiments:\n  btn:\n    state: active\n    traffic: 10\n    variants:\n      A: {{ weight: 1 }}\n      B: {{ weight: 1 }}\n    fallback: A\n",
        app.url()
    ))
    .await;
    let _ = (moon, mars);
    let client = client();
    const N: usize = 30_000;
    let mut tasks = Vec::new();
    let cookies: Vec<String> = (0..N)
        .map(|i| returning_device_cookies(&proxy, &format!("traffic-{i}")))
        .collect();
    let cookies = std::sync::Arc::new(cookies);
    for t in 0..8 {
        let (client, url, cookies) = (client.clone(), proxy.url("/"), cookies.clone());
        tasks.push(tokio::spawn(async move {
            for i in (t..N).step_by(8) {
                let (status, _, _) = send(&client, request(&url, &[("cookie", &cookies[i])])).await;
                assert_eq!(status, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let m = proxy.metrics().await;
    let a = m[r#"abproxy_assignments_total{experiment="btn",variant="A"}"#];
    let b = m[r#"abproxy_assignments_total{experiment="btn",variant="B"}"#];
    let enrolled = (a + b) / N as f64;
    assert!((enrolled - 0.10).abs() <= 0.01, "enrolled share {enrolled}");
    let b_share = b / (a + b);
    assert!(
        (b_share - 0.5).abs() <= 0.02,
        "B's share of the enrolled {b_share}"
    );
    proxy.stop().await;
}

/// Each target condition, and bots: untargeted devices and bots get the fallback and
/// are not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_conditions_and_bots() {
    let app = MockUpstream::start("app").await;
    let experiment = |key: &str, target: &str| {
        format!("  {key}:\n    state: active\n    target: {target}\n    variants:\n      Off: {{ weight: 0 }}\n      On: {{ weight: 1 }}\n    fallback: Off\n")
    };
    let config = format!(
        "upstreams:\n  app: {}\ndefault_upstream: app\nexperiments:\n{}{}{}{}{}{}",
        app.url(),
        experiment("mobile", "{ device: [mobile] }"),
        experiment("country", "{ headers: { X-Country: DE } }"),
        experiment(
            "firefox",
            r#"{ header_matches: { User-Agent: 'Firefox/\d+' } }"#
        ),
        experiment("pro", "{ cookies: { plan: pro } }"),
        experiment("beta", "{ cookies_present: [beta] }"),
        experiment("news", "{ query: { ref: newsletter } }"),
    );
    let proxy = TestProxy::start(&config).await;
    let seen = |i: usize| {
        app.requests()[i].headers["x-ab-assignments"]
            .to_str()
            .unwrap()
            .to_string()
    };
    let firefox_mobile = "Mozilla/5.0 (Android 14; Mobile; rv:121.0) Gecko/121.0 Firefox/121.0";
    get(
        &proxy.url("/?ref=newsletter"),
        &[
            ("user-agent", firefox_mobile),
            ("x-country", "DE"),
            ("cookie", "plan=pro; beta=1"),
        ],
    )
    .await;
    assert_eq!(
        seen(0),
        "mobile=On, country=On, firefox=On, pro=On, beta=On, news=On"
    );
    get(
        &proxy.url("/?ref=ads"),
        &[
            ("user-agent", "Mozilla/5.0 (X11; Linux) Chrome/120"),
            ("x-country", "FR"),
            ("cookie", "plan=free"),
        ],
    )
    .await;
    assert_eq!(
        seen(1),
        "mobile=Off, country=Off, firefox=Off, pro=Off, beta=Off, news=Off"
    );
    let m = proxy.metrics().await;
    for key in ["mobile", "country", "firefox", "pro", "beta", "news"] {
        assert_eq!(
            m[&format!(r#"abproxy_assignments_total{{experiment="{key}",variant="On"}}"#)],
            1.0,
            "{key}: the targeted device only"
        );
        assert_eq!(
            m[&format!(r#"abproxy_exposures_total{{experiment="{key}",variant="Off"}}"#)],
            0.0,
            "{key}: untargeted is uncounted"
        );
    }
    // A bot that matches every condition is still never counted, and gets the fallback.
    let googlebot = "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X) Mobile Firefox/121.0 (compatible; Googlebot/2.1)";
    get(
        &proxy.url("/?ref=newsletter"),
        &[
            ("user-agent", googlebot),
            ("x-country", "DE"),
            ("cookie", "device_id=bot; plan=pro; beta=1"),
        ],
    )
    .await;
    assert_eq!(
        seen(2),
        "mobile=Off, country=Off, firefox=Off, pro=Off, beta=Off, news=Off"
    );
    let after = proxy.metrics().await;
    let counted: f64 = after
        .iter()
        .filter(|(k, _)| {
            k.starts_with("abproxy_assignments_total") || k.starts_with("abproxy_exposures_total")
        })
        .map(|(_, v)| v)
        .sum();
    let before: f64 = m
        .iter()
        .filter(|(k, _)| {
            k.starts_with("abproxy_assignments_total") || k.starts_with("abproxy_exposures_total")
        })
        .map(|(_, v)| v)
        .sum();
    assert_eq!(counted, before, "the bot changed no count");
    // A new bot gets its device id, and no assignment cookie: an empty one says nothing.
    let (status, headers, _) = get(&proxy.url("/"), &[("user-agent", googlebot)]).await;
    assert_eq!(status, 200);
    let cookies: Vec<&str> = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        cookies.iter().any(|c| c.starts_with("device_id=")),
        "{cookies:?}"
    );
    assert!(
        !cookies.iter().any(|c| c.starts_with("ab_assignments=")),
        "no assignment cookie for a bot: {cookies:?}"
    );
    proxy.stop().await;
}

/// QA override: off unless configured; the query parameter forces a variant for this
/// browser (remembered in a session cookie, cleared by an empty value); the header
/// forces one request; neither is ever counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qa_override_forces_a_variant_uncounted() {
    let (moon, mars) = moon_and_mars().await;
    let base = moon_mars_config(&moon, &mars, 100, 0);
    let client = client();

    let off = TestProxy::start(&base).await;
    let mut v = Visitor::new();
    let (_, h, _) = v
        .get(
            &client,
            &off.url("/?ab_force=moon_mars=Mars"),
            &[("x-ab-force", "moon_mars=Mars")],
        )
        .await;
    assert_eq!(
        h["x-upstream"], "moon",
        "overrides are off unless configured"
    );
    off.stop().await;

    let proxy =
        TestProxy::start(&(base + "qa_override:\n  query_param: ab_force\n  header: X-AB-Force\n"))
            .await;
    let mut v = Visitor::new();
    let (_, h, _) = v
        .get(&client, &proxy.url("/?ab_force=moon_mars%3DMars"), &[])
        .await;
    assert_eq!(h["x-upstream"], "mars");
    assert!(v.jar.contains("ab_force=moon_mars=Mars"), "{}", v.jar);
    let (_, h, _) = v.get(&client, &proxy.url("/next-page"), &[]).await;
    assert_eq!(h["x-upstream"], "mars", "remembered for this browser");
    let (_, h, _) = v.get(&client, &proxy.url("/?ab_force="), &[]).await;
    assert_eq!(h["x-upstream"], "moon", "cleared");
    assert!(!v.jar.contains("ab_force"));
    let (_, h, _) = Visitor::new()
        .get(
            &client,
            &proxy.url("/"),
            &[("x-ab-force", "moon_mars=Mars")],
        )
        .await;
    assert_eq!(h["x-upstream"], "mars", "the header forces one request");
    let m = proxy.metrics().await;
    assert_eq!(
        m[r#"abproxy_exposures_total{experiment="moon_mars",variant="Mars"}"#], 0.0,
        "forced requests are not counted"
    );
    assert_eq!(
        m[r#"abproxy_assignments_total{experiment="moon_mars",variant="Mars"}"#],
        0.0
    );
    proxy.stop().await;
}

/// `/_ab/assignments` tells the frontend what to render; it sets the cookies a new
/// device needs; `/_ab/sdk.js` is served; neither is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frontend_reads_its_assignments() {
    let (moon, mars) = moon_and_mars().await;
    let config = moon_mars_config(&moon, &mars, 0, 100)
        + "  white_gold_btn:\n    state: inactive\n    variants:\n      White: { weight: 1 }\n      Gold: { weight: 0 }\n    fallback: White\n  shop_only:\n    state: active\n    match: { path_prefix: /shop }\n    variants:\n      A: { weight: 1 }\n    fallback: A\n";
    let proxy = TestProxy::start(&config).await;
    let client = client();
    let mut v = Visitor::new();
    let (status, h, body) = v.get(&client, &proxy.url("/_ab/assignments"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["cache-control"], "private, no-store");
    assert!(
        v.jar.contains("device_id=") && v.jar.contains("ab_assignments="),
        "a new device gets both cookies: {}",
        v.jar
    );
    assert_eq!(
        body,
        r#"{"moon_mars":{"group":"Mars","assigned":"Mars","state":"active","fallback":"Moon"},"white_gold_btn":{"group":"White","assigned":"White","state":"inactive","fallback":"White"}}"#
    );
    // The page path decides `match`; the assignment agrees with what the proxy forwards.
    let (_, _, body) = v
        .get(
            &client,
            &proxy.url("/_ab/assignments?path=%2Fshop%2Fcart"),
            &[],
        )
        .await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["shop_only"]["group"], "A");
    let (_, h, _) = v.get(&client, &proxy.url("/"), &[]).await;
    assert_eq!(h["x-upstream"], "mars");
    assert_eq!(
        mars.requests().last().unwrap().headers["x-ab-assignments"],
        "moon_mars=Mars, white_gold_btn=White"
    );

    let (status, h, js) = v.get(&client, &proxy.url("/_ab/sdk.js"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(h["content-type"], "text/javascript; charset=utf-8");
    assert!(
        js.contains("window.abproxy = { assignments: assignments, group: group, track: track }")
    );
    let (status, _, _) = send(
        &client,
        http::Request::post(proxy.url("/_ab/assignments"))
            .body(Default::default())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 405);
    assert_eq!(
        moon.count() + mars.count(),
        1,
        "no /_ab/ request was forwarded"
    );
    proxy.stop().await;
}

/// Two replicas with the same `secret_file` (and separate data directories) agree on
/// every device, whatever their weights; a replica with another secret ignores the
/// cookie and falls back to the hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_a_secret_agree() {
    let (moon, mars) = moon_and_mars().await;
    let shared = tempfile::tempdir().unwrap();
    let secret = shared.path().join("secret");
    std::fs::write(&secret, "shared-replica-secret-0123456789\n").unwrap();
    let with_secret =
        |yaml: String, file: &std::path::Path| format!("secret_file: {}\n{yaml}", file.display());
    let a = TestProxy::start(&with_secret(
        moon_mars_config(&moon, &mars, 50, 50),
        &secret,
    ))
    .await;
    let b = TestProxy::start(&with_secret(
        moon_mars_config(&moon, &mars, 100, 0),
        &secret,
    ))
    .await;
    let other_secret = shared.path().join("other");
    std::fs::write(&other_secret, "a-different-secret-9876543210\n").unwrap();
    let c = TestProxy::start(&with_secret(
        moon_mars_config(&moon, &mars, 100, 0),
        &other_secret,
    ))
    .await;
    let client = client();
    let mut on_mars = 0;
    for _ in 0..100 {
        let mut v = Visitor::new();
        let first = v.upstream(&client, &a).await;
        assert_eq!(
            v.upstream(&client, &b).await,
            first,
            "replica B honours replica A's pin"
        );
        on_mars += usize::from(first == "mars");
        assert_eq!(
            v.upstream(&client, &c).await,
            "moon",
            "another secret: the cookie is ignored"
        );
    }
    assert!(
        on_mars > 20,
        "some devices were pinned to Mars at A: {on_mars}"
    );
    assert_eq!(
        assignments_total(&b, &["Moon", "Mars"]).await,
        0.0,
        "B assigned no one anew"
    );
    assert_eq!(
        c.metrics().await[r#"abproxy_assignment_cookie_rejected_total{reason="bad_signature"}"#],
        100.0
    );
    for p in [a, b, c] {
        p.stop().await;
    }
}

/// Pins of experiments that are gone are dropped from the cookie at the next response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_of_removed_experiments_are_dropped() {
    let (moon, mars) = moon_and_mars().await;
    let base = moon_mars_config(&moon, &mars, 50, 50);
    let with_extra = base.clone()
        + "  extra:\n    state: active\n    variants:\n      X: { weight: 1 }\n    fallback: X\n";
    let proxy = TestProxy::start(&with_extra).await;
    let client = client();
    let mut v = Visitor::new();
    v.upstream(&client, &proxy).await;
    assert!(v.jar.contains("|extra:X:1."), "{}", v.jar);
    reload_to(&proxy, &base).await;
    let (_, h, _) = v.get(&client, &proxy.url("/"), &[]).await;
    let set = h["set-cookie"].to_str().unwrap();
    assert!(
        set.starts_with("ab_assignments=v1.moon_mars:") && !set.contains("extra"),
        "{set}"
    );
    proxy.stop().await;
}

/// A known device whose assignment cookie is missing or unreadable may have been counted
/// already (by a replica with another secret, before it cleared its cookies): it is
/// pinned again, but not counted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_pins_are_restored_without_counting_twice() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = TestProxy::start(&moon_mars_config(&moon, &mars, 50, 50)).await;
    let client = client();
    let mut v = Visitor::new();
    let first = v.upstream(&client, &proxy).await;
    assert_eq!(assignments_total(&proxy, &["Moon", "Mars"]).await, 1.0);
    let id = v
        .jar
        .split("; ")
        .find_map(|c| c.strip_prefix("device_id="))
        .unwrap()
        .to_string();
    let mut lost = Visitor::with_id(&id);
    for _ in 0..3 {
        assert_eq!(lost.upstream(&client, &proxy).await, first);
    }
    assert_eq!(
        assignments_total(&proxy, &["Moon", "Mars"]).await,
        1.0,
        "not counted again"
    );
    assert!(
        lost.jar.contains(":0."),
        "re-pinned outside any run's population: {}",
        lost.jar
    );
    let exposed = series(&proxy, "abproxy_exposures_total", "moon_mars", "Moon").await
        + series(&proxy, "abproxy_exposures_total", "moon_mars", "Mars").await;
    assert_eq!(exposed, 4.0);
    proxy.stop().await;
}
