//! `abproxy healthcheck`: GET a URL (the admin listener's `/healthz`) and succeed on a
//! 2xx answer within a deadline. It is the image's `HEALTHCHECK`: the slim runtime image
//! has no curl or wget, and the binary already holds an HTTP client, so probing with it
//! adds nothing to the image and nothing to keep patched.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Where the image's config puts the admin listener.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8081/healthz";

/// `abproxy healthcheck`: probe `url` and print its status line; an error (exit 1)
/// otherwise.
pub fn run(url: &str, within: Duration) -> anyhow::Result<()> {
    let status = crate::cli::runtime::block_on(Some(1), async {
        probe(url, within).await.map_err(anyhow::Error::msg)
    })?;
    println!("{status}");
    Ok(())
}

/// `Ok(status line)` for a 2xx answer within `within`; else why not, naming the URL.
pub async fn probe(url: &str, within: Duration) -> Result<String, String> {
    if !url.starts_with("http://") {
        return Err(format!("`{url}` is not an http:// URL"));
    }
    let uri: http::Uri = url.parse().map_err(|e| format!("`{url}`: {e}"))?;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let exchange = async {
        let response = client
            .get(uri)
            .await
            .map_err(|e| format!("{url}: cannot be reached: {}", error_chain(&e)))?;
        let status = response.status();
        // The whole body, so a listener that answers the head and then hangs fails too.
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{url}: the body broke off: {e}"))?;
        Ok::<_, String>(status)
    };
    let status = tokio::time::timeout(within, exchange).await.map_err(|_| {
        format!(
            "{url}: no answer within {}",
            humantime::format_duration(within)
        )
    })??;
    if status.is_success() {
        Ok(format!("{url}: {status}"))
    } else {
        Err(format!("{url}: {status}"))
    }
}

/// hyper's errors say `client error (Connect)`; the cause (`Connection refused`) is
/// further down the chain.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
