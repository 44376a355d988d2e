//! What abproxy asks of a client's request before forwarding it, and the client's body on
//! its way upstream.
//!
//! The head (checked before anything is assigned or counted):
//! - exactly one valid `Host` on an HTTP/1.1 request, at most one elsewhere (RFC 9112
//!   §3.2: a server must answer 400 otherwise);
//! - no `CONNECT`: abproxy is a reverse proxy, not a forward one (501);
//! - no transfer coding but `chunked` (501): hyper undoes only `chunked`, so a
//!   `gzip, chunked` body would go upstream as plain chunked with the gzip silently dropped.
//!
//! The body: [`ClientBody`] notes when the client, not the upstream, broke a request —
//! malformed chunked framing, a connection cut mid-body, or a body that stalls longer than
//! `timeouts.request_body_idle` — so the answer is the client's 400 or 408 and nothing is
//! counted against the upstream (a hostile client must not be able to inflate a variant's
//! error rate).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, Method, StatusCode, Version};
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::proxy::headers::{transfer_coding, TransferCoding};

/// The `kind` label of `abproxy_client_errors_total`: a request refused because of what
/// the client sent. Kept apart from upstream errors, so no client can inflate a
/// variant's error rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientErrorKind {
    /// An HTTP/1.1 request without `Host`, with two, or with an invalid one (400).
    Host = 0,
    /// `CONNECT`: abproxy is not a forward proxy (501).
    Method = 1,
    /// A request transfer coding other than `chunked` (501).
    TransferCoding = 2,
    /// A malformed request body (bad chunked framing) or one the client cut off (400).
    Body = 3,
    /// The client stopped sending its request body (`timeouts.request_body_idle`, 408).
    BodyTimeout = 4,
}

impl ClientErrorKind {
    pub const LABELS: [&'static str; 5] =
        ["host", "method", "transfer_coding", "body", "body_timeout"];
}

/// Why a request head was refused: the status, the short reason sent back, and how it
/// is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: &'static str,
    pub kind: ClientErrorKind,
}

/// Check a request head (see the module doc). Pure.
pub fn check_head(method: &Method, version: Version, headers: &HeaderMap) -> Result<(), Refusal> {
    if method == Method::CONNECT {
        return Err(Refusal {
            status: StatusCode::NOT_IMPLEMENTED,
            reason: "abproxy is a reverse proxy: CONNECT (forward proxying) is not supported",
            kind: ClientErrorKind::Method,
        });
    }
    let mut hosts = headers.get_all(header::HOST).iter();
    let host_refused = |reason| Refusal {
        status: StatusCode::BAD_REQUEST,
        reason,
        kind: ClientErrorKind::Host,
    };
    match (hosts.next(), hosts.next()) {
        (None, _) if version == Version::HTTP_11 => {
            return Err(host_refused("an HTTP/1.1 request must have a Host field"));
        }
        (Some(_), Some(_)) => return Err(host_refused("a request must have only one Host field")),
        (Some(host), None) if !valid_host(host.as_bytes()) => {
            return Err(host_refused("the Host field is not a valid host[:port]"));
        }
        _ => {}
    }
    if transfer_coding(headers) == TransferCoding::Other {
        return Err(Refusal {
            status: StatusCode::NOT_IMPLEMENTED,
            reason: "abproxy accepts request bodies framed by Content-Length or chunked only",
            kind: ClientErrorKind::TransferCoding,
        });
    }
    Ok(())
}

