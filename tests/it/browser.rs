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
    let moon = MockUpstream::start("moon").await;
    let mars = MockUpstream::start("mars").await;
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
