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

/// Responses stream the upstream's body, or carry a small body of our own.
pub type ProxyBody = Either<UpstreamBody, Full<Bytes>>;

/// An upstream response body on its way to the client, counting an upstream that cuts
/// it off (`abproxy_upstream_errors_total{kind="body"}`). The client's connection is
/// then closed mid-body, so it cannot mistake the truncated body for a whole one.
pub struct UpstreamBody {
    inner: Incoming,
    cut: prometheus::IntCounter,
}

impl UpstreamBody {
    /// `cut` counts an upstream that cuts the body off.
    pub fn new(inner: Incoming, cut: prometheus::IntCounter) -> UpstreamBody {
        UpstreamBody { inner, cut }
    }
}

impl hyper::body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            self.cut.inc();
        }
        polled
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
