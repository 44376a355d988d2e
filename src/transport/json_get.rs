//! GET a JSON document over plain HTTP: what `abproxy analyze` asks a proxy's admin API
//! or Prometheus, and what a bandit with `counts: prometheus` asks Prometheus. Errors are
//! sentences that name the URL and the likely cause.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(30);

/// What is asked for, to say what could not be reached.
#[derive(Clone, Copy)]
pub enum Service {
    Admin,
    Prometheus,
}

impl Service {
    fn what(self) -> &'static str {
        match self {
            Service::Admin => "the proxy's admin listener",
            Service::Prometheus => "Prometheus",
        }
    }

    fn hint(self) -> &'static str {
        match self {
            Service::Admin => "is abproxy running, and is this its admin address (admin.listen)?",
            Service::Prometheus => "is Prometheus running at this address?",
        }
    }
}

/// Why a request got no answer, in words: `cannot reach Prometheus at URL: connection
/// refused (nothing listens there) — is Prometheus running at this address?`. The
/// client's own text (`client error (Connect)`) names neither the URL nor the cause.
fn unreachable(url: &str, service: Service, err: &hyper_util::client::legacy::Error) -> String {
    let mut causes = Vec::new();
    let mut io_kind = None;
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        causes.push(cause.to_string());
        source = cause.source();
    }
    let reason = match io_kind {
        Some(std::io::ErrorKind::ConnectionRefused) => {
            "connection refused (nothing listens there)".to_string()
        }
        Some(std::io::ErrorKind::TimedOut) => "the connection timed out".to_string(),
        _ if causes.is_empty() => err.to_string(),
        // The innermost cause says the most (`tcp connect error: … (os error 113)`).
        _ => causes.join(": "),
    };
    // A PromQL query string is long and says nothing about the connection.
    let url = url.split('?').next().unwrap_or(url);
    if err.is_connect() {
        format!(
            "cannot reach {} at {url}: {reason} — {}",
            service.what(),
            service.hint()
        )
    } else {
        format!("{url}: {reason}")
    }
}

/// GET `url` and parse its JSON body; a non-2xx answer is an error with its body (its
/// `error` field when it has one).
pub async fn get_json(url: &str, bearer: Option<&str>, service: Service) -> Result<Value, String> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut request = http::Request::get(url);
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("{url}: {e}"))?;
    let response = tokio::time::timeout(TIMEOUT, client.request(request))
        .await
        .map_err(|_| format!("{url}: no answer within {}s", TIMEOUT.as_secs()))?
        .map_err(|e| unreachable(url, service, &e))?;
    let status = response.status();
    let body = tokio::time::timeout(TIMEOUT, response.into_body().collect())
        .await
        .map_err(|_| {
            format!(
                "{url}: the body did not arrive within {}s",
                TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("{url}: {e}"))?
        .to_bytes();
    if !status.is_success() {
        let text = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
        return Err(format!("{url}: {status}: {text}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))
}

/// `text` as one component of a query string: everything but the unreserved characters
/// of RFC 3986 §2.3 percent-encoded.
pub fn query_component(text: &str) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(text, UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_query_component_keeps_only_the_unreserved_characters() {
        assert_eq!(
            super::query_component(r#"sum by (variant) (x{e="a b"})~._-"#),
            "sum%20by%20%28variant%29%20%28x%7Be%3D%22a%20b%22%7D%29~._-"
        );
    }
}
