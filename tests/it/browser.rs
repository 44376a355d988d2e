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
