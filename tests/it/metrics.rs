//! The Prometheus series of PRODUCT.md, with the counts that traffic should produce.

use abproxy::experiments::assign::WeightTable;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposures_assignments_and_upstream_series_count_what_happened() {
    let (moon, mars) = moon_and_mars().await;
    let config = moon_mars_config(&moon, &mars, 30, 70)
        + "  paused:\n    state: inactive\n    variants:\n      A: { weight: 1 }\n      B: { weight: 1 }\n    fallback: A\n";
    let proxy = TestProxy::start(&config).await;
    let client = client();
    let table = WeightTable::new([("Moon", 30), ("Mars", 70)]).unwrap();
    let mut assigned = [0.0f64; 2];
    let mut exposed = [0.0f64; 2];
    let mut ids = Vec::new();
    let mut jars = Vec::new();
    for _ in 0..40 {
        let (status, headers, _) = send(&client, request(&proxy.url("/"), &[])).await;
        assert_eq!(status, 200);
        let id = set_device_id(&headers).unwrap();
        let v = table.assign(id.as_bytes(), "moon_mars");
        assigned[v] += 1.0;
        exposed[v] += 1.0;
        jars.push(cookies_after(&headers, ""));
        ids.push(id);
    }
    // Returning visitors (with the cookies they were given): exposures only.
    for (id, jar) in ids.iter().zip(&jars).take(15) {
        let (_, headers, _) =
            send(&client, request(&proxy.url("/again"), &[("cookie", jar)])).await;
        assert!(
            headers.get("set-cookie").is_none(),
            "nothing changes for a returning visitor"
        );
        exposed[table.assign(id.as_bytes(), "moon_mars")] += 1.0;
    }
    let m = proxy.metrics().await;
    let series = |name: &str, variant: &str| {
        m[&format!(r#"{name}{{experiment="moon_mars",variant="{variant}"}}"#)]
    };
    assert_eq!(series("abproxy_assignments_total", "Moon"), assigned[0]);
    assert_eq!(series("abproxy_assignments_total", "Mars"), assigned[1]);
    assert_eq!(series("abproxy_exposures_total", "Moon"), exposed[0]);
    assert_eq!(series("abproxy_exposures_total", "Mars"), exposed[1]);
    assert_eq!(series("abproxy_variant_weight", "Moon"), 30.0);
    assert_eq!(series("abproxy_variant_weight", "Mars"), 70.0);
    // Inactive experiments are not counted.
    assert_eq!(
        m[r#"abproxy_exposures_total{experiment="paused",variant="A"}"#],
        0.0
    );
    assert_eq!(
        m[r#"abproxy_assignments_total{experiment="paused",variant="A"}"#],
        0.0
    );
    // Upstream series.
    let moon_requests = moon.count() as f64;
    let mars_requests = mars.count() as f64;
    assert_eq!(moon_requests + mars_requests, 55.0);
    assert_eq!(
        m[r#"abproxy_upstream_responses_total{code_class="2xx",upstream="moon"}"#],
        moon_requests
    );
    assert_eq!(
        m[r#"abproxy_upstream_responses_total{code_class="2xx",upstream="mars"}"#],
        mars_requests
    );
    assert_eq!(
        m[r#"abproxy_upstream_duration_seconds_count{upstream="moon"}"#],
        moon_requests
    );
    assert_eq!(
        m[r#"abproxy_upstream_duration_seconds_count{upstream="mars"}"#],
        mars_requests
    );
    // Reload series exist from the start; the initial load is stamped.
    assert_eq!(m[r#"abproxy_config_reloads_total{result="success"}"#], 0.0);
    assert_eq!(m[r#"abproxy_config_reloads_total{result="failure"}"#], 0.0);
    assert!(m["abproxy_config_last_reload_success_timestamp_seconds"] > 1.7e9);
    // Never a device id (or a path) in a label.
    let (_, _, text) = get(&format!("http://{}/metrics", proxy.admin), &[]).await;
    let text = String::from_utf8(text.to_vec()).unwrap();
    assert!(!ids.iter().any(|id| text.contains(id.as_str())));
    assert!(!text.contains("/again"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_classes_are_counted() {
    let app = MockUpstream::start("app").await;
    let proxy = TestProxy::start(&format!(
        "upstreams:\n  app: {}\ndefault_upstream: app\n",
        app.url()
    ))
    .await;
    for (path, n) in [
        ("/status/204", 2),
        ("/status/302", 1),
        ("/status/404", 3),
        ("/status/503", 4),
    ] {
        for _ in 0..n {
            get(&proxy.url(path), &[]).await;
        }
    }
    let m = proxy.metrics().await;
    for (class, n) in [
        ("2xx", 2.0),
        ("3xx", 1.0),
        ("4xx", 3.0),
        ("5xx", 4.0),
        ("error", 0.0),
    ] {
        assert_eq!(
            m[&format!(
                r#"abproxy_upstream_responses_total{{code_class="{class}",upstream="app"}}"#
            )],
            n,
            "{class}"
        );
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints() {
    let app = MockUpstream::start("app").await;
    let proxy = TestProxy::start(&format!(
        "upstreams:\n  app: {}\ndefault_upstream: app\n",
        app.url()
    ))
    .await;
    let (status, _, body) = get(&format!("http://{}/healthz", proxy.admin), &[]).await;
    assert_eq!((status.as_u16(), &body[..]), (200, &b"ok\n"[..]));
    let (status, headers, _) = get(&format!("http://{}/metrics", proxy.admin), &[]).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    assert_eq!(
        get(&format!("http://{}/nope", proxy.admin), &[]).await.0,
        404
    );
    // The admin endpoints are not on the main listener: there, /metrics is proxied.
    get(&proxy.url("/metrics"), &[]).await;
    assert_eq!(app.requests()[0].uri.path(), "/metrics");
    proxy.stop().await;
}
