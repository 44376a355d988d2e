//! Header rewriting between client and upstream: pure functions on `HeaderMap`.

use std::net::IpAddr;

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};

pub static X_DEVICE_ID: HeaderName = HeaderName::from_static("x-device-id");
pub static X_AB_ASSIGNMENTS: HeaderName = HeaderName::from_static("x-ab-assignments");
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// What the removed `Transfer-Encoding` said about the message's framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferCoding {
    /// No `Transfer-Encoding`: `Content-Length` (or the connection's end) frames the body.
    None,
    /// `chunked` only: hyper has already undone it.
    Chunked,
    /// Another coding (`gzip, chunked`): the bytes hyper hands us are still encoded, and
    /// once the field is gone nothing would say so.
    Other,
}

/// Remove hop-by-hop fields (RFC 9110 §7.6.1): `Connection` and every field it names,
/// plus the fields that are hop-by-hop by definition. They describe one connection and
/// must not be forwarded across the proxy, in either direction.
///
/// When `Transfer-Encoding` was present, `Content-Length` is removed too: the transfer
/// coding framed the message (RFC 9112 §6.3) and a stale length would cut or stall the
/// re-framed body. The coding is read before the fields `Connection` names go: naming
/// `Transfer-Encoding` there removes the field, not the framing it gave.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) -> TransferCoding {
    // Most messages carry none of these: one pass over their few names is cheaper than
    // a hashed lookup for each of the seven.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(&name)) {
        return TransferCoding::None;
    }
    let coding = transfer_coding(headers);
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // What browsers send (`keep-alive`, removed below anyway; `close`, an option and
        // not a field): no field name to build for them.
        .filter(|token| {
            !token.eq_ignore_ascii_case("keep-alive") && !token.eq_ignore_ascii_case("close")
        })
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    if coding != TransferCoding::None {
        headers.remove(header::CONTENT_LENGTH);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    coding
}

/// The fields that describe one hop, never forwarded (RFC 9110 §7.6.1), besides those a
/// `Connection` field names.
const HOP_BY_HOP: [&HeaderName; 7] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
];

/// What a message's `Transfer-Encoding` fields say about its framing.
pub fn transfer_coding(headers: &HeaderMap) -> TransferCoding {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .peekable();
    if codings.peek().is_none() {
        return TransferCoding::None;
    }
    if codings.all(|c| c.eq_ignore_ascii_case("chunked")) {
        TransferCoding::Chunked
    } else {
        TransferCoding::Other
    }
}

/// Mark a response that carries a visitor's own cookies `Cache-Control: private`, so no
/// shared cache stores it and hands one visitor's id and signed assignments to others.
/// `no-store` and `private` are left as they are; `public` becomes `private`; other
/// directives (`max-age`, …) are kept.
pub fn make_private(headers: &mut HeaderMap) {
    let directives: Vec<String> = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .collect();
    let lower = |d: &String| d.to_ascii_lowercase();
    if directives
        .iter()
        .any(|d| matches!(lower(d).as_str(), "no-store" | "private"))
    {
        return;
    }
    let mut value = String::from("private");
    for d in directives.iter().filter(|d| lower(d) != "public") {
        value.push_str(", ");
        value.push_str(d);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::try_from(value).expect("built from valid header values"),
    );
}

/// The `Cookie` field the upstream gets: every cookie but `drop` (the admin session),
/// in one field. HTTP/2 clients send each cookie as a field of its own (RFC 9113
/// §8.2.3), and an HTTP/1.1 server may read only the first `Cookie` field (RFC 6265
/// §5.4), so several fields are joined with `; `. Pairs are kept byte for byte. The
/// common case, one field without `drop`, costs one scan and changes nothing.
pub fn cookies_for_upstream(headers: &mut HeaderMap, drop: &str) {
    let fields = headers.get_all(header::COOKIE).iter().count();
    let has_drop =
        crate::experiments::device::cookie_pairs(headers).any(|(n, _)| n == drop.as_bytes());
    if fields <= 1 && !has_drop {
        return;
    }
    let kept: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|field| field.as_bytes().split(|&b| b == b';'))
        .map(|p| p.trim_ascii())
        .filter(|p| {
            !p.is_empty()
                && p.split(|&b| b == b'=').next().map(|n| n.trim_ascii()) != Some(drop.as_bytes())
        })
        .collect();
    let joined = (!kept.is_empty()).then(|| {
        HeaderValue::from_bytes(&kept.join(&b"; "[..])).expect("parts of valid header values")
    });
    headers.remove(header::COOKIE);
    if let Some(value) = joined {
        headers.insert(header::COOKIE, value);
    }
}

/// The request's `TE` lists `trailers` (RFC 9110 §10.1.4).
pub fn takes_trailers(headers: &HeaderMap) -> bool {
    headers.get_all(header::TE).iter().any(|v| {
        v.as_bytes().split(|&b| b == b',').any(|t| {
            t.split(|&b| b == b';')
                .next()
                .unwrap_or_default()
                .trim_ascii()
                .eq_ignore_ascii_case(b"trailers")
        })
    })
}

