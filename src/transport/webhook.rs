//! POSTs records (the automated decisions) to a webhook, off the request path: `send`
//! only queues, and one task delivers the queue in order, retrying what may succeed later.
//!
//! Each POST carries `X-Abproxy-Delivery`, an id the caller makes the same on every
//! retry and on every replica that makes the same decision, so a receiver drops
//! duplicates; and, with a secret, `X-Abproxy-Signature: sha256=<hex HMAC-SHA256 of the
//! body>`. A delivery given up (every attempt failed, a refusal, a bad URL, a full queue)
//! is logged at error and counted once in `abproxy_webhook_failures_total`.
//!
//! A webhook URL's path may be a secret (Slack's incoming webhooks are), so logs name only
//! its scheme, host and port.

use std::error::Error as _;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use prometheus::IntCounter;
use rustls::pki_types::ServerName;
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::transport::upstream_client::{self, UpstreamStream};
use crate::util::random::hex;

/// Deliveries waiting for the task; `send` drops one that finds the queue full. Decisions
/// are a few per experiment and update interval, so a full queue means the receiver has
/// been failing for long.
pub const QUEUE_CAPACITY: usize = 1000;

/// How much of a refusing answer's body is logged: enough for the receiver's reason.
const LOGGED_BODY_BYTES: usize = 200;

/// One POST to make. (Not `Debug`: it holds the secret, and its URL may be one.)
#[derive(Clone)]
pub struct Delivery {
    /// `http://` or `https://`.
    pub url: String,
    /// Signs the body (`X-Abproxy-Signature`) when given.
    pub secret: Option<Vec<u8>>,
    /// The JSON record, sent as is.
    pub body: Vec<u8>,
    /// `X-Abproxy-Delivery`: the same on every retry and on every replica that makes the
    /// same decision.
    pub id: String,
}

/// How hard a delivery is tried: `attempts` in all, each bounded by `attempt_timeout`
/// (connect, TLS, request and answer), with waits between them that start at
/// `first_backoff` and double up to `max_backoff`. A `Retry-After` in seconds on a 429 or
/// 503 lengthens the wait, never beyond `max_backoff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 0 counts as 1.
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts of at most 10 s each, 1, 2, 4 and 8 s apart (the doubling stops at 30 s):
    /// a receiver down for less than about 15 s misses nothing, and a delivery is given up
    /// at most about 65 s after it was queued.
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(10),
        }
    }
}

/// The sender: a bounded queue and the task delivering it, running until stopped or
/// dropped (deliveries still queued then are not sent).
pub struct Webhook {
    queue: mpsc::Sender<Delivery>,
    failures: IntCounter,
    task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    /// Start the task (within a tokio runtime). `https://` URLs are verified against the
    /// system's roots. `failures` is `Metrics::webhook_failures`.
    pub fn start(failures: IntCounter, policy: RetryPolicy) -> Webhook {
        let tls = upstream_client::client_config(upstream_client::system_roots(), b"http/1.1");
        Webhook::start_trusting(failures, policy, tls)
    }

    fn start_trusting(
        failures: IntCounter,
        policy: RetryPolicy,
        tls: Arc<rustls::ClientConfig>,
    ) -> Webhook {
        let (queue, deliveries) = mpsc::channel(QUEUE_CAPACITY);
        let task = tokio::spawn(run(
            deliveries,
            policy,
            tokio_rustls::TlsConnector::from(tls),
            failures.clone(),
        ));
        Webhook {
            queue,
            failures,
            task,
        }
    }

    /// Queue `delivery`; never waits. A full queue drops it (logged, counted as a failure).
    pub fn send(&self, delivery: Delivery) {
        let (delivery, why) = match self.queue.try_send(delivery) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(delivery)) => (
                delivery,
                format!(
                    "the queue of {QUEUE_CAPACITY} is full (the webhook has been failing or slow)"
                ),
            ),
            // Only if the task panicked: it ends with nothing else while `self` lives.
            Err(mpsc::error::TrySendError::Closed(delivery)) => {
                (delivery, "the sender's task has ended".to_string())
            }
        };
        tracing::error!(
            "webhook {}: delivery {} dropped: {why}",
            origin_of(&delivery.url),
            delivery.id
        );
        self.failures.inc();
    }

    /// Stop it and wait until its task is gone, an attempt in flight cancelled: like
    /// `state::bandit::Updater::stop`, so nothing the task holds outlives this call.
    /// (`Drop` only asks the runtime to cancel the task, which happens later.)
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    mut deliveries: mpsc::Receiver<Delivery>,
    policy: RetryPolicy,
    tls: tokio_rustls::TlsConnector,
    failures: IntCounter,
) {
    while let Some(delivery) = deliveries.recv().await {
        if let Err(given_up) = deliver(&delivery, &policy, &tls).await {
            let after = match given_up.attempts {
                0 => "not sent".to_string(),
                1 => "given up after 1 attempt".to_string(),
                n => format!("given up after {n} attempts"),
            };
            tracing::error!(
                "webhook {}: delivery {} {after}: {}",
                origin_of(&delivery.url),
                delivery.id,
                given_up.reason
            );
            failures.inc();
        }
    }
}

