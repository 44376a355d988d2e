//! QA overrides: force a variant for one browser, never counted.
//!
//! With `qa_override.query_param: ab_force`, opening `/?ab_force=moon_mars=Mars` forces
//! Mars and remembers it in a session cookie of the same name for the rest of the visit;
//! `?ab_force=` (empty) clears it. With `qa_override.header: X-AB-Force`, each request
//! carrying `X-AB-Force: moon_mars=Mars, white_gold_btn=Gold` is forced. Unknown
//! experiments or variants in an override are ignored.

use http::HeaderMap;

use crate::config::QaOverride;

/// Forced variants for one request, and what to do with the override cookie.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Forced {
    pub pairs: Vec<(String, String)>,
    /// `Some(value)`: set the session cookie to value; `Some("")`: clear it.
    pub set_cookie: Option<String>,
}

impl Forced {
    pub fn variant_for(&self, experiment: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(e, _)| e == experiment)
            .map(|(_, v)| v.as_str())
    }
}

/// Read the overrides of a request. Precedence: header, then query parameter, then the
/// remembered cookie.
pub fn forced(config: &QaOverride, headers: &HeaderMap, query: Option<&str>) -> Forced {
    let mut forced = Forced::default();
    if let Some(param) = &config.query_param {
        if let Some(value) =
            query.and_then(|q| crate::experiments::targeting::query_param(q, param))
        {
            let pairs = parse(&value);
            // Only a well-formed value is remembered; anything else clears.
            forced.set_cookie = Some(if pairs.is_empty() {
                String::new()
            } else {
                format_pairs(&pairs)
            });
            forced.pairs = pairs;
        } else if let Some(value) = crate::experiments::device::cookie_value(headers, param) {
            forced.pairs = parse(&String::from_utf8_lossy(value));
        }
    }
    if let Some(name) = &config.header {
        if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) {
            let mut pairs = parse(value);
            let remembered = std::mem::take(&mut forced.pairs);
            let keep: Vec<_> = remembered
                .into_iter()
                .filter(|(e, _)| !pairs_has(&pairs, e))
                .collect();
            pairs.extend(keep);
            forced.pairs = pairs;
        }
    }
    forced
}

fn pairs_has(pairs: &[(String, String)], experiment: &str) -> bool {
    pairs.iter().any(|(e, _)| e == experiment)
}

/// `moon_mars=Mars, white_gold_btn=Gold` (separated by `,` `;` or `|`); invalid names
/// are dropped, so nothing but validated names ever reaches a cookie.
fn parse(value: &str) -> Vec<(String, String)> {
    use crate::config::names::{check_name, NameKind};
    value
        .split([',', ';', '|'])
        .filter_map(|pair| {
            let (e, v) = pair.trim().split_once('=')?;
            let (e, v) = (e.trim(), v.trim());
            (check_name(e, NameKind::Experiment).is_ok()
                && check_name(v, NameKind::Variant).is_ok())
            .then(|| (e.to_string(), v.to_string()))
        })
        .collect()
}

/// The remembered form, `moon_mars=Mars|btn=Gold`: `,` and `;` are not cookie-octets
/// (RFC 6265 §4.1.1), `=` and `|` are.
fn format_pairs(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(e, v)| format!("{e}={v}"))
        .collect::<Vec<_>>()
        .join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> QaOverride {
        QaOverride {
            query_param: Some("ab_force".into()),
            header: Some("x-ab-force".parse().unwrap()),
        }
    }

    #[test]
    fn query_sets_and_clears_the_cookie() {
        let f = forced(
            &config(),
            &HeaderMap::new(),
            Some("x=1&ab_force=moon_mars%3DMars,btn=Gold"),
        );
        assert_eq!(
            f.pairs,
            vec![
                ("moon_mars".into(), "Mars".into()),
                ("btn".into(), "Gold".into())
            ]
        );
        assert_eq!(f.set_cookie.as_deref(), Some("moon_mars=Mars|btn=Gold"));
        let f = forced(&config(), &HeaderMap::new(), Some("ab_force="));
        assert!(f.pairs.is_empty());
        assert_eq!(f.set_cookie.as_deref(), Some(""));
    }

    #[test]
    fn cookie_and_header() {
        let mut h = HeaderMap::new();
        h.insert(
            "cookie",
            "ab_force=moon_mars=Mars|btn=Gold".parse().unwrap(),
        );
        let f = forced(&config(), &h, None);
        assert_eq!(f.variant_for("moon_mars"), Some("Mars"));
        assert_eq!(f.variant_for("btn"), Some("Gold"));
        assert_eq!(f.set_cookie, None);
        h.insert("x-ab-force", "moon_mars=Moon".parse().unwrap());
        let f = forced(&config(), &h, None);
        assert_eq!(f.variant_for("moon_mars"), Some("Moon"), "the header wins");
        assert_eq!(f.variant_for("btn"), Some("Gold"));
    }

    #[test]
    fn junk_is_ignored_and_off_means_off() {
        let f = forced(
            &config(),
            &HeaderMap::new(),
            Some("ab_force=%0d%0aSet-Cookie:x=y,Moon=Mars,a=b!"),
        );
        assert!(f.pairs.is_empty(), "{f:?}");
        let off = QaOverride {
            query_param: None,
            header: None,
        };
        assert_eq!(
            forced(&off, &HeaderMap::new(), Some("ab_force=moon_mars=Mars")),
            Forced::default()
        );
    }
}
