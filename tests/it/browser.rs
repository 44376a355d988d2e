//! The admin page in a real browser (Debian's Chromium, headless): log in through the
//! form, change a weight through the form, and see the change in the API and the file.

use std::time::Duration;

use crate::admin::{proxy_with_token, TOKEN};
use crate::support::webdriver::Browser;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_page_changes_a_weight_through_the_form() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (moon, mars) = moon_and_mars().await;
    let proxy = proxy_with_token(&moon, &mars, "active").await;
    for _ in 0..12 {
        get(&proxy.url("/"), &[]).await;
    }
    let page = format!("http://{}/experiments", proxy.admin);

    browser.goto(&page).await;
    assert_eq!(
        browser.execute("return document.title").await,
        "abproxy · log in"
    );
    browser.type_into("input[name=token]", TOKEN).await;
    browser.click(".login button[type=submit]").await;
    eventually(
        Duration::from_secs(10),
        "the experiments table after login",
        || async {
            browser
                .execute("return !!document.querySelector('table.experiments')")
                .await
                == true
        },
    )
    .await;
    let offered = browser.execute("return [...document.querySelectorAll('form.state select[name=state] option')].map(o => o.value)").await;
    assert_eq!(
        offered,
        serde_json::json!(["inactive", "active", "rollout"])
    );
    let split = browser
        .execute("return document.querySelector('.bar').children.length")
        .await;
    assert_eq!(split, 2, "a split bar with both variants");

    browser
        .type_into("form.weights input[name=Mars]", "80")
        .await;
    browser.click("form.weights button[type=submit]").await;

    let auth = format!("Bearer {TOKEN}");
    let api = format!("http://{}/api/experiments", proxy.admin);
    eventually(
        Duration::from_secs(10),
        "the API shows the new weight",
        || async {
            let (_, _, body) = get(&api, &[("authorization", &auth)]).await;
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            json["experiments"][0]["variants"][1]["weight"] == 80
        },
    )
    .await;
    let file = std::fs::read_to_string(&proxy.config_path).unwrap();
    assert!(
        file.contains("Mars: { weight: 80, upstream: mars }"),
        "{file}"
    );
    assert!(
        file.contains("# flipped from the admin page"),
        "comments kept"
    );
    eventually(
        Duration::from_secs(10),
        "the page reloads with the new weight",
        || async {
            browser
                .execute("return document.querySelector('form.weights input[name=Mars]').value")
                .await
                == "80"
        },
    )
    .await;
    if let Ok(dir) = std::env::var("ABPROXY_TEST_SCREENSHOTS") {
        std::fs::write(
            std::path::Path::new(&dir).join("admin-page.png"),
            browser.screenshot().await,
        )
        .unwrap();
    }
    browser.quit().await;
    proxy.stop().await;
}

/// `/_ab/sdk.js` in a page served through the proxy: `abproxy.group()` answers what the
/// proxy decided, `abproxy.assignments()` is fetched once per page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_reports_the_visitors_groups() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (moon, mars) = moon_and_mars().await;
    let proxy = TestProxy::start(
        &(moon_mars_config(&moon, &mars, 0, 1)
            + "    goals:\n      click: { event: button_click, params: { button: reserve } }\n"
            + "  white_gold_btn:\n    state: active\n    variants:\n      White: { weight: 0 }\n      Gold: { weight: 1 }\n    fallback: White\n"),
    )
    .await;
    browser.goto(&proxy.url("/landing")).await;
    let groups = browser
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               const s = document.createElement('script');
               s.src = '/_ab/sdk.js';
               s.onload = () => Promise.all([abproxy.group('moon_mars'), abproxy.group('white_gold_btn'),
                                             abproxy.group('nope'), abproxy.assignments()])
                 .then(r => done({ moon_mars: r[0], btn: r[1], nope: r[2], same: r[3] === null ? false : true }))
                 .catch(e => done({ error: String(e) }));
               document.head.appendChild(s);"#,
        )
        .await;
    assert_eq!(
        groups,
        serde_json::json!({"moon_mars": "Mars", "btn": "Gold", "nope": null, "same": true})
    );
    // The page itself was served by Mars, the variant the SDK reports.
    assert_eq!(mars.requests()[0].uri.path(), "/landing");
    assert_eq!(
        mars.requests()[0].headers["x-ab-assignments"],
        "moon_mars=Mars, white_gold_btn=Gold"
    );
    browser.quit().await;
    proxy.stop().await;
}