/// Why a delivery was given up, after how many attempts (0: it could not be made).
#[derive(Debug)]
struct GivenUp {
    attempts: u32,
    reason: String,
}

/// Try `delivery` until it is delivered, refused, or out of attempts.
async fn deliver(
    delivery: &Delivery,
    policy: &RetryPolicy,
    tls: &tokio_rustls::TlsConnector,
) -> Result<(), GivenUp> {
    let prepared = Prepared::new(delivery).map_err(|reason| GivenUp {
        attempts: 0,
        reason,
    })?;
    let attempts = policy.attempts.max(1);
    let origin = &prepared.target.origin;
    let mut attempt = 1;
    loop {
        let answer = tokio::time::timeout(policy.attempt_timeout, exchange(&prepared, tls))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no answer within {} ms",
                    policy.attempt_timeout.as_millis()
                ))
            });
        let (reason, retry_after) = match answer {
            Ok(answer) => match verdict(answer.status) {
                Verdict::Delivered => {
                    tracing::debug!(
                        "webhook {origin}: delivery {} delivered ({}) at attempt {attempt}",
                        delivery.id,
                        answer.status
                    );
                    return Ok(());
                }
                Verdict::Refused => {
                    return Err(GivenUp {
                        attempts: attempt,
                        reason: format!(
                        "refused with {}{} (not retried: the same request would be refused again)",
                        answer.status, answer.body_start
                    ),
                    })
                }
                Verdict::Retry => (
                    format!("{}{}", answer.status, answer.body_start),
                    answer.retry_after,
                ),
            },
            Err(reason) => (reason, None),
        };
        if attempt == attempts {
            tracing::warn!(
                "webhook {origin}: delivery {} attempt {attempt} of {attempts} failed: {reason}",
                delivery.id
            );
            return Err(GivenUp {
                attempts,
                reason: format!("the last failed with {reason}"),
            });
        }
        let wait = backoff(policy, attempt, retry_after);
        tracing::warn!(
            "webhook {origin}: delivery {} attempt {attempt} of {attempts} failed: {reason}; next in {} ms",
            delivery.id,
            wait.as_millis()
        );
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

/// What is done with an answer.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Delivered,
    /// It may succeed later: the receiver is failing (5xx), rate-limiting (429), or timed
    /// the request out (408: RFC 9110 §15.5.9 says the client may repeat it).
    Retry,
    /// Any other answer: the same request would get it again (a redirect is not followed:
    /// a webhook URL is meant to be the receiver's own).
    Refused,
}

fn verdict(status: StatusCode) -> Verdict {
    if status.is_success() {
        Verdict::Delivered
    } else if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Verdict::Retry
    } else {
        Verdict::Refused
    }
}

/// The wait after the `failed`-th failed attempt (1-based): `first_backoff` doubled per
/// earlier failure, or the receiver's `Retry-After` if longer, at most `max_backoff`.
fn backoff(policy: &RetryPolicy, failed: u32, retry_after: Option<Duration>) -> Duration {
    let doubled = policy
        .first_backoff
        .saturating_mul(2u32.saturating_pow(failed.saturating_sub(1)));
    doubled
        .max(retry_after.unwrap_or_default())
        .min(policy.max_backoff)
}

/// `Retry-After` in delta-seconds (RFC 9110 §10.2.3). Its HTTP-date form is ignored: it
/// would need this clock to agree with the receiver's.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    seconds.trim().parse().ok().map(Duration::from_secs)
}

/// `X-Abproxy-Signature`'s value: `sha256=` and the lower-case hex HMAC-SHA256 of `body`.
fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

/// Where a URL points, checked once per delivery.
#[derive(Debug)]
struct Target {
    /// What connects: a bracketed IPv6 address without its brackets.
    host: String,
    port: u16,
    /// The TLS server name (SNI, verification) of an `https://` URL.
    tls: Option<ServerName<'static>>,
    /// The `Host` field: the URL's authority.
    authority: String,
    path_and_query: String,
    /// `scheme://authority`, for logs.
    origin: String,
}

