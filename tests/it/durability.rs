//! Nothing counted is lost: the counts log in the data directory, through the real
//! binary (graceful stop, `kill -9`) and a large, damaged log at start-up.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use abproxy::counting::book::{GoalKey, GoalTotals, Record, VariantKey, VariantTotals};

use crate::support::binary::ProxyProcess;
use crate::support::*;

fn write_config(dir: &Path, moon: &MockUpstream, mars: &MockUpstream) -> PathBuf {
    let yaml = moon_mars_config(moon, mars, 50, 50)
        + "    goals:
      click: { event: button_click }
      revenue: { event: purchase, value: { param: amount } }
";
    let path = dir.join("abproxy.yaml");
    std::fs::write(&path, with_data_dir(&yaml, dir)).unwrap();
    path
}

/// What a scrape says, summed over Moon and Mars.
struct Totals {
    assigned: f64,
    clicks: f64,
    revenue: f64,
}

async fn totals(admin: std::net::SocketAddr) -> Totals {
    let (status, _, body) = get(&format!("http://{admin}/metrics"), &[]).await;
    assert_eq!(status, 200);
    let m = parse_metrics(&String::from_utf8_lossy(&body));
    let sum = |series: &dyn Fn(&str) -> String| -> f64 {
        ["Moon", "Mars"].iter().map(|v| m[&series(v)]).sum()
    };
    Totals {
        assigned: sum(&|v| {
            format!(r#"abproxy_assignments_total{{experiment="moon_mars",variant="{v}"}}"#)
        }),
        clicks: sum(&|v| {
            format!(
                r#"abproxy_conversions_total{{experiment="moon_mars",goal="click",variant="{v}"}}"#
            )
        }),
        revenue: sum(&|v| {
            format!(
                r#"abproxy_conversion_value_sum{{experiment="moon_mars",goal="revenue",variant="{v}"}}"#
            )
        }),
    }
}

/// `n` new visitors; every one clicks and buys for 2.5.
async fn visit_and_convert(addr: std::net::SocketAddr, n: usize) {
    for _ in 0..n {
        let (status, headers, _) = get(&format!("http://{addr}/"), &[]).await;
        assert_eq!(status, 200);
        let jar = cookies_after(&headers, "");
        let events =
            r#"[{"event": "button_click"}, {"event": "purchase", "params": {"amount": 2.5}}]"#;
        let (status, _, body) = send_text(
            http::Request::post(format!("http://{addr}/_ab/events"))
                .header("content-type", "application/json")
                .header("cookie", jar),
            events,
        )
        .await;
        assert_eq!(
            (status, body.as_str()),
            (202, r#"{"accepted":2,"conversions":2}"#)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_loses_nothing() {
    let (moon, mars) = moon_and_mars().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &moon, &mars);
    let mut proxy = ProxyProcess::serve(&config);
    visit_and_convert(proxy.addr, 40).await;
    // At once: the last requests are at most milliseconds old, never flushed yet
    // unless the stop flushes them.
    proxy.signal(libc::SIGTERM);
    let exit = tokio::task::block_in_place(|| proxy.wait(Duration::from_secs(10)));
    assert!(exit.success(), "{exit:?}");

    let proxy = ProxyProcess::serve(&config);
    let t = totals(proxy.admin).await;
    assert_eq!((t.assigned, t.clicks, t.revenue), (40.0, 40.0, 100.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_at_most_the_last_second() {
    let (moon, mars) = moon_and_mars().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &moon, &mars);
    let mut proxy = ProxyProcess::serve(&config);
    visit_and_convert(proxy.addr, 30).await;
    // Older than one flush interval (plus the fsync's own time): must be on disk.
    tokio::time::sleep(abproxy::counting::store::FLUSH_INTERVAL + Duration::from_millis(700)).await;
    visit_and_convert(proxy.addr, 10).await;
    proxy.signal(libc::SIGKILL);
    tokio::task::block_in_place(|| proxy.wait(Duration::from_secs(10)));

    let proxy = ProxyProcess::serve(&config);
    let t = totals(proxy.admin).await;
    assert!(
        (30.0..=40.0).contains(&t.assigned),
        "everything older than a second survives: {} assigned",
        t.assigned
    );
    assert!((30.0..=40.0).contains(&t.clicks), "{} clicks", t.clicks);
    assert!(t.revenue >= 75.0, "revenue {}", t.revenue);
}

/// A data directory holding a million events, each in a record of its own (the worst
/// case: one event per flush), with a damaged line and a torn tail: the proxy starts,
/// reports both lines by file and line number, and keeps every other count. (How long
/// it takes is measured by `benches/count_store.rs`, not here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_events_and_a_damaged_tail_are_read_at_start_up() {
    let (moon, mars) = moon_and_mars().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &moon, &mars);
    // Start once so that the run book holds run 1, then write the log it will read.
    let mut proxy = ProxyProcess::serve(&config);
    proxy.signal(libc::SIGTERM);
    tokio::task::block_in_place(|| proxy.wait(Duration::from_secs(10)));

    let counts = dir.path().join("data/counts");
    for entry in std::fs::read_dir(&counts).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    const EVENTS: u64 = 1_000_000;
    let (text, expected) = million_event_log(EVENTS);
    let damaged_line = 500_001;
    let mut lines: Vec<&str> = text.lines().collect();
    let damaged = lines[damaged_line - 1].replacen(" moon_mars ", " moon_marz ", 1);
    lines[damaged_line - 1] = &damaged;
    let mut file = lines.join("\n");
    file.push('\n');
    file.push_str("v 1790000000000 moon_mars 1 Ma"); // a record torn by a crash
    std::fs::write(counts.join("counts-000007.log"), file).unwrap();

    let started = Instant::now();
    let proxy = ProxyProcess::serve(&config);
    let startup = started.elapsed();
    let log = proxy.startup_log.join("\n");
    assert!(
        log.contains(&format!(
            "counts-000007.log:{damaged_line}: checksum mismatch"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("counts-000007.log:{}: torn last line", EVENTS + 1)),
        "{log}"
    );
    eprintln!("start-up with {EVENTS} records (debug build): {startup:?}");
    let t = totals(proxy.admin).await;
    // The damaged line was not the last of its counter: nothing is lost.
    assert_eq!((t.assigned, t.clicks), expected);
    assert!(counts.join("counts-000007.log.corrupt").exists());
    assert!(counts.join("counts-000008.log").exists());
}

/// `events` one-event records alternating over Moon/Mars assignments and Mars clicks;
/// the log text and the expected (assigned, clicks).
fn million_event_log(events: u64) -> (String, (f64, f64)) {
    let key = |variant: &str| VariantKey {
        experiment: "moon_mars".into(),
        run: 1,
        period: None,
        variant: variant.into(),
    };
    let (mut moon, mut mars, mut clicks) = (0u64, 0u64, 0u64);
    let mut text = String::with_capacity(events as usize * 64);
    for i in 0..events {
        let at_ms = 1_790_000_000_000 + i;
        let record = match i % 3 {
            0 => {
                moon += 1;
                Record::Variant {
                    at_ms,
                    key: key("Moon"),
                    totals: VariantTotals {
                        assigned: moon,
                        exposures: moon,
                    },
                }
            }
            1 => {
                mars += 1;
                Record::Variant {
                    at_ms,
                    key: key("Mars"),
                    totals: VariantTotals {
                        assigned: mars,
                        exposures: mars,
                    },
                }
            }
            _ => {
                clicks += 1;
                Record::Goal {
                    at_ms,
                    key: GoalKey {
                        variant: key("Mars"),
                        goal: "click".into(),
                    },
                    totals: GoalTotals {
                        conversions: clicks,
                        ..Default::default()
                    },
                }
            }
        };
        record.encode(&mut text);
    }
    (text, ((moon + mars) as f64, clicks as f64))
}

/// `export:` writes every exposure, assignment and conversion as a JSON line, rotating
/// by size; a graceful stop flushes the last lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_lines_export_holds_every_counted_event() {
    let (moon, mars) = moon_and_mars().await;
    let dir = tempfile::tempdir().unwrap();
    let export_dir = dir.path().join("export");
    let yaml = moon_mars_config(&moon, &mars, 50, 50)
        + &format!(
            "    goals:
      click: {{ event: button_click }}
      revenue: {{ event: purchase, value: {{ param: amount }} }}
export:
  dir: {}
  max_file_size: 2KiB
  keep_files: 0
",
            export_dir.display()
        );
    let config_path = dir.path().join("abproxy.yaml");
    std::fs::write(&config_path, with_data_dir(&yaml, dir.path())).unwrap();
    let proxy = TestProxy::start_at(dir, config_path).await;
    visit_and_convert(proxy.addr, 25).await;
    let counted = totals(proxy.admin).await;
    let (_dir, _) = proxy.stop_keep_files().await;

    let rotated = abproxy::counting::export::rotated_files(&export_dir).unwrap();
    assert!(rotated.len() >= 2, "rotated by size: {rotated:?}");
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    files.push(export_dir.join("events.jsonl"));
    let mut by_type = std::collections::HashMap::<String, usize>::new();
    let mut assigned = std::collections::HashMap::<String, String>::new();
    let mut revenue = 0.0;
    let mut lines = Vec::new();
    for file in &files {
        for line in std::fs::read_to_string(file).unwrap().lines() {
            lines.push(serde_json::from_str::<serde_json::Value>(line).expect("a JSON line"));
        }
    }
    for l in &lines {
        let kind = l["type"].as_str().unwrap().to_string();
        assert_eq!(
            (l["experiment"].as_str(), l["run"].as_u64()),
            (Some("moon_mars"), Some(1))
        );
        assert!(l["ts"].as_str().unwrap().ends_with('Z'));
        let (device, variant) = (
            l["device_id"].as_str().unwrap(),
            l["variant"].as_str().unwrap(),
        );
        match kind.as_str() {
            "assignment" => {
                assigned.insert(device.to_string(), variant.to_string());
            }
            "conversion" => {
                assert_eq!(
                    assigned.get(device).map(String::as_str),
                    Some(variant),
                    "converted as assigned"
                );
                if l["goal"] == "revenue" {
                    revenue += l["value"].as_f64().unwrap();
                } else {
                    assert_eq!(l["goal"], "click");
                    assert!(l.get("value").is_none());
                }
            }
            "exposure" => assert!(l.get("goal").is_none()),
            other => panic!("unknown type {other}"),
        }
        *by_type.entry(kind).or_default() += 1;
    }
    assert_eq!(by_type["assignment"], 25);
    assert_eq!(by_type["exposure"], 25, "one page each");
    assert_eq!(by_type["conversion"], 50, "a click and a purchase each");
    assert_eq!(
        (counted.assigned, counted.clicks, counted.revenue),
        (25.0, 25.0, revenue)
    );
}