/// `Host = uri-host [ ":" port ]` (RFC 9110 §7.2), or empty (a target with no authority,
/// RFC 9112 §3.2). No userinfo: `a@b` is an authority, not a host.
fn valid_host(value: &[u8]) -> bool {
    if value.is_empty() {
        return true;
    }
    if value.contains(&b'@') {
        return false;
    }
    let Ok(authority) = http::uri::Authority::try_from(value) else {
        return false;
    };
    // The parser takes any URI characters after the colon: a port is digits only.
    let after_host = &authority.as_str()[authority.host().len()..];
    match after_host.strip_prefix(':') {
        None => after_host.is_empty(),
        Some(port) => port.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// What became of a client's request body, shared between the body (which the upstream
/// client polls) and the request that awaits the upstream's answer.
#[derive(Debug, Default)]
pub struct BodyWatch(AtomicU8);

/// The body's state, as [`BodyWatch`] holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyState {
    /// Being sent: the last poll gave bytes (or none was made yet).
    Flowing = 0,
    /// The last poll found nothing from the client: abproxy is waiting on the client.
    WaitingOnClient = 1,
    /// Sent whole.
    Complete = 2,
    /// Malformed, or cut off by the client.
    Broken = 3,
    /// Nothing from the client for `timeouts.request_body_idle`.
    Stalled = 4,
}

impl BodyWatch {
    pub fn state(&self) -> BodyState {
        match self.0.load(Ordering::Acquire) {
            0 => BodyState::Flowing,
            1 => BodyState::WaitingOnClient,
            2 => BodyState::Complete,
            3 => BodyState::Broken,
            _ => BodyState::Stalled,
        }
    }

    fn set(&self, state: BodyState) {
        self.0.store(state as u8, Ordering::Release);
    }

    /// When a request failed or timed out upstream: was it the client's doing? A body
    /// that broke or stalled is; so is an upstream timeout while abproxy was waiting for
    /// the client's next bytes (a body trickled in slower than the upstream timeout).
    pub fn client_fault(&self, upstream_timed_out: bool) -> Option<ClientErrorKind> {
        match self.state() {
            BodyState::Broken => Some(ClientErrorKind::Body),
            BodyState::Stalled => Some(ClientErrorKind::BodyTimeout),
            BodyState::WaitingOnClient if upstream_timed_out => Some(ClientErrorKind::BodyTimeout),
            _ => None,
        }
    }
}

/// The client's request body streamed upstream, watched (see the module doc).
pub struct ClientBody {
    inner: Incoming,
    /// `None` for a body that is already complete (no body): nothing to watch, no timer.
    watch: Option<Arc<BodyWatch>>,
    idle: Duration,
    /// Armed on the first wait for the client, reset by every frame.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The client stopped sending its body (the error hyper's client gets from the body).
#[derive(Debug, thiserror::Error)]
#[error("the client sent no request body bytes for {}ms", .0.as_millis())]
pub struct BodyStalled(Duration);

impl ClientBody {
    /// Wrap `inner`; the watch is `None` when there is no body to watch.
    pub fn new(inner: Incoming, idle: Duration) -> (ClientBody, Option<Arc<BodyWatch>>) {
        let watch = (!inner.is_end_stream()).then(|| Arc::new(BodyWatch::default()));
        let body = ClientBody {
            inner,
            watch: watch.clone(),
            idle,
            timer: None,
        };
        (body, watch)
    }

    fn mark(&self, state: BodyState) {
        if let Some(watch) = &self.watch {
            watch.set(state);
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(timer) = &mut this.timer {
                    timer
                        .as_mut()
                        .reset(tokio::time::Instant::now() + this.idle);
                }
                this.mark(if this.inner.is_end_stream() {
                    BodyState::Complete
                } else {
                    BodyState::Flowing
                });
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.mark(BodyState::Complete);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(err))) => {
                this.mark(BodyState::Broken);
                Poll::Ready(Some(Err(err.into())))
            }
            Poll::Pending => {
                this.mark(BodyState::WaitingOnClient);
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.mark(BodyState::Stalled);
                        Poll::Ready(Some(Err(BodyStalled(idle).into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn head(version: Version, hosts: &[&[u8]]) -> Result<(), Refusal> {
        let mut h = HeaderMap::new();
        for host in hosts {
            h.append(header::HOST, HeaderValue::from_bytes(host).unwrap());
        }
        check_head(&Method::GET, version, &h)
    }

    #[test]
    fn http11_needs_exactly_one_valid_host() {
        assert!(head(Version::HTTP_11, &[b"shop.example"]).is_ok());
        assert!(head(Version::HTTP_11, &[b"shop.example:8080"]).is_ok());
        assert!(head(Version::HTTP_11, &[b"127.0.0.1:80"]).is_ok());
        assert!(head(Version::HTTP_11, &[b"[::1]:80"]).is_ok());
        assert!(
            head(Version::HTTP_11, &[b""]).is_ok(),
            "empty is allowed (no authority)"
        );
        for bad in [
            &b"a b/c@d"[..],
            b"user@shop.example",
            b"shop.example:port",
            b"a/b",
        ] {
            let refused = head(Version::HTTP_11, &[bad]).unwrap_err();
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad:?}");
            assert_eq!(refused.kind, ClientErrorKind::Host);
        }
        assert_eq!(
            head(Version::HTTP_11, &[]).unwrap_err().reason,
            "an HTTP/1.1 request must have a Host field"
        );
        assert_eq!(
            head(Version::HTTP_11, &[b"a.example", b"b.example"])
                .unwrap_err()
                .reason,
            "a request must have only one Host field"
        );
    }

    #[test]
    fn http10_may_omit_host_but_not_repeat_or_garble_it() {
        assert!(head(Version::HTTP_10, &[]).is_ok());
        assert!(head(Version::HTTP_10, &[b"a.example", b"a.example"]).is_err());
        assert!(head(Version::HTTP_10, &[b"a b"]).is_err());
        assert!(
            head(Version::HTTP_2, &[]).is_ok(),
            "HTTP/2 carries :authority"
        );
    }

    #[test]
    fn connect_and_codings_other_than_chunked_are_not_implemented() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a.example:443"));
        let refused = check_head(&Method::CONNECT, Version::HTTP_11, &h).unwrap_err();
        assert_eq!(
            (refused.status, refused.kind),
            (StatusCode::NOT_IMPLEMENTED, ClientErrorKind::Method)
        );
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("gzip, chunked"),
        );
        let refused = check_head(&Method::POST, Version::HTTP_11, &h).unwrap_err();
        assert_eq!(
            (refused.status, refused.kind),
            (StatusCode::NOT_IMPLEMENTED, ClientErrorKind::TransferCoding)
        );
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert!(check_head(&Method::POST, Version::HTTP_11, &h).is_ok());
    }

    #[test]
    fn only_a_broken_or_stalled_body_or_a_wait_on_the_client_is_the_clients_fault() {
        let watch = BodyWatch::default();
        assert_eq!(watch.client_fault(true), None, "flowing: the upstream's");
        watch.set(BodyState::WaitingOnClient);
        assert_eq!(watch.client_fault(false), None);
        assert_eq!(watch.client_fault(true), Some(ClientErrorKind::BodyTimeout));
        watch.set(BodyState::Complete);
        assert_eq!(watch.client_fault(true), None);
        watch.set(BodyState::Broken);
        assert_eq!(watch.client_fault(false), Some(ClientErrorKind::Body));
        watch.set(BodyState::Stalled);
        assert_eq!(
            watch.client_fault(false),
            Some(ClientErrorKind::BodyTimeout)
        );
    }
}