/// An authority without its userinfo (`user:pass@host:port` → `host:port`): credentials
/// in an absolute-form URI must never become a `Host` or `X-Forwarded-Host`.
pub fn without_userinfo(authority: &str) -> &str {
    authority.rsplit('@').next().unwrap_or(authority)
}

/// The peer's address as a header value, made once per connection (formatting an IP
/// per request showed in the profile).
pub fn peer_value(peer: IpAddr) -> HeaderValue {
    HeaderValue::try_from(peer.to_string()).expect("an IP address is a valid header value")
}

/// Append the peer (see [`peer_value`]) to `X-Forwarded-For` (never replace: earlier
/// proxies' entries stay, and the last entry is the one a downstream can trust). Several
/// incoming fields are folded into one list, in order.
pub fn append_forwarded_for(headers: &mut HeaderMap, peer: &HeaderValue) {
    let mut list = String::new();
    // Entry by entry: one entry with bytes that are not visible ASCII (obs-text, a
    // control byte) is dropped, and the rest of what the client sent is kept.
    for v in headers.get_all(&X_FORWARDED_FOR) {
        for entry in v.as_bytes().split(|&b| b == b',') {
            let entry = entry.trim_ascii();
            if !entry.is_empty() && entry.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
                list.push_str(std::str::from_utf8(entry).expect("checked ASCII"));
                list.push_str(", ");
            }
        }
    }
    if list.is_empty() {
        // The common case: the client is the first hop.
        headers.insert(&X_FORWARDED_FOR, peer.clone());
        return;
    }
    list.push_str(peer.to_str().expect("made from an IP address"));
    // Visible ASCII from valid header values plus an IP: always a valid value.
    let value = HeaderValue::try_from(list).expect("forwarded-for list is visible ASCII");
    headers.insert(&X_FORWARDED_FOR, value);
}

/// `X-AB-Assignments: moon_mars=Mars, white_gold_btn=Gold` — an RFC 8941 dictionary:
/// keys are experiment keys (lcalpha first, then lcalpha/digit/`_`/`-`), values are
/// tokens (variant names start with a letter). `names` guarantees both.
pub fn assignments_value<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
) -> Option<HeaderValue> {
    let mut out = String::new();
    for (experiment, variant) in pairs {
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(experiment);
        out.push('=');
        out.push_str(variant);
    }
    (!out.is_empty()).then(|| HeaderValue::try_from(out).expect("validated names are header-safe"))
}

/// The host the client asked for, without port: from `Host`, or from an absolute-form
/// request URI (RFC 9112 §3.2.2: then the URI's authority wins over `Host`).
pub fn request_host<'a>(uri: &'a http::Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    let authority = match uri.authority() {
        Some(a) => without_userinfo(a.as_str()),
        None => headers.get(header::HOST)?.to_str().ok()?,
    };
    Some(strip_port(authority))
}

