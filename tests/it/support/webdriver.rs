//! Just enough of the W3C WebDriver protocol to drive Debian's headless Chromium
//! through `chromedriver`: navigate, find, type, click, run a script, take a screenshot.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{json, Value};

use super::{client, TestClient};

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: TestClient,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A fresh headless Chromium, or `None` (skipped) when it is not installed outside CI.
    pub async fn start() -> Option<Browser> {
        if !super::require_tools(
            &[CHROMIUM, CHROMEDRIVER],
            "apt-get install chromium chromium-driver",
        ) {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            client: client(),
            _profile: profile,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Ok(status)) = tokio::time::timeout(
                Duration::from_secs(2),
                browser.try_cmd(http::Method::GET, "/status", None),
            )
            .await
            {
                if status["value"]["ready"] == true {
                    break;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = json!([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--disable-sync",
            "--disable-quic",
            "--window-size=1280,800",
            format!("--user-data-dir={}", browser._profile.path().display()),
        ]);
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args}
        }}});
        let created = browser
            .cmd(http::Method::POST, "/session", Some(caps))
            .await;
        browser.session = created["value"]["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        Some(browser)
    }

    async fn try_cmd(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| e.to_string())?;
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    }

    async fn cmd(&self, method: http::Method, path: &str, body: Option<Value>) -> Value {
        let value = self
            .try_cmd(method, path, body)
            .await
            .expect("chromedriver answers");
        assert!(
            value["value"]["error"].is_null(),
            "webdriver error on {path}: {value}"
        );
        value
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(
            http::Method::POST,
            &self.session_path("/url"),
            Some(json!({ "url": url })),
        )
        .await;
    }

    pub async fn find(&self, css: &str) -> String {
        let found = self
            .cmd(
                http::Method::POST,
                &self.session_path("/element"),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found["value"][ELEMENT_KEY]
            .as_str()
            .expect("an element")
            .to_string()
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.cmd(
            http::Method::POST,
            &self.session_path(&format!("/element/{element}/clear")),
            Some(json!({})),
        )
        .await;
        self.cmd(
            http::Method::POST,
            &self.session_path(&format!("/element/{element}/value")),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.cmd(
            http::Method::POST,
            &self.session_path(&format!("/element/{element}/click")),
            Some(json!({})),
        )
        .await;
    }

    pub async fn execute(&self, script: &str) -> Value {
        self.cmd(
            http::Method::POST,
            &self.session_path("/execute/sync"),
            Some(json!({"script": script, "args": []})),
        )
        .await["value"]
            .clone()
    }

    /// Run `script` with a `done` callback as its last argument; its value.
    pub async fn execute_async(&self, script: &str) -> Value {
        self.cmd(
            http::Method::POST,
            &self.session_path("/execute/async"),
            Some(json!({"script": script, "args": []})),
        )
        .await["value"]
            .clone()
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let shot = self
            .cmd(http::Method::GET, &self.session_path("/screenshot"), None)
            .await;
        decode_base64(shot["value"].as_str().unwrap())
    }

    /// Resize the window (a tall one fits a whole section in one screenshot).
    pub async fn set_window_size(&self, width: u32, height: u32) {
        self.cmd(
            http::Method::POST,
            &self.session_path("/window/rect"),
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    /// A PNG of one element (scrolled into view), e.g. a chart below the fold.
    pub async fn element_screenshot(&self, css: &str) -> Vec<u8> {
        let element = self.find(css).await;
        let shot = self
            .cmd(
                http::Method::GET,
                &self.session_path(&format!("/element/{element}/screenshot")),
                None,
            )
            .await;
        decode_base64(shot["value"].as_str().unwrap())
    }

    /// The page's URL.
    pub async fn url(&self) -> String {
        let answer = self
            .cmd(http::Method::GET, &self.session_path("/url"), None)
            .await;
        answer["value"].as_str().unwrap_or_default().to_string()
    }

    pub async fn quit(mut self) {
        let _ = self
            .try_cmd(http::Method::DELETE, &self.session_path(""), None)
            .await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn decode_base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
    {
        acc = (acc << 6) | ALPHABET.iter().position(|&a| a == c).expect("base64") as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
