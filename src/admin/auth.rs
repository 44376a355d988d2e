//! Who may use the admin API and page.
//!
//! - A bearer token (`Authorization: Bearer <token>`) from `ABPROXY_ADMIN_TOKEN` or
//!   `admin.token_file`, compared in constant time.
//! - In a browser, the login form exchanges the token for a session cookie
//!   (`abproxy_admin`, HttpOnly, SameSite=Strict, 12 h), signed with the proxy's secret
//!   and bound to the token (changing the token ends every session).
//! - State-changing requests that ride on the session cookie must also carry the
//!   page's CSRF token in `X-CSRF-Token` (a MAC of the session). SameSite=Strict already
//!   keeps the cookie off cross-site requests; the token is the second lock.
//!
//! With no token configured, reads are open (the admin listener defaults to loopback)
//! and writes are refused with a message saying how to configure one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

use crate::experiments::sticky::Signer;
use crate::state::secret::AdminToken;

pub const SESSION_COOKIE: &str = "abproxy_admin";
pub const CSRF_HEADER: &str = "x-csrf-token";
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Shorter tokens are refused: they could be guessed.
pub const HOW_TO_SET: &str = "no admin token is configured: set ABPROXY_ADMIN_TOKEN or admin.token_file (at least 16 characters) to allow changes";

/// What to warn about when the admin listener is reachable from other hosts with no
/// token: anyone who can reach it reads the metrics, the experiments and their results.
pub fn exposure_warning(admin: std::net::SocketAddr, has_token: bool) -> Option<String> {
    if has_token || admin.ip().to_canonical().is_loopback() {
        return None;
    }
    Some(format!(
        "the admin listener {admin} is not on loopback and no admin token is configured: \
         anyone who can reach it can read metrics, experiments and results; {HOW_TO_SET}, \
         or set admin.listen to 127.0.0.1"
    ))
}

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A valid bearer token: not an ambient credential, so no CSRF check.
    Bearer,
    /// A valid session cookie; `csrf` is the token its page carries.
    Session { csrf: String },
    /// Nothing valid (or nothing at all).
    Unknown,
}

pub fn identify(headers: &HeaderMap, token: Option<&AdminToken>, signer: &Signer) -> Caller {
    let Some(token) = token else {
        return Caller::Unknown;
    };
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    if let Some(candidate) = bearer {
        return if token.matches(candidate.trim()) {
            Caller::Bearer
        } else {
            Caller::Unknown
        };
    }
    match crate::experiments::device::cookie_value(headers, SESSION_COOKIE)
        .and_then(|v| std::str::from_utf8(v).ok())
    {
        Some(session) if session_valid(session, token, signer, SystemTime::now()) => {
            Caller::Session {
                csrf: csrf_token(session, signer),
            }
        }
        _ => Caller::Unknown,
    }
}

/// A new session value: `<expiry unix seconds>.<mac>`.
pub fn new_session(token: &AdminToken, signer: &Signer, now: SystemTime) -> String {
    let expiry = (now + SESSION_TTL)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    format!(
        "{expiry}.{}",
        signer.mac_hex(
            "admin session",
            &format!("{expiry}\n{}", token.fingerprint())
        )
    )
}

fn session_valid(session: &str, token: &AdminToken, signer: &Signer, now: SystemTime) -> bool {
    let Some((expiry, mac)) = session.split_once('.') else {
        return false;
    };
    let Ok(expiry_secs) = expiry.parse::<u64>() else {
        return false;
    };
    let expected = signer.mac_hex(
        "admin session",
        &format!("{expiry}\n{}", token.fingerprint()),
    );
    let now_secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    // Both are hex of a MAC: compare without early exit.
    mac.len() == expected.len()
        && mac
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
        && now_secs < expiry_secs
}

/// The CSRF token of a session, embedded in the page and expected back in
/// `X-CSRF-Token`.
pub fn csrf_token(session: &str, signer: &Signer) -> String {
    signer.mac_hex("admin csrf", session)[..32].to_string()
}

/// Does a session-authenticated write carry the right CSRF token?
pub fn csrf_ok(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|got| {
            got.len() == expected.len()
                && got
                    .bytes()
                    .zip(expected.bytes())
                    .fold(0u8, |a, (x, y)| a | (x ^ y))
                    == 0
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exposed_admin_listener_without_a_token_is_warned_about() {
        let at = |a: &str| a.parse::<std::net::SocketAddr>().unwrap();
        for loopback in [
            "127.0.0.1:8081",
            "127.0.0.2:8081",
            "[::1]:8081",
            "[::ffff:127.0.0.1]:8081",
        ] {
            assert_eq!(exposure_warning(at(loopback), false), None, "{loopback}");
        }
        for exposed in ["0.0.0.0:8081", "10.0.0.5:8081", "[::]:8081"] {
            let warning = exposure_warning(at(exposed), false).expect(exposed);
            assert!(
                warning.contains(exposed) && warning.contains("ABPROXY_ADMIN_TOKEN"),
                "{warning}"
            );
            assert_eq!(
                exposure_warning(at(exposed), true),
                None,
                "a token makes it safe"
            );
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn bearer_and_session_identify_callers() {
        let signer = Signer::new(b"secret-secret-secret");
        let token = AdminToken::new("the-admin-token-123");
        assert_eq!(
            identify(
                &headers(&[("authorization", "Bearer the-admin-token-123")]),
                Some(&token),
                &signer
            ),
            Caller::Bearer
        );
        assert_eq!(
            identify(
                &headers(&[("authorization", "Bearer wrong-token-123456")]),
                Some(&token),
                &signer
            ),
            Caller::Unknown
        );
        assert_eq!(
            identify(&headers(&[]), Some(&token), &signer),
            Caller::Unknown
        );
        assert_eq!(
            identify(
                &headers(&[("authorization", "Bearer the-admin-token-123")]),
                None,
                &signer
            ),
            Caller::Unknown
        );

        let session = new_session(&token, &signer, SystemTime::now());
        let cookie = format!("{SESSION_COOKIE}={session}");
        let caller = identify(&headers(&[("cookie", &cookie)]), Some(&token), &signer);
        assert_eq!(
            caller,
            Caller::Session {
                csrf: csrf_token(&session, &signer)
            }
        );
        // Another token, another secret, a forged expiry, an expired session: refused.
        assert_eq!(
            identify(
                &headers(&[("cookie", &cookie)]),
                Some(&AdminToken::new("another-token-12345")),
                &signer
            ),
            Caller::Unknown
        );
        assert_eq!(
            identify(
                &headers(&[("cookie", &cookie)]),
                Some(&token),
                &Signer::new(b"other-secret-000000")
            ),
            Caller::Unknown
        );
        let (expiry, mac) = session.split_once('.').unwrap();
        let forged = format!(
            "{SESSION_COOKIE}={}.{mac}",
            expiry.parse::<u64>().unwrap() + 3600
        );
        assert_eq!(
            identify(&headers(&[("cookie", &forged)]), Some(&token), &signer),
            Caller::Unknown
        );
        let old = new_session(
            &token,
            &signer,
            SystemTime::now() - SESSION_TTL - Duration::from_secs(1),
        );
        assert!(!session_valid(&old, &token, &signer, SystemTime::now()));
    }

    #[test]
    fn csrf_header_must_match() {
        assert!(csrf_ok(&headers(&[(CSRF_HEADER, "abc")]), "abc"));
        assert!(!csrf_ok(&headers(&[(CSRF_HEADER, "abd")]), "abc"));
        assert!(!csrf_ok(&headers(&[]), "abc"));
    }
}
