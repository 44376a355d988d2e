//! The admin API and page: auth, PATCH through the YAML file, sessions and CSRF.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::support::*;

pub const TOKEN: &str = "test-admin-token-0123456789";

/// A proxy with an admin token file and a commented config.
pub async fn proxy_with_token(moon: &MockUpstream, mars: &MockUpstream, state: &str) -> TestProxy {
    let dir = tempfile::tempdir().unwrap();
    let config_path = write_config_with_token(dir.path(), moon, mars, state, "");
    TestProxy::start_at(dir, config_path).await
}

/// The config of [`proxy_with_token`] (and its token file) in `dir`, with `extra` lines
/// added to the experiment (goals, a control); its path.
pub fn write_config_with_token(
    dir: &std::path::Path,
    moon: &MockUpstream,
    mars: &MockUpstream,
    state: &str,
    extra: &str,
) -> std::path::PathBuf {
    let token_file = dir.join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let config_path = dir.join("abproxy.yaml");
    let config = format!(
        "# Managed by hand and by the admin page.
data_dir: {data}
listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
  token_file: {token}
upstreams:
  moon: {moon}   # the control
  mars: {mars}
experiments:
  moon_mars:
    title: Moon/Mars
    state: {state}   # flipped from the admin page
    variants:
      Moon: {{ weight: 50, upstream: moon }}
      Mars: {{ weight: 50, upstream: mars }}
    fallback: Moon
    rollout_variant: Mars
{extra}",
        data = dir.join("data").display(),
        token = token_file.display(),
        moon = moon.url(),
        mars = mars.url(),
    );
    std::fs::write(&config_path, config).unwrap();
    config_path
}

