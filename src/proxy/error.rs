//! Why a proxied request failed, and the response the client gets for it.
//!
//! Every failure becomes a response here: an error that reached hyper would close the
//! connection without one.

use std::time::Duration;

use http::StatusCode;

use crate::counting::metrics::ClientErrorKind;
use crate::counting::metrics::UpstreamErrorKind;
use crate::transport::http1_pool::SendError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No routing experiment applied and no `default_upstream` is configured.
    #[error("no upstream is configured for this request")]
    NoRoute,
    #[error("upstream {upstream} refused the connection or could not be reached")]
    UpstreamConnect {
        upstream: String,
        #[source]
        source: BoxError,
    },
    #[error("upstream {upstream} did not answer within {}ms", timeout.as_millis())]
    UpstreamTimeout { upstream: String, timeout: Duration },
    /// Same message as a response timeout; told apart because nothing was sent.
    #[error("upstream {upstream} did not answer within {}ms", timeout.as_millis())]
    UpstreamConnectTimeout { upstream: String, timeout: Duration },
    #[error("upstream {upstream} used a transfer coding other than chunked")]
    UpstreamTransferCoding { upstream: String },
    #[error("upstream {upstream} failed before sending a response")]
    UpstreamFailed {
        upstream: String,
        #[source]
        source: BoxError,
    },
    #[error("upstream {upstream} sent something that is not an HTTP/1.1 response")]
    UpstreamMalformed {
        upstream: String,
        #[source]
        source: BoxError,
    },
    /// The client's body broke (malformed chunked framing, or cut off): its fault, 400.
    #[error("the request body was malformed or cut off by the client")]
    ClientBody,
    /// The client stopped sending its body: its fault, 408.
    #[error("the request body stalled: nothing came from the client for {}ms", timeout.as_millis())]
    ClientBodyTimeout { timeout: Duration },
}

impl ProxyError {
    /// Classify a client error: a connect timeout is a timeout (504), any other connect
    /// failure is a bad gateway (502).
    pub fn from_client(
        upstream: &str,
        err: hyper_util::client::legacy::Error,
        connect_timeout: Duration,
    ) -> ProxyError {
        let upstream = upstream.to_string();
        if err.is_connect() {
            if caused_by_timeout(&err) {
                return ProxyError::UpstreamConnectTimeout {
                    upstream,
                    timeout: connect_timeout,
                };
            }
            return ProxyError::UpstreamConnect {
                upstream,
                source: err.into(),
            };
        }
        if caused_by_parse_error(&err) {
            return ProxyError::UpstreamMalformed {
                upstream,
                source: err.into(),
            };
        }
        ProxyError::UpstreamFailed {
            upstream,
            source: err.into(),
        }
    }

    /// Classify an error of the plain HTTP/1.1 path as [`ProxyError::from_client`] does.
    pub fn from_http1_pool(
        upstream: &str,
        err: SendError,
        connect_timeout: Duration,
    ) -> ProxyError {
        let upstream = upstream.to_string();
        match err {
            SendError::ConnectTimeout => ProxyError::UpstreamConnectTimeout {
                upstream,
                timeout: connect_timeout,
            },
            SendError::Connect(err) => ProxyError::UpstreamConnect {
                upstream,
                source: err.into(),
            },
            SendError::Exchange(err) if is_malformed_response(&err) => {
                ProxyError::UpstreamMalformed {
                    upstream,
                    source: err.into(),
                }
            }
            SendError::Exchange(err) => ProxyError::UpstreamFailed {
                upstream,
                source: err.into(),
            },
        }
    }

    /// The upstream could not be reached: nothing of the request was sent, so it may be
    /// sent elsewhere (`upstream_down: fallback`).
    pub fn upstream_is_down(&self) -> bool {
        matches!(
            self,
            ProxyError::UpstreamConnect { .. } | ProxyError::UpstreamConnectTimeout { .. }
        )
    }

    /// The error for a request the client broke (see `transport::request_body::BodyWatch`).
    pub fn from_client_fault(kind: ClientErrorKind, body_idle: Duration) -> ProxyError {
        match kind {
            ClientErrorKind::BodyTimeout => ProxyError::ClientBodyTimeout { timeout: body_idle },
            _ => ProxyError::ClientBody,
        }
    }

    /// How `abproxy_client_errors_total` counts it (`None`: not the client's fault).
    pub fn client_error_kind(&self) -> Option<ClientErrorKind> {
        match self {
            ProxyError::ClientBody => Some(ClientErrorKind::Body),
            ProxyError::ClientBodyTimeout { .. } => Some(ClientErrorKind::BodyTimeout),
            _ => None,
        }
    }

    /// How `abproxy_upstream_errors_total` counts it (`None`: not an upstream failure).
    pub fn upstream_error_kind(&self) -> Option<UpstreamErrorKind> {
        match self {
            ProxyError::NoRoute | ProxyError::ClientBody | ProxyError::ClientBodyTimeout { .. } => {
                None
            }
            ProxyError::UpstreamConnect { .. } => Some(UpstreamErrorKind::Refused),
            ProxyError::UpstreamTimeout { .. } | ProxyError::UpstreamConnectTimeout { .. } => {
                Some(UpstreamErrorKind::Timeout)
            }
            ProxyError::UpstreamFailed { .. } => Some(UpstreamErrorKind::Reset),
            ProxyError::UpstreamMalformed { .. } | ProxyError::UpstreamTransferCoding { .. } => {
                Some(UpstreamErrorKind::Protocol)
            }
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::ClientBody => StatusCode::BAD_REQUEST,
            ProxyError::ClientBodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ProxyError::UpstreamConnect { .. }
            | ProxyError::UpstreamFailed { .. }
            | ProxyError::UpstreamMalformed { .. }
            | ProxyError::UpstreamTransferCoding { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout { .. } | ProxyError::UpstreamConnectTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
        }
    }
}

fn caused_by_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = err.source();
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        if e.to_string().contains("timed out") {
            return true;
        }
        current = e.source();
    }
    false
}

/// hyper could not parse what the upstream sent as a response.
fn caused_by_parse_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = err.source();
    while let Some(e) = current {
        if let Some(hyper_err) = e.downcast_ref::<hyper::Error>() {
            return is_malformed_response(hyper_err);
        }
        current = e.source();
    }
    false
}

fn is_malformed_response(err: &hyper::Error) -> bool {
    err.is_parse() || err.is_parse_status()
}
