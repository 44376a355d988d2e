//! The responses the proxy listener sends: an upstream's body streamed through, or a
//! short body of abproxy's own. Below both the proxy service and the `/_ab/` endpoints,
//! which all answer with it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::transport::http1_pool::Lease;

/// Responses stream the upstream's body, or carry a small body of our own.
pub type ProxyBody = Either<UpstreamBody, Full<Bytes>>;

/// An upstream response body on its way to the client, counting an upstream that cuts
/// it off (`abproxy_upstream_errors_total{kind="body"}`). The client's connection is
/// then closed mid-body, so it cannot mistake the truncated body for a whole one.
///
/// On the plain HTTP/1.1 path it also holds the upstream connection's [`Lease`]: reading
/// the body drives that connection, and its end returns the connection to the pool.
pub struct UpstreamBody {
    inner: Incoming,
    lease: Option<Lease>,
    cut: prometheus::IntCounter,
    /// A cut, given on the poll after the one that found it.
    held_error: Option<hyper::Error>,
}

impl UpstreamBody {
    /// `cut` counts an upstream that cuts the body off.
    pub fn new(inner: Incoming, lease: Option<Lease>, cut: prometheus::IntCounter) -> UpstreamBody {
        UpstreamBody {
            inner,
            lease,
            cut,
            held_error: None,
        }
    }
}

impl hyper::body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(err) = this.held_error.take() {
            return Poll::Ready(Some(Err(err)));
        }
        if let Some(lease) = &mut this.lease {
            // First the connection, which moves what has arrived into `inner`.
            if !lease.poll_connection(cx) {
                this.lease = None;
            }
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(err))) => {
                this.cut.inc();
                this.lease = None;
                // The connection may have read the cut in the same poll as the head and
                // the bytes before it: one Pending first lets hyper write out what it
                // holds, so the client sees the status and then a cut body rather than
                // a bare close.
                this.held_error = Some(err);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Ready(frame) => {
                // hyper's server stops polling a body that says it has ended.
                if frame.is_none() || this.inner.is_end_stream() {
                    if let Some(lease) = this.lease.take() {
                        lease.release();
                    }
                }
                Poll::Ready(frame)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A short plain-text response of our own.
pub fn plain_response(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::copy_from_slice(
        text.as_bytes(),
    ))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
