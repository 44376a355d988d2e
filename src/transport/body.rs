//! Reading a request body abproxy consumes itself (events, admin writes), never more
//! than `limits.max_body_bytes`.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

#[derive(Debug)]
pub enum BodyError {
    /// Over the limit: answered 413 (the rest of the body is not read).
    TooLarge { limit: usize },
    /// The client reset or sent a malformed chunked body: answered 400.
    Unreadable(String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge { limit } => write!(f, "the request body is over {limit} bytes"),
            BodyError::Unreadable(e) => write!(f, "the request body could not be read: {e}"),
        }
    }
}

pub async fn read_limited(body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge { limit }),
        Err(e) => Err(BodyError::Unreadable(e.to_string())),
    }
}

impl BodyError {
    pub fn status(&self) -> http::StatusCode {
        match self {
            BodyError::TooLarge { .. } => http::StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Unreadable(_) => http::StatusCode::BAD_REQUEST,
        }
    }
}
