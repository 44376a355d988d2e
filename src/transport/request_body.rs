//! A client's request body on its way upstream, watched: [`ClientBody`] notes when the
//! client, not the upstream, broke a request — malformed chunked framing, a connection
//! cut mid-body, or a body that stalls longer than `timeouts.request_body_idle` — so the
//! answer is the client's 400 or 408 and nothing is counted against the upstream (a
//! hostile client must not be able to inflate a variant's error rate).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::counting::metrics::ClientErrorKind;

/// What the upstream pools send: the client's body streamed on, or none (a bodiless
/// request sent again to the fallback's upstream).
pub type UpstreamRequestBody = http_body_util::Either<ClientBody, http_body_util::Empty<Bytes>>;

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
