//! The cookies: `cookie` (the visitor-id cookie's name, the assignments cookie's name,
//! their max age and domain).

use std::time::Duration;

use super::fields::{error, join, Fields, Result};
use crate::config::names;
use crate::config::CookieConfig;

pub const DEFAULT_COOKIE_NAME: &str = "device_id";
pub const DEFAULT_ASSIGNMENTS_COOKIE: &str = "ab_assignments";
const DEFAULT_COOKIE_MAX_AGE: Duration = Duration::from_secs(365 * 24 * 3600);

/// `cookie: { name: device_id, assignments_name: ab_assignments, max_age: 365d,
/// domain: example.com }`; the two names must differ.
pub(super) fn cookie(top: &Fields) -> Result<CookieConfig> {
    let default = CookieConfig {
        name: DEFAULT_COOKIE_NAME.into(),
        assignments_name: DEFAULT_ASSIGNMENTS_COOKIE.into(),
        max_age: DEFAULT_COOKIE_MAX_AGE,
        domain: None,
    };
    let Some((key, node)) = top.get("cookie") else {
        return Ok(default);
    };
    let c = Fields::new(
        node,
        "cookie",
        key.pos,
        &["name", "assignments_name", "max_age", "domain"],
    )?;
    // RFC 6265 §4.1.1: cookie-name is an RFC 2616 token; we keep to a safe subset.
    let cookie_name = |field: &str, default: String| -> Result<String> {
        match c.string(field)? {
            None => Ok(default),
            Some((pos, name)) if !names::is_token(name.as_bytes()) => error(
                pos,
                &join("cookie", field),
                format!("`{name}` must be 1–64 of A-Z a-z 0-9 _ -"),
            ),
            Some((_, name)) => Ok(name),
        }
    };
    let name = cookie_name("name", default.name)?;
    let assignments_name = cookie_name("assignments_name", default.assignments_name)?;
    if name == assignments_name {
        let pos = c
            .get("assignments_name")
            .or(c.get("name"))
            .map_or(key.pos, |(k, _)| k.pos);
        return error(
            pos,
            "cookie",
            format!("`name` and `assignments_name` must differ (both `{name}`)"),
        );
    }
    let domain = match c.string("domain")? {
        None => None,
        Some((pos, domain)) => {
            let ok = names::is_host_name(&domain) && domain.len() <= 253;
            if !ok {
                return error(
                    pos,
                    "cookie.domain",
                    format!("`{domain}` is not a host name"),
                );
            }
            Some(domain.to_ascii_lowercase())
        }
    };
    Ok(CookieConfig {
        name,
        assignments_name,
        max_age: c.duration("max_age", default.max_age, Duration::from_secs(1))?,
        domain,
    })
}