/// The built-in backend's page behind the proxy: clicking "Reserve your spot" sends
/// `button_click` through `abproxy.track` (sendBeacon), counted as the `click` goal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_button_click_counts_a_conversion() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let backend = tokio::spawn(async move {
        abproxy::cli::backend::run("Mars", listener, async {
            let _ = stop_rx.await;
        })
        .await
    });
    let proxy = TestProxy::start(&format!(
        "upstreams:\n  mars: http://{backend_addr}\nexperiments:\n  moon_mars:\n    state: active\n    variants:\n      Mars: {{ weight: 1, upstream: mars }}\n    fallback: Mars\n    goals:\n      click: {{ event: button_click, params: {{ button: reserve }} }}\n"
    ))
    .await;
    browser.goto(&proxy.url("/")).await;
    eventually(Duration::from_secs(10), "the SDK is loaded", || async {
        browser.execute("return typeof window.abproxy").await == "object"
    })
    .await;
    browser.click("#reserve").await;
    let series = r#"abproxy_conversions_total{experiment="moon_mars",goal="click",variant="Mars"}"#;
    eventually(Duration::from_secs(10), "the click is counted", || async {
        proxy.metrics().await[series] == 1.0
    })
    .await;
    assert_eq!(
        browser
            .execute("return document.getElementById('reserve').textContent")
            .await,
        "Reserved!"
    );
    browser.click("#reserve").await;
    eventually(
        Duration::from_secs(10),
        "the second click arrives",
        || async { proxy.metrics().await["abproxy_events_received_total"] == 2.0 },
    )
    .await;
    assert_eq!(
        proxy.metrics().await[series],
        1.0,
        "a second click by the same device is not counted"
    );
    browser.quit().await;
    proxy.stop().await;
    let _ = stop_tx.send(());
    let _ = backend.await;
}

/// `n` new visitors in `bursts` spread over as many flushes: three Mars devices in four
/// click, one Moon device in ten does (a difference no test can miss). Devices per
/// variant.
async fn drive_winner(proxy: &TestProxy, n: usize, bursts: usize) -> (u64, u64) {
    let (mut moon, mut mars) = (0, 0);
    for burst in 0..bursts {
        if burst > 0 {
            // Spread over flushes, so each stretch of the charts has several points.
            tokio::time::sleep(
                abproxy::counting::store::FLUSH_INTERVAL + Duration::from_millis(100),
            )
            .await;
        }
        for _ in 0..n / bursts {
            let (_, headers, _) = get(&proxy.url("/"), &[]).await;
            let clicks = if headers["x-upstream"] == "mars" {
                mars += 1;
                mars % 4 != 0
            } else {
                moon += 1;
                moon % 10 == 0
            };
            if clicks {
                let jar = cookies_after(&headers, "");
                let (status, _, body) = send_text(
                    http::Request::post(proxy.url("/_ab/events")).header("cookie", jar),
                    r#"{"event": "button_click"}"#,
                )
                .await;
                assert_eq!(status, 202, "{body}");
            }
        }
    }
    (moon, mars)
}

