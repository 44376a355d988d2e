//! The visitor's `device_id`: read from the request's cookies, or minted.

use http::header::COOKIE;
use http::HeaderMap;

use crate::config::names::is_token;

/// The device a request belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: String,
    /// Minted for this request (no valid id came with it): the response sets the cookie
    /// and the device counts as newly assigned.
    pub is_new: bool,
}

impl Device {
    /// The first valid `cookie_name` cookie among all `Cookie` fields (HTTP/2 may split
    /// cookies into several fields, RFC 9113 §8.2.3), or a new UUIDv4 when there is none
    /// or every one is invalid.
    pub fn from_headers(headers: &HeaderMap, cookie_name: &str) -> Device {
        match find_cookie(headers, cookie_name) {
            Some(id) => Device { id, is_new: false },
            None => Device {
                id: uuid::Uuid::new_v4().hyphenated().to_string(),
                is_new: true,
            },
        }
    }

    /// The `Set-Cookie` value for this id; `attributes` comes from the snapshot. The id
    /// is known to be 1–64 of `A-Z a-z 0-9 _ -`, so nothing here can inject CR/LF.
    pub fn set_cookie(&self, cookie_name: &str, attributes: &str) -> http::HeaderValue {
        set_cookie(cookie_name, &self.id, attributes)
    }
}

/// A `Set-Cookie` value: `name=value` and `attributes` (`; Path=/; …`). Every caller
/// passes validated names and cookie-octet values, so nothing here can carry CR/LF.
pub fn set_cookie(name: &str, value: &str, attributes: &str) -> http::HeaderValue {
    let mut out = String::with_capacity(name.len() + 1 + value.len() + attributes.len());
    out.push_str(name);
    out.push('=');
    out.push_str(value);
    out.push_str(attributes);
    http::HeaderValue::try_from(out).expect("validated cookie name, value and attributes")
}

/// Every `name=value` pair of every `Cookie` field (RFC 6265 §4.2.1), as raw bytes.
///
/// Bytes, not text: one non-UTF-8 cookie set by some other part of the site must not hide
/// the cookies beside it (for `device_id`, that visitor would get a new id, and possibly a
/// new variant, on every request).
pub fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|field| field.as_bytes().split(|&b| b == b';'))
        .filter_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            Some((pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii()))
        })
}

/// The first value of cookie `name`.
pub fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    cookie_pairs(headers)
        .find(|(n, _)| *n == name.as_bytes())
        .map(|(_, v)| v)
}

fn find_cookie(headers: &HeaderMap, cookie_name: &str) -> Option<String> {
    cookie_pairs(headers)
        .find(|(name, value)| *name == cookie_name.as_bytes() && is_token(value))
        // Valid ids are ASCII.
        .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookies: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(COOKIE, http::HeaderValue::from_bytes(c).unwrap());
        }
        h
    }

    #[test]
    fn reads_the_id_from_any_cookie_field() {
        let h = headers(&[b"a=1; b=2", b"theme=dark; device_id=abc-123; x=y"]);
        assert_eq!(
            Device::from_headers(&h, "device_id"),
            Device {
                id: "abc-123".into(),
                is_new: false
            }
        );
    }

    #[test]
    fn configurable_name() {
        let h = headers(&[b"device_id=one; vid=two"]);
        assert_eq!(Device::from_headers(&h, "vid").id, "two");
    }

    #[test]
    fn invalid_ids_are_replaced_by_a_uuid() {
        for bad in [
            &b"device_id="[..],
            b"device_id=a.b",
            b"device_id=\"quoted\"",
            b"device_id=%0d%0a",
            &[b'a'; 3][..],
        ] {
            let mut raw = bad.to_vec();
            if raw == b"aaa" {
                raw = format!("device_id={}", "x".repeat(65)).into_bytes();
            }
            let d = Device::from_headers(&headers(&[&raw]), "device_id");
            assert!(d.is_new, "{:?}", String::from_utf8_lossy(&raw));
            assert!(uuid::Uuid::parse_str(&d.id).is_ok());
            assert!(is_token(d.id.as_bytes()));
        }
    }

    #[test]
    fn first_valid_of_several_wins() {
        let h = headers(&[b"device_id=bad!; device_id=good"]);
        assert_eq!(Device::from_headers(&h, "device_id").id, "good");
    }

    #[test]
    fn non_utf8_cookies_do_not_hide_the_id() {
        let h = headers(&[b"device_id=\xff\xfe", b"device_id=ok"]);
        assert_eq!(Device::from_headers(&h, "device_id").id, "ok");
        let h = headers(&[b"pref=caf\xe9; device_id=abc; other=\xff"]);
        assert_eq!(
            Device::from_headers(&h, "device_id"),
            Device {
                id: "abc".into(),
                is_new: false
            }
        );
    }

    #[test]
    fn names_match_exactly() {
        let h = headers(&[b"xdevice_id=nope; device_idx=nope;device_id = spaced ;=x; novalue"]);
        assert_eq!(Device::from_headers(&h, "device_id").id, "spaced");
    }

    #[test]
    fn set_cookie_has_the_product_attributes() {
        let d = Device {
            id: "abc".into(),
            is_new: true,
        };
        let v = d.set_cookie(
            "device_id",
            "; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax",
        );
        assert_eq!(
            v,
            "device_id=abc; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax"
        );
    }
}
