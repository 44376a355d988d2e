//! `POST /_ab/events` and conversions: once per device, goal and run, only for the
//! current run's population, deduplicated across replicas through the signed cookie.

use bytes::Bytes;
use http_body_util::Full;

use crate::support::*;

fn goals_config(moon: &MockUpstream, mars: &MockUpstream, extra: &str) -> String {
    moon_mars_config(moon, mars, 50, 50)
        + "    goals:
      click: { event: button_click, params: { button: reserve } }
      revenue: { event: purchase, value: { param: amount } }
      checkout: { request: { method: POST, path_prefix: /checkout, status: 2xx }, value: { header: X-Upstream } }
"
        + extra
}

/// POST `body` to `/_ab/events` with `cookies`; (status, response headers, body).
async fn post_events(
    proxy: &TestProxy,
    cookies: &str,
    body: &str,
) -> (u16, http::HeaderMap, String) {
    let mut builder =
        http::Request::post(proxy.url("/_ab/events")).header("content-type", "application/json");
    if !cookies.is_empty() {
        builder = builder.header("cookie", cookies);
    }
    send_text(builder, body).await
}

async fn conversions(proxy: &TestProxy, goal: &str) -> f64 {
    let m = proxy.metrics().await;
    ["Moon", "Mars"]
        .iter()
        .map(|v| {
            m[&format!(
                r#"abproxy_conversions_total{{experiment="moon_mars",goal="{goal}",variant="{v}"}}"#
            )]
        })
        .sum()
}