fn parse_target(url: &str) -> Result<Target, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("the webhook URL is not a URL: {e}"))?;
    let (tls, default_port) = match uri.scheme_str() {
        Some("http") => (false, 80),
        Some("https") => (true, 443),
        Some(other) => {
            return Err(format!(
                "the webhook URL must start with http:// or https://, not {other}://"
            ))
        }
        None => return Err("the webhook URL must start with http:// or https://".to_string()),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| "the webhook URL has no host".to_string())?;
    if authority.as_str().contains('@') {
        return Err("the webhook URL must not carry credentials (user@host)".to_string());
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tls = if tls {
        Some(
            ServerName::try_from(host.clone())
                .map_err(|e| format!("the webhook URL's host is not a TLS server name: {e}"))?,
        )
    } else {
        None
    };
    Ok(Target {
        port: authority.port_u16().unwrap_or(default_port),
        tls,
        authority: authority.to_string(),
        path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        origin: format!("{}://{authority}", uri.scheme_str().unwrap_or_default()),
        host,
    })
}

/// A URL's scheme and authority, without the path that may be a secret, for logs (`?` for
/// what does not parse, as nothing of it can be shown safely).
fn origin_of(url: &str) -> String {
    match url.parse::<Uri>() {
        Ok(uri) => match (uri.scheme_str(), uri.authority()) {
            (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
            _ => "?".to_string(),
        },
        Err(_) => "?".to_string(),
    }
}

/// A delivery's target and request fields, built once for all its attempts.
struct Prepared {
    target: Target,
    headers: HeaderMap,
    body: Bytes,
}

impl Prepared {
    fn new(delivery: &Delivery) -> Result<Prepared, String> {
        let target = parse_target(&delivery.url)?;
        let value = |what: &str, text: &str| {
            HeaderValue::from_str(text).map_err(|_| format!("{what} is not a valid header value"))
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::HOST,
            value("the URL's host", &target.authority)?,
        );
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(concat!("abproxy/", env!("CARGO_PKG_VERSION"))),
        );
        headers.insert(
            HeaderName::from_static("x-abproxy-delivery"),
            value("the delivery id", &delivery.id)?,
        );
        if let Some(secret) = &delivery.secret {
            headers.insert(
                HeaderName::from_static("x-abproxy-signature"),
                value("the signature", &signature(secret, &delivery.body))?,
            );
        }
        Ok(Prepared {
            target,
            headers,
            body: Bytes::copy_from_slice(&delivery.body),
        })
    }

    fn request(&self) -> http::Request<Full<Bytes>> {
        let mut request = http::Request::post(&self.target.path_and_query)
            .body(Full::new(self.body.clone()))
            .expect("a parsed URL's path is a valid request target");
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// What an attempt got back.
struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
    /// `: <the start of the body>` of an answer that is not a 2xx, or nothing.
    body_start: String,
}

/// One attempt on a new connection (deliveries are rare: no pool to keep warm).
async fn exchange(prepared: &Prepared, tls: &tokio_rustls::TlsConnector) -> Result<Answer, String> {
    let target = &prepared.target;
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    tcp.set_nodelay(true)
        .map_err(|e| format!("cannot connect: {e}"))?;
    let io = match &target.tls {
        None => UpstreamStream::Plain(TokioIo::new(tcp)),
        Some(name) => UpstreamStream::Tls(TokioIo::new(
            tls.connect(name.clone(), tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?,
        )),
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| chain(&e))?;
    let request = prepared.request();
    let answer = async move {
        let response = sender.send_request(request).await.map_err(|e| chain(&e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body_start = if status.is_success() {
            String::new()
        } else {
            start_of(response.into_body()).await
        };
        Ok(Answer {
            status,
            retry_after,
            body_start,
        })
    };
    // The connection is driven here rather than in a task of its own, so a timed-out or
    // stopped attempt leaves nothing behind.
    let mut connection = pin!(connection);
    let mut answer = pin!(answer);
    tokio::select! {
        biased;
        answer = &mut answer => answer,
        ended = &mut connection => {
            // An answer read before the connection ended is still there to take.
            let error = ended.err().map(|e| chain(&e));
            answer.await.map_err(|e| error.unwrap_or(e))
        }
    }
}

/// `: ` and the first bytes of `body` as text, or nothing if it is empty or unreadable.
async fn start_of(mut body: hyper::body::Incoming) -> String {
    let mut start = Vec::new();
    while start.len() < LOGGED_BODY_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    start.extend_from_slice(data);
                }
            }
            _ => break,
        }
    }
    start.truncate(LOGGED_BODY_BYTES);
    let text = String::from_utf8_lossy(&start);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {}", text.escape_debug())
    }
}

/// An error and its causes (hyper's own text, `connection closed before message
/// completed`, is often only the start).
fn chain(error: &hyper::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