async fn admin_request(
    proxy: &TestProxy,
    method: http::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, http::HeaderMap, String) {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", proxy.admin));
    for (n, v) in headers {
        builder = builder.header(*n, *v);
    }
    send_text(builder, body).await
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

async fn patch(proxy: &TestProxy, body: &str) -> (u16, serde_json::Value) {
    let auth = bearer();
    let (status, _, text) = admin_request(
        proxy,
        http::Method::PATCH,
        "/api/experiments/moon_mars",
        &[("authorization", &auth)],
        body,
    )
    .await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_requires_the_token() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = proxy_with_token(&moon, &mars, "active").await;
    let (status, headers, body) =
        admin_request(&proxy, http::Method::GET, "/api/experiments", &[], "").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(headers["www-authenticate"], "Bearer");
    let (status, _, _) = admin_request(
        &proxy,
        http::Method::GET,
        "/api/experiments",
        &[("authorization", "Bearer wrong-token-0123456789")],
        "",
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, _) = admin_request(
        &proxy,
        http::Method::PATCH,
        "/api/experiments/moon_mars",
        &[],
        r#"{"state":"inactive"}"#,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, _) = admin_request(&proxy, http::Method::GET, "/experiments", &[], "").await;
    assert_eq!(status, 401, "the page asks for a login");
    // Metrics and health stay open.
    assert_eq!(
        admin_request(&proxy, http::Method::GET, "/metrics", &[], "")
            .await
            .0,
        200
    );
    assert_eq!(
        admin_request(&proxy, http::Method::GET, "/healthz", &[], "")
            .await
            .0,
        200
    );

    let auth = bearer();
    let (status, _, page) = admin_request(
        &proxy,
        http::Method::GET,
        "/experiments",
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(status, 200, "the page accepts the bearer token too");
    assert!(page.contains("Moon/Mars"));
    let (status, _, body) = admin_request(
        &proxy,
        http::Method::GET,
        "/api/experiments",
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let e = &json["experiments"][0];
    assert_eq!(e["key"], "moon_mars");
    assert_eq!(e["state"], "active");
    assert_eq!(
        e["allowed_states"],
        serde_json::json!(["inactive", "active", "rollout"])
    );
    assert_eq!(e["run"]["number"], 1);
    assert_eq!(e["variants"][1]["name"], "Mars");
    assert_eq!(e["variants"][1]["weight"], 50);
    // Live counts.
    for _ in 0..5 {
        get(&proxy.url("/"), &[]).await;
    }
    let (_, _, body) = admin_request(
        &proxy,
        http::Method::GET,
        "/api/experiments",
        &[("authorization", &auth)],
        "",
    )
    .await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let assigned: u64 = json["experiments"][0]["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["assigned"].as_u64().unwrap())
        .sum();
    assert_eq!(assigned, 5);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_reads_are_open_and_writes_say_how_to_set_one() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = TestProxy::start(&moon_mars_config(&moon, &mars, 50, 50)).await;
    let (status, _, _) =
        admin_request(&proxy, http::Method::GET, "/api/experiments", &[], "").await;
    assert_eq!(status, 200);
    let (status, _, body) = admin_request(
        &proxy,
        http::Method::PATCH,
        "/api/experiments/moon_mars",
        &[("authorization", "Bearer anything-at-all-123")],
        r#"{"state":"inactive"}"#,
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        body.contains("set ABPROXY_ADMIN_TOKEN or admin.token_file"),
        "{body}"
    );
    let (status, _, page) = admin_request(&proxy, http::Method::GET, "/experiments", &[], "").await;
    assert_eq!(status, 200);
    assert!(page.contains("no admin token is configured"));
    assert!(page.contains(" disabled"), "forms are disabled");
    proxy.stop().await;
}

/// Every pair of states through the API: allowed ones apply and reach the file (comments
/// kept); refused ones are a 400 naming the experiment and both states, and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_through_the_api() {
    let (moon, mars) = moon_and_mars().await;
    let states = ["inactive", "active", "rollout"];
    for from in states {
        for to in states {
            let refused = matches!(
                (from, to),
                ("inactive", "rollout") | ("rollout", "inactive")
            );
            let proxy = proxy_with_token(&moon, &mars, from).await;
            let before = std::fs::read_to_string(&proxy.config_path).unwrap();
            let (status, body) = patch(&proxy, &format!(r#"{{"state":"{to}"}}"#)).await;
            let after = std::fs::read_to_string(&proxy.config_path).unwrap();
            if refused {
                assert_eq!(status, 400, "{from} → {to}: {body}");
                let message = body["error"].as_str().unwrap();
                assert!(
                    message.contains(&format!(
                        "experiments.moon_mars.state: {from} → {to} is not an allowed transition"
                    )),
                    "{message}"
                );
                assert_eq!(after, before, "a refused change leaves the file alone");
            } else {
                assert_eq!(status, 200, "{from} → {to}: {body}");
                assert_eq!(body["state"], to);
                assert_eq!(
                    after,
                    before.replace(&format!("state: {from}   #"), &format!("state: {to}   #")),
                    "only the value changed"
                );
                assert!(after.starts_with("# Managed by hand and by the admin page."));
                // And the proxy serves by it.
                let (_, h, _) = get(&proxy.url("/"), &[]).await;
                if to == "rollout" {
                    assert_eq!(h["x-upstream"], "mars");
                }
                if to == "inactive" {
                    assert_eq!(h["x-upstream"], "moon");
                }
            }
            proxy.stop().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_validates_like_the_file_and_reports_clearly() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = proxy_with_token(&moon, &mars, "active").await;
    let original = std::fs::read_to_string(&proxy.config_path).unwrap();

    let (status, body) = patch(&proxy, r#"{"weights":{"Moon":10,"Mars":90}}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["variants"][0]["weight"], 10);
    let text = std::fs::read_to_string(&proxy.config_path).unwrap();
    assert_eq!(
        text,
        original
            .replace("Moon: { weight: 50", "Moon: { weight: 10")
            .replace("Mars: { weight: 50", "Mars: { weight: 90")
    );
    let m = proxy.metrics().await;
    assert_eq!(
        m[r#"abproxy_variant_weight{experiment="moon_mars",variant="Mars"}"#],
        90.0
    );

    let cases = [
        (
            r#"{"weights":{"Moon":0,"Mars":0}}"#,
            400,
            "the weights sum to 0",
        ),
        (r#"{"weights":{"Venus":1}}"#, 400, "has no variant `Venus`"),
        (r#"{"weights":{"Moon":-1}}"#, 400, "invalid request body"),
        (r#"{"state":"paused"}"#, 400, "invalid request body"),
        (r#"{"colour":"red"}"#, 400, "unknown field `colour`"),
        (
            r#"{"rollout_variant":"Venus"}"#,
            400,
            "has no variant `Venus`",
        ),
        // A name with a newline would add any key it liked to the file.
        (
            r#"{"state":"rollout","rollout_variant":"Mars\n    traffic: 1"}"#,
            400,
            "has no variant",
        ),
        ("not json", 400, "invalid request body"),
    ];
    for (body, status, message) in cases {
        let (got, json) = patch(&proxy, body).await;
        assert_eq!(got, status, "{body}: {json}");
        assert!(
            json["error"].as_str().unwrap().contains(message),
            "{body}: {json}"
        );
    }
    let auth = bearer();
    let (status, _, body) = admin_request(
        &proxy,
        http::Method::PATCH,
        "/api/experiments/nope",
        &[("authorization", &auth)],
        "{}",
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let big = format!(
        r#"{{"weights":{{"Moon":1}}, "pad":"{}"}}"#,
        "x".repeat(70_000)
    );
    let (status, _, _) = admin_request(
        &proxy,
        http::Method::PATCH,
        "/api/experiments/moon_mars",
        &[("authorization", &auth)],
        &big,
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(
        std::fs::read_to_string(&proxy.config_path).unwrap(),
        text,
        "nothing refused reached the file"
    );

    // Someone is editing the file (a broken save): the API does not clobber it.
    std::fs::write(&proxy.config_path, "experiments: [broken\n").unwrap();
    let (status, json) = patch(&proxy, r#"{"weights":{"Moon":20}}"#).await;
    assert_eq!(status, 409, "{json}");
    assert_eq!(
        std::fs::read_to_string(&proxy.config_path).unwrap(),
        "experiments: [broken\n"
    );
    proxy.stop().await;
}

/// The bandit owns a bandit experiment's weights: a PATCH of them gets `409` and leaves
/// the file alone; its state still changes through the API, the `bandit:` block kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bandit_experiments_weights_are_refused_and_its_state_is_not() {
    let (moon, mars) = moon_and_mars().await;
    let dir = tempfile::tempdir().unwrap();
    let bandit = "    goals:
      click: { event: button_click }
    bandit:   # the weights above are the burn-in weights
      algorithm: epsilon_greedy
      goal: click
      epsilon: 0.2
      update_every: 1h
";
    let config_path = write_config_with_token(dir.path(), &moon, &mars, "active", bandit);
    let proxy = TestProxy::start_at(dir, config_path).await;
    let original = std::fs::read_to_string(&proxy.config_path).unwrap();

    let owned = "experiment `moon_mars` has a bandit: its weights are set by the bandit; `variants.*.weight` in the file are the burn-in weights";
    for body in [
        r#"{"weights":{"Moon":10,"Mars":90}}"#,
        // Even the weights already in force, or with a state change: the API does not
        // own them, whatever they are.
        r#"{"weights":{"Moon":50,"Mars":50}}"#,
        r#"{"state":"inactive","weights":{"Mars":1}}"#,
        r#"{"weights":{"Venus":1}}"#,
    ] {
        let (status, json) = patch(&proxy, body).await;
        assert_eq!(status, 409, "{body}: {json}");
        assert_eq!(json["error"], owned, "{body}");
        assert_eq!(
            std::fs::read_to_string(&proxy.config_path).unwrap(),
            original,
            "{body}: a refused change leaves the file alone"
        );
    }
    let (_, json) = patch(&proxy, "{}").await;
    assert_eq!(json["state"], "active", "nothing changed: {json}");

    let mut expected = original.clone();
    for (from, to) in [
        ("active", "inactive"),
        ("inactive", "active"),
        ("active", "rollout"),
    ] {
        let (status, json) = patch(&proxy, &format!(r#"{{"state":"{to}"}}"#)).await;
        assert_eq!(status, 200, "{from} → {to}: {json}");
        assert_eq!(json["state"], to);
        expected = expected.replace(&format!("state: {from}   #"), &format!("state: {to}   #"));
        assert_eq!(
            std::fs::read_to_string(&proxy.config_path).unwrap(),
            expected,
            "{from} → {to}: only the state changed, the bandit block is intact"
        );
        assert!(expected.contains(bandit));
    }
    // And the config in force still has its bandit (so its weights stay refused).
    let (status, json) = patch(&proxy, r#"{"weights":{"Moon":1}}"#).await;
    assert_eq!((status, json["error"].as_str()), (409, Some(owned)));
    proxy.stop().await;
}

/// While the API rewrites the file 60 times, a reader that reads it in a loop always
/// finds a complete, valid config (never a half-written file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_is_never_half_written() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = proxy_with_token(&moon, &mars, "active").await;
    let path = proxy.config_path.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (stop, reads, path) = (stop.clone(), reads.clone(), path.clone());
        std::thread::spawn(move || {
            let mut bad = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(&path).unwrap();
                if let Err(e) = abproxy::config::Config::from_str(&text, &path) {
                    bad.push(format!("{e}"));
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
            bad
        })
    };
    for i in 0..60u32 {
        let (status, body) = patch(
            &proxy,
            &format!(
                r#"{{"weights":{{"Moon":{},"Mars":{}}}}}"#,
                1 + i % 7,
                1 + i % 5
            ),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    stop.store(true, Ordering::Relaxed);
    let bad = reader.join().unwrap();
    assert!(
        bad.is_empty(),
        "a reader saw an invalid file: {:?}",
        &bad[..bad.len().min(3)]
    );
    assert!(
        reads.load(Ordering::Relaxed) > 60,
        "the reader really read concurrently"
    );
    let names: Vec<String> = std::fs::read_dir(proxy.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.contains(".tmp-")),
        "no temporary files left: {names:?}"
    );
    proxy.stop().await;
}

/// The browser flow without a browser: log in, get a session cookie, PATCH with it
/// only together with the page's CSRF token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_login_and_csrf() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = proxy_with_token(&moon, &mars, "active").await;
    let form = "application/x-www-form-urlencoded";
    let (status, _, page) = admin_request(
        &proxy,
        http::Method::POST,
        "/login",
        &[("content-type", form)],
        "token=wrong-token-000000000",
    )
    .await;
    assert_eq!(status, 401);
    assert!(page.contains("That is not the admin token."));
    let (status, headers, _) = admin_request(
        &proxy,
        http::Method::POST,
        "/login",
        &[("content-type", form)],
        &format!("token={TOKEN}"),
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/experiments");
    let set = headers["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"),
        "{set}"
    );
    let session = set.split(';').next().unwrap().to_string();

    let (status, headers, page) = admin_request(
        &proxy,
        http::Method::GET,
        "/experiments",
        &[("cookie", &session)],
        "",
    )
    .await;
    assert_eq!(status, 200);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'nonce-"),
        "{csp}"
    );
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no external resources"
    );
    let csrf = page
        .split(r#"<meta name="csrf-token" content=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(csrf.len(), 32);
    assert!(page.contains("Moon/Mars") && page.contains("Log out"));

    let body = r#"{"weights":{"Moon":30,"Mars":70}}"#;
    let (status, _, _) = admin_request(
        &proxy,
        http::Method::PATCH,
        "/api/experiments/moon_mars",
        &[("cookie", &session)],
        body,
    )
    .await;
    assert_eq!(
        status, 403,
        "a session write without the CSRF token is refused"
    );
    let (status, _, _) = admin_request(
        &proxy,
        http::Method::PATCH,
        "/api/experiments/moon_mars",
        &[
            ("cookie", &session),
            ("x-csrf-token", "0".repeat(32).as_str()),
        ],
        body,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, json) = admin_request(
        &proxy,
        http::Method::PATCH,
        "/api/experiments/moon_mars",
        &[("cookie", &session), ("x-csrf-token", &csrf)],
        body,
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert!(std::fs::read_to_string(&proxy.config_path)
        .unwrap()
        .contains("Mars: { weight: 70"));

    let (status, headers, _) = admin_request(
        &proxy,
        http::Method::POST,
        "/logout",
        &[("cookie", &session)],
        "",
    )
    .await;
    assert_eq!(status, 303);
    assert!(headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    proxy.stop().await;
}

/// The Docker case: the config's directory cannot be written (there a read-only mount;
/// here the immutable attribute, which stops root too — see `ImmutableDir`). The PATCH
/// says why in its answer (the page shows that text) and the proxy logs it; once the
/// directory is writable again the change goes through and is logged readably.
#[test]
fn a_config_that_cannot_be_written_says_why_in_the_answer_and_the_log() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (moon, mars) = runtime.block_on(moon_and_mars());
    let dir = tempfile::tempdir().unwrap();
    let config_path = write_config_with_token(dir.path(), &moon, &mars, "active", "");
    let proxy = crate::support::binary::ProxyProcess::serve(&config_path);
    let url = format!("http://{}/api/experiments/moon_mars", proxy.admin);
    let patch = |body: &str| {
        runtime.block_on(send_text(
            http::Request::patch(&url).header("authorization", bearer()),
            body,
        ))
    };
    let logged = |what: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while let Ok(line) = proxy
            .log
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            if line.contains(what) {
                return line;
            }
        }
        panic!("no log line with {what:?}");
    };
    let before = std::fs::read_to_string(&config_path).unwrap();
    {
        let Some(_immutable) = ImmutableDir::set(dir.path()) else {
            return;
        };
        let (status, _, body) = patch(r#"{"weights":{"Moon":30,"Mars":70}}"#);
        assert_eq!(status, 500, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        let message = answer["error"].as_str().unwrap();
        let expected = format!(
            "cannot write {}: Operation not permitted (os error 1) — abproxy may not create files in {}",
            std::fs::canonicalize(&config_path).unwrap().display(),
            std::fs::canonicalize(dir.path()).unwrap().display()
        );
        assert!(message.starts_with(&expected), "{message}");
        let line = logged("admin API: change to experiment moon_mars failed");
        assert!(line.contains("ERROR") && line.contains(&expected), "{line}");
        assert_eq!(std::fs::read_to_string(&config_path).unwrap(), before);
    }
    let (status, _, body) = patch(r#"{"weights":{"Moon":30,"Mars":70}}"#);
    assert_eq!(status, 200, "{body}");
    let line = logged("experiment moon_mars changed through the admin API");
    assert!(
        line.ends_with(
            "changed through the admin API: weights Mars=70 Moon=30 (were Mars=50 Moon=50)"
        ),
        "{line}"
    );
    let (status, _, _) = patch(r#"{"state":"rollout","rollout_variant":"Mars"}"#);
    assert_eq!(status, 200);
    let line = logged("experiment moon_mars changed through the admin API");
    assert!(
        line.ends_with("changed through the admin API: state active → rollout"),
        "{line}"
    );
    let (status, _, _) = patch(r#"{"state":"inactive"}"#);
    assert_eq!(status, 400, "rollout → inactive is refused");
    let line = logged("admin API: change to experiment moon_mars refused (400 Bad Request)");
    assert!(
        line.contains("rollout → inactive is not an allowed transition"),
        "{line}"
    );
}