/// A visitor's first page: the cookies it was given.
async fn first_visit(proxy: &TestProxy) -> (String, String) {
    let (_, headers, _) = get(&proxy.url("/"), &[]).await;
    (
        cookies_after(&headers, ""),
        headers["x-upstream"].to_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_converts_once_per_device_goal_and_run() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = TestProxy::start(&goals_config(&moon, &mars, "")).await;
    let (jar, upstream) = first_visit(&proxy).await;
    let variant = if upstream == "moon" { "Moon" } else { "Mars" };

    let click = r#"{"event": "button_click", "params": {"button": "reserve"}}"#;
    let (status, headers, body) = post_events(&proxy, &jar, click).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body, r#"{"accepted":1,"conversions":1}"#);
    let jar = cookies_after(&headers, &jar);
    assert!(
        jar.contains(":click"),
        "the conversion is recorded in the signed cookie: {jar}"
    );
    // The same device again, the same goal: accepted, not counted.
    let (_, _, body) = post_events(&proxy, &jar, &format!("[{click}, {click}]")).await;
    assert_eq!(body, r#"{"accepted":2,"conversions":0}"#);
    assert_eq!(conversions(&proxy, "click").await, 1.0);
    let m = proxy.metrics().await;
    assert_eq!(
        m[&format!(
            r#"abproxy_conversions_total{{experiment="moon_mars",goal="click",variant="{variant}"}}"#
        )],
        1.0
    );

    // A value goal: sum and sum of squares of the first conversion's value.
    let (_, headers, body) = post_events(&proxy, &jar, r#"[{"event": "purchase", "params": {"amount": 12.5}}, {"event": "purchase", "params": {"amount": 99}}]"#).await;
    assert_eq!(body, r#"{"accepted":2,"conversions":1}"#);
    let jar = cookies_after(&headers, &jar);
    let m = proxy.metrics().await;
    let label = format!(r#"{{experiment="moon_mars",goal="revenue",variant="{variant}"}}"#);
    assert_eq!(m[&format!("abproxy_conversion_value_sum{label}")], 12.5);
    assert_eq!(
        m[&format!("abproxy_conversion_value_sum_squares{label}")],
        156.25
    );

    // A params filter that does not match, and an event no goal uses.
    let (_, _, body) = post_events(
        &proxy,
        &jar,
        r#"[{"event": "button_click", "params": {"button": "other"}}, {"event": "scroll"}]"#,
    )
    .await;
    assert_eq!(body, r#"{"accepted":2,"conversions":0}"#);
    let m = proxy.metrics().await;
    assert_eq!(
        m["abproxy_events_received_total"], 7.0,
        "1 + 2 + 2 + 2 events"
    );
    assert_eq!(
        m["abproxy_events_unmatched_total"], 1.0,
        "scroll, counted in one aggregate, never as a label"
    );
    assert!(!m.keys().any(|k| k.contains("scroll")));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_goal_converts_on_the_response() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = TestProxy::start(&goals_config(&moon, &mars, "")).await;
    let (jar, _) = first_visit(&proxy).await;
    let post = |path: &'static str, jar: String| {
        let url = proxy.url(path);
        async move {
            let request = http::Request::post(url)
                .header("cookie", jar)
                .body(Full::new(Bytes::new()))
                .unwrap();
            send(&client(), request).await
        }
    };
    let (status, headers, _) = post("/checkout/pay", jar.clone()).await;
    assert_eq!(status, 200);
    let jar = cookies_after(&headers, &jar);
    assert!(jar.contains(":checkout"), "{jar}");
    let (_, _, _) = post("/checkout/pay", jar.clone()).await;
    get(&proxy.url("/checkout/pay"), &[("cookie", &jar)]).await;
    assert_eq!(
        conversions(&proxy, "checkout").await,
        1.0,
        "once, and GET does not match"
    );
    proxy.stop().await;
}

/// Two replicas sharing the secret: a conversion counted on one is not counted again on
/// the other, because it travels in the signed cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_holds_across_replicas_sharing_a_secret() {
    let (moon, mars) = moon_and_mars().await;
    let shared = tempfile::tempdir().unwrap();
    let secret = shared.path().join("secret");
    std::fs::write(&secret, "replica-shared-secret-0123456789\n").unwrap();
    let config = format!(
        "secret_file: {}\n{}",
        secret.display(),
        goals_config(&moon, &mars, "")
    );
    let (a, b) = (
        TestProxy::start(&config).await,
        TestProxy::start(&config).await,
    );
    let (jar, _) = first_visit(&a).await;
    let click = r#"{"event": "button_click", "params": {"button": "reserve"}}"#;
    let (_, headers, body) = post_events(&a, &jar, click).await;
    assert_eq!(body, r#"{"accepted":1,"conversions":1}"#);
    let jar = cookies_after(&headers, &jar);
    let (_, _, body) = post_events(&b, &jar, click).await;
    assert_eq!(
        body, r#"{"accepted":1,"conversions":0}"#,
        "replica B sees A's conversion in the cookie"
    );
    assert_eq!(
        conversions(&a, "click").await + conversions(&b, "click").await,
        1.0
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_endpoint_limits_and_errors() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = TestProxy::start(&goals_config(&moon, &mars, "")).await;
    let (jar, _) = first_visit(&proxy).await;
    let (status, _, body) = post_events(&proxy, "", r#"{"event": "a"}"#).await;
    assert_eq!(status, 400);
    assert!(body.contains("no device_id cookie"), "{body}");
    for (payload, message) in [
        ("{nope", "malformed JSON"),
        (r#"{"event": 5}"#, "event: must be a string"),
        (
            r#"[{"event": "a"}, {"params": {}}]"#,
            "events[1].event: missing",
        ),
    ] {
        let (status, headers, body) = post_events(&proxy, &jar, payload).await;
        assert_eq!(status, 400, "{payload}");
        assert_eq!(headers["content-type"], "application/json");
        assert!(body.contains(message), "{payload}: {body}");
    }
    let big = format!(
        r#"{{"event": "a", "params": {{"pad": "{}"}}}}"#,
        "x".repeat(70_000)
    );
    let (status, _, _) = post_events(&proxy, &jar, &big).await;
    assert_eq!(status, 413);
    let (status, _, _) = send(
        &client(),
        request(&proxy.url("/_ab/events"), &[("cookie", &jar)]),
    )
    .await;
    assert_eq!(status, 405, "GET is not for events");
    // A known device whose assignment cookie is lost converts nothing, and its cookie is
    // not rewritten (so it is not counted as newly assigned later).
    let id_only = jar
        .split("; ")
        .find(|c| c.starts_with("device_id="))
        .unwrap()
        .to_string();
    let (status, headers, body) = post_events(
        &proxy,
        &id_only,
        r#"{"event": "button_click", "params": {"button": "reserve"}}"#,
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (202, r#"{"accepted":1,"conversions":0}"#)
    );
    assert!(headers.get("set-cookie").is_none());
    assert_eq!(moon.count() + mars.count(), 1, "no event was forwarded");
    proxy.stop().await;
}
