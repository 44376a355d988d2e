//! Hot reload through the file watcher, as editors and Kubernetes change files.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;

const WITHIN: Duration = Duration::from_secs(5);

/// True when `n` fresh visitors in a row all land on `upstream`.
async fn all_new_visitors_go_to(proxy: &TestProxy, upstream: &str, n: usize) -> bool {
    let client = client();
    for _ in 0..n {
        let (status, headers, _) = send(&client, request(&proxy.url("/"), &[])).await;
        if status != 200 || headers["x-upstream"] != upstream {
            return false;
        }
    }
    true
}

async fn reloads(proxy: &TestProxy, result: &str) -> f64 {
    proxy.metrics().await[&format!(r#"abproxy_config_reloads_total{{result="{result}"}}"#)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_write_changes_weights() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = TestProxy::start(&moon_mars_config(&moon, &mars, 100, 0)).await;
    assert!(all_new_visitors_go_to(&proxy, "moon", 20).await);
    std::fs::write(&proxy.config_path, moon_mars_config(&moon, &mars, 0, 100)).unwrap();
    eventually(WITHIN, "new visitors follow the new weights", || {
        all_new_visitors_go_to(&proxy, "mars", 20)
    })
    .await;
    let m = proxy.metrics().await;
    assert_eq!(
        m[r#"abproxy_variant_weight{experiment="moon_mars",variant="Mars"}"#],
        100.0
    );
    assert_eq!(
        m[r#"abproxy_variant_weight{experiment="moon_mars",variant="Moon"}"#],
        0.0
    );
    assert_eq!(reloads(&proxy, "success").await, 1.0);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_over_the_file_adds_an_experiment_and_sets_inactive() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = TestProxy::start(&moon_mars_config(&moon, &mars, 0, 100)).await;
    let next = moon_mars_config(&moon, &mars, 0, 100).replace("state: active", "state: inactive")
        + "  white_gold_btn:\n    state: active\n    variants:\n      Gold: { weight: 1 }\n    fallback: Gold\n";
    write_by_rename(&proxy.config_path, &next);
    eventually(
        WITHIN,
        "inactive: everyone gets the fallback (Moon)",
        || all_new_visitors_go_to(&proxy, "moon", 20),
    )
    .await;
    let seen = moon.requests().last().unwrap().clone();
    assert_eq!(
        seen.headers["x-ab-assignments"],
        "moon_mars=Moon, white_gold_btn=Gold"
    );
    proxy.stop().await;
}

/// A Kubernetes ConfigMap volume: `abproxy.yaml -> ..data/abproxy.yaml`,
/// `..data -> ..<timestamp>`; an update writes a new timestamped directory and renames a
/// new `..data` symlink over the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_configmap_symlink_swap() {
    use std::os::unix::fs::symlink;
    let (moon, mars) = moon_and_mars().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("..2026_11_23_v1")).unwrap();
    std::fs::write(
        root.join("..2026_11_23_v1/abproxy.yaml"),
        with_data_dir(&moon_mars_config(&moon, &mars, 100, 0), root),
    )
    .unwrap();
    symlink("..2026_11_23_v1", root.join("..data")).unwrap();
    symlink("..data/abproxy.yaml", root.join("abproxy.yaml")).unwrap();
    let config_path = root.join("abproxy.yaml");
    let proxy = TestProxy::start_at(dir, config_path).await;
    assert!(all_new_visitors_go_to(&proxy, "moon", 20).await);

    let root = proxy.dir.path();
    std::fs::create_dir(root.join("..2026_11_23_v2")).unwrap();
    std::fs::write(
        root.join("..2026_11_23_v2/abproxy.yaml"),
        with_data_dir(&moon_mars_config(&moon, &mars, 0, 100), root),
    )
    .unwrap();
    symlink("..2026_11_23_v2", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(root.join("..2026_11_23_v1")).unwrap();
    eventually(WITHIN, "the swapped ConfigMap is applied", || {
        all_new_visitors_go_to(&proxy, "mars", 20)
    })
    .await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_file_keeps_the_last_good_config() {
    let (moon, mars) = moon_and_mars().await;
    let good = moon_mars_config(&moon, &mars, 0, 100);
    let proxy = TestProxy::start(&good).await;
    let broken_versions = [
        "experiments: [unclosed\n".to_string(),
        good.replace("fallback: Moon", "fallback: Venus"),
        good.replace("weight: 100", "weight: 0"),
        String::new(),
    ];
    for (i, broken) in broken_versions.iter().enumerate() {
        write_by_rename(&proxy.config_path, broken);
        eventually(WITHIN, "the failure is counted", || async {
            reloads(&proxy, "failure").await == (i + 1) as f64
        })
        .await;
        assert!(
            all_new_visitors_go_to(&proxy, "mars", 20).await,
            "still serving the last good config"
        );
    }
    assert_eq!(reloads(&proxy, "success").await, 0.0);
    // Fixing the file applies it.
    write_by_rename(&proxy.config_path, &moon_mars_config(&moon, &mars, 100, 0));
    eventually(WITHIN, "the fixed file is applied", || {
        all_new_visitors_go_to(&proxy, "moon", 20)
    })
    .await;
    assert_eq!(reloads(&proxy, "success").await, 1.0);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_experiment_drops_its_weight_series() {
    let (moon, mars) = moon_and_mars().await;
    let base = moon_mars_config(&moon, &mars, 1, 1);
    let proxy = TestProxy::start(&(base.clone() + "  extra:\n    state: active\n    variants:\n      X: { weight: 3 }\n    fallback: X\n")).await;
    assert_eq!(
        proxy.metrics().await[r#"abproxy_variant_weight{experiment="extra",variant="X"}"#],
        3.0
    );
    write_by_rename(&proxy.config_path, &base);
    eventually(WITHIN, "the removed experiment's gauge is gone", || async {
        !proxy
            .metrics()
            .await
            .contains_key(r#"abproxy_variant_weight{experiment="extra",variant="X"}"#)
    })
    .await;
    proxy.stop().await;
}

/// 20 rewrites (alternating weights) while 8 clients send requests non-stop: not one
/// request fails, and every rewrite is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_failed_request_while_the_config_is_rewritten_20_times() {
    let (moon, mars) = moon_and_mars().await;
    let proxy = TestProxy::start(&moon_mars_config(&moon, &mars, 50, 50)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..8 {
        let (stop, sent, url, client) = (stop.clone(), sent.clone(), proxy.url("/"), client());
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                // Half new visitors, half returning.
                let cookie = format!("device_id=w{w}-{}", i % 50);
                let headers: &[(&str, &str)] = if i % 2 == 0 {
                    &[]
                } else {
                    &[("cookie", &cookie)]
                };
                match client.request(request(&url, headers)).await {
                    Ok(response) if response.status() == 200 => {}
                    Ok(response) => failures.push(format!("status {}", response.status())),
                    Err(err) => failures.push(format!("error {err}")),
                }
                sent.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            failures
        }));
    }
    for round in 0..20u32 {
        let (m, r) = if round % 2 == 0 { (10, 90) } else { (90, 10) };
        write_by_rename(&proxy.config_path, &moon_mars_config(&moon, &mars, m, r));
        let expected = (round + 1) as f64;
        eventually(WITHIN, "each rewrite is applied", || async {
            reloads(&proxy, "success").await >= expected
        })
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for w in workers {
        failures.extend(w.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        sent.load(Ordering::Relaxed) > 500,
        "the load was real: {} requests",
        sent.load(Ordering::Relaxed)
    );
    assert_eq!(reloads(&proxy, "success").await, 20.0);
    assert_eq!(reloads(&proxy, "failure").await, 0.0);
    proxy.stop().await;
}
