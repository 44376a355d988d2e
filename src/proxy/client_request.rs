//! What abproxy asks of a client's request head before forwarding it (checked before
//! anything is assigned or counted):
//! - exactly one valid `Host` on an HTTP/1.1 request, at most one elsewhere (RFC 9112
//!   §3.2: a server must answer 400 otherwise);
//! - no `CONNECT`: abproxy is a reverse proxy, not a forward one (501);
//! - no transfer coding but `chunked` (501): hyper undoes only `chunked`, so a
//!   `gzip, chunked` body would go upstream as plain chunked with the gzip silently dropped.
//!
//! The body is watched on its way upstream by `transport::request_body`.

use http::{header, HeaderMap, Method, StatusCode, Version};

use crate::counting::metrics::ClientErrorKind;
use crate::proxy::headers::{transfer_coding, TransferCoding};

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
}