fn strip_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        // IPv6 literal: [::1]:8080
        return rest.split(']').next().unwrap_or(rest);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_fields_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret-Hop, close"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::TRAILER, HeaderValue::from_static("x"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-end-to-end", HeaderValue::from_static("kept"));
        assert_eq!(remove_hop_by_hop(&mut h), TransferCoding::Chunked);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-end-to-end"], "kept");
    }

    #[test]
    fn transfer_coding_drops_a_stale_content_length() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        assert_eq!(remove_hop_by_hop(&mut h), TransferCoding::None);
        assert_eq!(
            h[header::CONTENT_LENGTH],
            "3",
            "kept without Transfer-Encoding"
        );

        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("Chunked"),
        );
        assert_eq!(remove_hop_by_hop(&mut h), TransferCoding::Chunked);
        assert!(!h.contains_key(header::CONTENT_LENGTH));

        let mut h = HeaderMap::new();
        h.append(header::TRANSFER_ENCODING, HeaderValue::from_static("gzip"));
        h.append(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert_eq!(remove_hop_by_hop(&mut h), TransferCoding::Other);

        // `Connection` naming the coding removes the field, not the framing it gave.
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("transfer-encoding"),
        );
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
        assert_eq!(remove_hop_by_hop(&mut h), TransferCoding::Chunked);
        assert!(h.is_empty(), "{h:?}");
    }

    #[test]
    fn te_trailers_is_recognised_among_other_codings() {
        let te = |values: &[&'static str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(header::TE, HeaderValue::from_static(v));
            }
            takes_trailers(&h)
        };
        assert!(te(&["trailers"]));
        assert!(te(&["gzip;q=0.5, Trailers"]));
        assert!(te(&["deflate", "trailers;q=1"]));
        assert!(!te(&["gzip"]));
        assert!(!te(&["x-trailers"]));
        assert!(!te(&[]));
    }

    #[test]
    fn upstream_cookies_lose_the_session_and_become_one_field() {
        let fields = |h: &HeaderMap| -> Vec<String> {
            h.get_all(header::COOKIE)
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect()
        };
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; abproxy_admin=secret; b=2"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("abproxy_admin=x"));
        h.append(header::COOKIE, HeaderValue::from_static("c=3"));
        cookies_for_upstream(&mut h, "abproxy_admin");
        assert_eq!(fields(&h), ["a=1; b=2; c=3"]);

        // HTTP/2: one cookie per field, joined.
        let mut h = HeaderMap::new();
        for c in ["device_id=d1", "ab_assignments=x.y", "theme=dark"] {
            h.append(header::COOKIE, HeaderValue::from_static(c));
        }
        cookies_for_upstream(&mut h, "abproxy_admin");
        assert_eq!(fields(&h), ["device_id=d1; ab_assignments=x.y; theme=dark"]);

        // One field without the session: untouched, byte for byte.
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("abproxy_administrator=keep;x=1"),
        );
        cookies_for_upstream(&mut h, "abproxy_admin");
        assert_eq!(fields(&h), ["abproxy_administrator=keep;x=1"]);

        // Only the session: no Cookie field at all.
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("abproxy_admin=s"));
        cookies_for_upstream(&mut h, "abproxy_admin");
        assert!(fields(&h).is_empty());
    }

    #[test]
    fn responses_with_our_cookies_are_private() {
        let cc = |initial: &[&'static str]| {
            let mut h = HeaderMap::new();
            for v in initial {
                h.append(header::CACHE_CONTROL, HeaderValue::from_static(v));
            }
            make_private(&mut h);
            h.get(header::CACHE_CONTROL)
                .map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(cc(&[]).as_deref(), Some("private"));
        assert_eq!(
            cc(&["public, max-age=600"]).as_deref(),
            Some("private, max-age=600")
        );
        assert_eq!(
            cc(&["max-age=60", "must-revalidate"]).as_deref(),
            Some("private, max-age=60, must-revalidate")
        );
        assert_eq!(cc(&["no-store"]).as_deref(), Some("no-store"));
        assert_eq!(
            cc(&["Private, max-age=5"]).as_deref(),
            Some("Private, max-age=5")
        );
    }

    #[test]
    fn userinfo_is_stripped() {
        assert_eq!(without_userinfo("u:p@shop.example:80"), "shop.example:80");
        assert_eq!(without_userinfo("shop.example"), "shop.example");
        let uri: http::Uri = "http://u:p@Shop.example:81/x".parse().unwrap();
        assert_eq!(request_host(&uri, &HeaderMap::new()), Some("Shop.example"));
    }

    #[test]
    fn forwarded_for_is_appended() {
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, &peer_value("127.0.0.1".parse().unwrap()));
        assert_eq!(h[&X_FORWARDED_FOR], "127.0.0.1");
        let mut h = HeaderMap::new();
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.7"));
        h.append(
            &X_FORWARDED_FOR,
            HeaderValue::from_static("198.51.100.1, 10.0.0.1"),
        );
        append_forwarded_for(&mut h, &peer_value("::1".parse().unwrap()));
        assert_eq!(h.get_all(&X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(
            h[&X_FORWARDED_FOR],
            "203.0.113.7, 198.51.100.1, 10.0.0.1, ::1"
        );
    }

    #[test]
    fn a_non_ascii_forwarded_for_entry_is_dropped_alone() {
        let mut h = HeaderMap::new();
        h.append(
            &X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"203.0.113.7, b\xfcd, 198.51.100.1").unwrap(),
        );
        h.append(&X_FORWARDED_FOR, HeaderValue::from_bytes(b"\xff").unwrap());
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        append_forwarded_for(&mut h, &peer_value("127.0.0.1".parse().unwrap()));
        assert_eq!(
            h[&X_FORWARDED_FOR],
            "203.0.113.7, 198.51.100.1, 10.0.0.1, 127.0.0.1"
        );
    }

    #[test]
    fn assignments_dictionary() {
        let v = assignments_value([("moon_mars", "Mars"), ("white_gold_btn", "Gold")].into_iter())
            .unwrap();
        assert_eq!(v, "moon_mars=Mars, white_gold_btn=Gold");
        assert!(assignments_value(std::iter::empty()).is_none());
    }

    #[test]
    fn host_without_port() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("Example.com:8080"));
        let uri: http::Uri = "/x".parse().unwrap();
        assert_eq!(request_host(&uri, &h), Some("Example.com"));
        let abs: http::Uri = "http://[::1]:9/x".parse().unwrap();
        assert_eq!(request_host(&abs, &h), Some("::1"));
        assert_eq!(request_host(&uri, &HeaderMap::new()), None);
    }
}
