//! The assignment hash, through the proxy: golden vectors, weight splits, stickiness.

use std::collections::BTreeMap;

use crate::support::*;

#[derive(Debug)]
struct Vector {
    device_id: String,
    experiment: String,
    weights: BTreeMap<String, u32>,
    variant: String,
}

/// Vectors from the independent Python implementation in `tests/golden/`
/// (`python3 tests/golden/make_assignment_vectors.py > tests/golden/assignment_vectors.json`).
fn golden_vectors() -> Vec<Vector> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/assignment_vectors.json"
    ))
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json.as_array()
        .unwrap()
        .iter()
        .map(|v| Vector {
            device_id: v["device_id"].as_str().unwrap().into(),
            experiment: v["experiment"].as_str().unwrap().into(),
            weights: v["weights"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, w)| (k.clone(), w.as_u64().unwrap() as u32))
                .collect(),
            variant: v["variant"].as_str().unwrap().into(),
        })
        .collect()
}

#[test]
fn golden_vectors_match_the_weight_table() {
    let vectors = golden_vectors();
    assert!(vectors.len() >= 200);
    for v in &vectors {
        // Config order = reverse name order, so only a walk in name order passes.
        let names: Vec<&str> = v.weights.keys().rev().map(String::as_str).collect();
        let table = abproxy::experiments::assign::WeightTable::new(
            names.iter().map(|n| (*n, v.weights[*n])),
        )
        .unwrap();
        let got = names[table.assign(v.device_id.as_bytes(), &v.experiment)];
        assert_eq!(got, v.variant, "{v:?}");
    }
}

/// Every golden vector, sent as a cookie through a running proxy: the upstream sees the
/// expected variant in `X-AB-Assignments` (tag-only experiment) for that device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_vectors_through_the_proxy() {
    let app = MockUpstream::start("app").await;
    let vectors = golden_vectors();
    // One proxy per (experiment, weights) group: `moon_mars` appears with two weightings.
    let mut groups: Vec<(&str, &BTreeMap<String, u32>)> = Vec::new();
    for v in &vectors {
        if !groups
            .iter()
            .any(|(e, w)| *e == v.experiment && *w == &v.weights)
        {
            groups.push((&v.experiment, &v.weights));
        }
    }
    let client = client();
    let mut checked = 0;
    for (experiment, weights) in groups {
        // Written in reverse name order, so a walk in file order instead of name order
        // would pick differently.
        let variants: String = weights
            .iter()
            .rev()
            .map(|(name, w)| format!("      {name}: {{ weight: {w} }}\n"))
            .collect();
        let fallback = weights.keys().next().unwrap();
        let proxy = TestProxy::start(&format!(
            "upstreams:\n  app: {}\ndefault_upstream: app\nexperiments:\n  {experiment}:\n    state: active\n    variants:\n{variants}    fallback: {fallback}\n",
            app.url()
        ))
        .await;
        for v in vectors
            .iter()
            .filter(|v| v.experiment == experiment && &v.weights == weights)
        {
            let before = app.count();
            let cookie = format!("device_id={}", v.device_id);
            let (status, headers, _) =
                send(&client, request(&proxy.url("/"), &[("cookie", &cookie)])).await;
            assert_eq!(status, 200);
            assert_eq!(
                set_device_id(&headers),
                None,
                "a valid id is kept, not re-set"
            );
            let seen = &app.requests()[before];
            assert_eq!(seen.headers["x-device-id"], v.device_id.as_str());
            assert_eq!(
                seen.headers["x-ab-assignments"],
                format!("{experiment}={}", v.variant).as_str(),
                "{v:?}"
            );
            checked += 1;
        }
        proxy.stop().await;
    }
    assert_eq!(checked, vectors.len());
}

/// 20 000 new visitors (no cookie) over a 1:3 routing split land within 1.5 points of
/// 25% / 75%.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_split_one_to_three_over_20000_new_devices() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = TestProxy::start(&moon_mars_config(&moon, &mars, 1, 3)).await;
    let client = client();
    const N: usize = 20_000;
    const TASKS: usize = 16;
    let url = proxy.url("/");
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..N / TASKS {
                let (status, headers, _) = send(&client, request(&url, &[])).await;
                assert_eq!(status, 200);
                ids.push((
                    set_device_id(&headers).expect("new device gets a cookie"),
                    headers["x-upstream"].clone(),
                ));
            }
            ids
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        for (id, _) in t.await.unwrap() {
            ids.insert(id);
        }
    }
    assert_eq!(ids.len(), N, "every visitor got its own id");
    let moon_share = moon.count() as f64 / N as f64;
    let mars_share = mars.count() as f64 / N as f64;
    assert_eq!(moon.count() + mars.count(), N);
    assert!((moon_share - 0.25).abs() < 0.015, "moon share {moon_share}");
    assert!((mars_share - 0.75).abs() < 0.015, "mars share {mars_share}");
    proxy.stop().await;
}