/// The analyst's page: which run it shows and the others, the charts (titled, with a
/// break where the traffic paused), the one-click rollout of a significant winner, and
/// a write the filesystem refuses explained on the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_page_shows_runs_and_charts_and_rolls_out_a_winner() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (moon, mars) = moon_and_mars().await;
    let proxy = crate::results::goals_proxy_with_token(&moon, &mars, "active").await;
    let first = drive_winner(&proxy, 60, 3).await;
    // A pause in the traffic, twice the gap rule's floor (and well over 4 × the points'
    // ~1 s spacing, even with a flusher slowed by a busy machine): the lines must break.
    tokio::time::sleep(2 * Duration::from_millis(abproxy::admin::series::MIN_GAP_MS)).await;
    let second = drive_winner(&proxy, 60, 3).await;
    let run_one = (first.0 + second.0, first.1 + second.1);
    eventually(
        Duration::from_secs(10),
        "the API calls Mars significant",
        || async {
            let (_, r) = crate::results::results_of(&proxy, "").await;
            r["goals"]["click"]["variants"]["Mars"]["p_value_sequential"]
                .as_f64()
                .is_some_and(|p| p < 0.05)
        },
    )
    .await;

    browser
        .goto(&format!("http://{}/experiments", proxy.admin))
        .await;
    browser.type_into("input[name=token]", TOKEN).await;
    browser.click(".login button[type=submit]").await;
    eventually(
        Duration::from_secs(10),
        "the results after login",
        || async {
            browser
                .execute("return !!document.querySelector('section.results')")
                .await
                == true
        },
    )
    .await;
    let shown = "return document.querySelector('section.results .run-shown').textContent";
    let text = browser.execute(shown).await;
    assert!(
        text.as_str()
            .unwrap()
            .starts_with("Showing run 1 of 1 · since "),
        "{text}"
    );
    let titles = browser
        .execute("return [...document.querySelectorAll('section.results svg .title')].map(t => t.textContent)")
        .await;
    assert_eq!(
        titles,
        serde_json::json!([
            "Devices per variant over the run",
            "Difference to Moon over the run (goal click)",
            "Conversion rate per variant (goal click)",
            "Difference to Moon over the run (goal revenue)",
            "Conversion rate per variant (goal revenue)",
        ])
    );
    // Each chart over time: a legend and both axes labelled.
    let labelled = browser
        .execute("return [...document.querySelectorAll('section.results svg')].map(s => [s.querySelectorAll('.legend').length > 0, s.querySelectorAll('.axis').length])")
        .await;
    for chart in labelled.as_array().unwrap() {
        assert_eq!(chart[0], true, "{labelled}");
        assert!(chart[1].as_u64().unwrap() >= 2, "{labelled}");
    }
    // The pause: Mars's difference is two stretches, not one line across the silence.
    let stretches = browser
        .execute("const svg = [...document.querySelectorAll('section.results svg')][1]; const g = svg.querySelector('g[clip-path]'); return g.querySelectorAll('polyline').length + g.querySelectorAll('circle').length")
        .await;
    assert_eq!(stretches, 2, "a break where the traffic paused");
    let table_devices = browser
        .execute("return [...document.querySelectorAll('table.report[data-goal=click] tr')].slice(1).map(r => r.children[1].textContent)")
        .await;
    assert_eq!(
        table_devices,
        serde_json::json!([run_one.0.to_string(), run_one.1.to_string()])
    );
    // P(best) in the first goal's table (no bandit): Thompson's probabilities of the
    // devices and conversions the table shows, as the browser renders them.
    let rows = browser
        .execute("return [...document.querySelectorAll('table.report[data-goal=click] tr')].slice(1).map(r => [r.children[1].textContent, r.children[2].textContent, r.querySelector('td.p-best').textContent])")
        .await;
    let rows = rows.as_array().unwrap();
    let number = |cell: &serde_json::Value| cell.as_str().unwrap().parse::<u64>().unwrap();
    let arms: Vec<abproxy::stats::Proportion> = rows
        .iter()
        .map(|r| abproxy::stats::Proportion {
            users: number(&r[0]),
            conversions: number(&r[1]),
        })
        .collect();
    let expected: Vec<String> = abproxy::stats::bandit::thompson(&arms)
        .iter()
        .map(|p| format!("{:.1}%", 100.0 * p))
        .collect();
    let p_best: Vec<&str> = rows.iter().map(|r| r[2].as_str().unwrap()).collect();
    assert_eq!(p_best, expected, "{rows:?}");
    assert_eq!(
        browser
            .execute("return document.querySelectorAll('table.report[data-goal=revenue] td.p-best').length")
            .await,
        0,
        "P(best) for one goal only"
    );
    let button = browser
        .execute("const b = document.querySelector('button.rollout'); return b && b.textContent")
        .await;
    assert_eq!(button, "Roll out Mars");
    if let Ok(dir) = std::env::var("ABPROXY_TEST_SCREENSHOTS") {
        let dir = std::path::Path::new(&dir);
        browser.set_window_size(1280, 2200).await;
        std::fs::write(
            dir.join("admin-results.png"),
            browser.element_screenshot("section.results").await,
        )
        .unwrap();
        std::fs::write(
            dir.join("admin-experiments.png"),
            browser.element_screenshot("table.experiments").await,
        )
        .unwrap();
    }

    // One click: active → rollout of Mars, through the authenticated PATCH.
    browser.click("button.rollout").await;
    let auth = format!("Bearer {TOKEN}");
    let api = format!("http://{}/api/experiments", proxy.admin);
    eventually(Duration::from_secs(10), "Mars is rolled out", || async {
        let (_, _, body) = get(&api, &[("authorization", &auth)]).await;
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        json["experiments"][0]["state"] == "rollout"
            && json["experiments"][0]["rollout_variant"] == "Mars"
    })
    .await;
    assert!(std::fs::read_to_string(&proxy.config_path)
        .unwrap()
        .contains("state: rollout   # flipped from the admin page"));
    eventually(
        Duration::from_secs(10),
        "the page shows the rollout",
        || async {
            browser
                .execute("const r = document.querySelector('.rolled'); return r && r.textContent")
                .await
                == "rolled out: everyone gets Mars"
        },
    )
    .await;
    let text = browser.execute(shown).await;
    assert!(text.as_str().unwrap().ends_with(" · ended"), "{text}");
    if let Ok(dir) = std::env::var("ABPROXY_TEST_SCREENSHOTS") {
        std::fs::write(
            std::path::Path::new(&dir).join("admin-rolled-out.png"),
            browser.element_screenshot("main").await,
        )
        .unwrap();
    }
    assert_eq!(
        browser
            .execute("return document.querySelectorAll('button.rollout').length")
            .await,
        0,
        "nothing to roll out once rolled out"
    );

    // Back to active: run 2 starts, and the page shows it; run 1 is one choice away.
    crate::results::patch_state(&proxy, r#"{"state":"active"}"#).await;
    let later = drive_winner(&proxy, 4, 1).await;
    browser
        .goto(&format!("http://{}/experiments", proxy.admin))
        .await;
    let text = browser.execute(shown).await;
    assert!(
        text.as_str().unwrap().starts_with("Showing run 2 of 2"),
        "{text}"
    );
    browser
        .execute("const s = document.querySelector('form.run select'); s.value = '1'; s.dispatchEvent(new Event('change'));")
        .await;
    eventually(Duration::from_secs(10), "run 1 is shown", || async {
        browser
            .execute(shown)
            .await
            .as_str()
            .is_some_and(|t| t.starts_with("Showing run 1 of 2"))
    })
    .await;
    assert!(browser
        .url()
        .await
        .ends_with("/experiments?run.moon_mars=1"));
    let table_devices = browser
        .execute("return [...document.querySelectorAll('table.report[data-goal=click] tr')].slice(1).map(r => r.children[1].textContent)")
        .await;
    assert_eq!(
        table_devices,
        serde_json::json!([run_one.0.to_string(), run_one.1.to_string()]),
        "run 1's devices, not run 2's {later:?}"
    );

    // A write the filesystem refuses: the page says why.
    let config_dir = proxy.config_path.parent().unwrap().to_path_buf();
    if let Some(_immutable) = crate::support::ImmutableDir::set(&config_dir) {
        browser
            .type_into("form.weights input[name=Mars]", "70")
            .await;
        browser.click("form.weights button[type=submit]").await;
        let error = "const e = document.querySelector('tr[data-key=moon_mars] .error'); return e.hidden ? '' : e.textContent";
        eventually(
            Duration::from_secs(10),
            "the page explains the failure",
            || async {
                browser
                    .execute(error)
                    .await
                    .as_str()
                    .is_some_and(|t| t.starts_with("Not changed: cannot write "))
            },
        )
        .await;
        let text = browser.execute(error).await;
        let text = text.as_str().unwrap();
        assert!(
            text.contains("Operation not permitted") && text.contains("may not create files in"),
            "{text}"
        );
    }
    browser.quit().await;
    proxy.stop().await;
}