/// A returning visitor always lands on the same upstream: 100 requests each for 20
/// devices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_cookie_same_upstream() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = TestProxy::start(&moon_mars_config(&moon, &mars, 50, 50)).await;
    let client = client();
    let mut seen_upstreams = std::collections::HashSet::new();
    for device in 0..20 {
        let cookie = format!("device_id=returning-{device}");
        let mut upstreams = std::collections::HashSet::new();
        for _ in 0..100 {
            let (status, headers, _) = send(
                &client,
                request(&proxy.url("/page"), &[("cookie", &cookie)]),
            )
            .await;
            assert_eq!(status, 200);
            upstreams.insert(headers["x-upstream"].to_str().unwrap().to_string());
        }
        assert_eq!(upstreams.len(), 1, "device {device} moved: {upstreams:?}");
        seen_upstreams.extend(upstreams);
    }
    assert_eq!(
        seen_upstreams.len(),
        2,
        "20 devices at 50/50 reach both upstreams"
    );
    proxy.stop().await;
}

/// Several experiments at once: the first routing experiment that applies picks the
/// upstream; every applicable experiment (routing or tag-only) is listed, in config
/// order; `match` limits where an experiment applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_experiments_first_routing_match_wins() {
    let (moon, mars) = moon_and_mars().await;
    let shop = MockUpstream::start("shop").await;
    let proxy = TestProxy::start(&format!(
        "upstreams:
  moon: {}
  mars: {}
  shop: {}
default_upstream: moon
experiments:
  checkout:
    state: active
    match: {{ path_prefix: /shop }}
    variants:
      Old: {{ weight: 0, upstream: moon }}
      New: {{ weight: 1, upstream: shop }}
    fallback: Old
  white_gold_btn:
    state: active
    variants:
      Gold: {{ weight: 1 }}
    fallback: Gold
  moon_mars:
    state: active
    variants:
      Moon: {{ weight: 0, upstream: moon }}
      Mars: {{ weight: 1, upstream: mars }}
    fallback: Moon
  host_only:
    state: inactive
    match: {{ host: other.example }}
    variants:
      A: {{ weight: 1 }}
    fallback: A
",
        moon.url(),
        mars.url(),
        shop.url()
    ))
    .await;
    let (_, h, _) = get(&proxy.url("/shop/cart"), &[("cookie", "device_id=d1")]).await;
    assert_eq!(h["x-upstream"], "shop");
    assert_eq!(
        shop.requests()[0].headers["x-ab-assignments"],
        "checkout=New, white_gold_btn=Gold, moon_mars=Mars"
    );

    let (_, h, _) = get(&proxy.url("/home"), &[("cookie", "device_id=d1")]).await;
    assert_eq!(h["x-upstream"], "mars");
    assert_eq!(
        mars.requests()[0].headers["x-ab-assignments"],
        "white_gold_btn=Gold, moon_mars=Mars"
    );

    let (_, _, _) = get(
        &proxy.url("/home"),
        &[("cookie", "device_id=d1"), ("host", "Other.Example:8080")],
    )
    .await;
    assert_eq!(
        mars.requests()[1].headers["x-ab-assignments"],
        "white_gold_btn=Gold, moon_mars=Mars, host_only=A",
        "an inactive experiment still applies (fallback) and is listed"
    );
    proxy.stop().await;
}

/// Inactive serves the fallback, rollout the rollout variant, to everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_and_rollout_states_route_everyone_alike() {
    let (moon, mars) = moon_and_mars().await;
    for (state, extra, expected) in [
        ("inactive", "", "moon"),
        ("rollout", "    rollout_variant: Mars\n", "mars"),
    ] {
        let config = moon_mars_config(&moon, &mars, 50, 50)
            .replace("state: active", &format!("state: {state}"))
            + extra;
        let proxy = TestProxy::start(&config).await;
        for _ in 0..50 {
            let (status, h, _) = get(&proxy.url("/"), &[]).await;
            assert_eq!(status, 200);
            assert_eq!(h["x-upstream"], expected, "state {state}");
        }
        proxy.stop().await;
    }
}
