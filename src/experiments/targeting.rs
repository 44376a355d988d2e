//! Who an experiment is for: `target` conditions over a request, the device class from
//! the User-Agent, and the bot list. Pure: the request's facts come in as a
//! [`RequestFacts`].

use http::{HeaderMap, HeaderName};

use crate::config::target::{DeviceClass, Target};

/// Case-insensitive User-Agent substrings that mark a bot: search and social crawlers,
/// link previewers, archivers and uptime monitors. Bots are served the fallback and never
/// counted. (A missing User-Agent is not a bot: many legitimate clients omit it.)
pub const BOT_MARKERS: &[&str] = &[
    "bot",
    "crawl",
    "spider",
    "slurp",
    "mediapartners",
    "facebookexternalhit",
    "ia_archiver",
    "embedly",
    "preview",
    "pingdom",
    "monitor",
];

/// Case-insensitive substrings that mark a phone or tablet ("Mobi" is what Mozilla
/// recommends looking for; the others catch tablets and older Android builds).
pub const MOBILE_MARKERS: &[&str] = &["mobi", "android", "iphone", "ipad", "ipod"];

pub fn classify(user_agent: Option<&str>) -> DeviceClass {
    let Some(ua) = user_agent else {
        return DeviceClass::Desktop;
    };
    // Markers are lower-case ASCII; compare without lower-casing a copy of the header.
    let contains = |marker: &str| {
        ua.as_bytes()
            .windows(marker.len())
            .any(|w| w.eq_ignore_ascii_case(marker.as_bytes()))
    };
    if BOT_MARKERS.iter().any(|m| contains(m)) {
        DeviceClass::Bot
    } else if MOBILE_MARKERS.iter().any(|m| contains(m)) {
        DeviceClass::Mobile
    } else {
        DeviceClass::Desktop
    }
}

/// What targeting looks at in a request, gathered once per request.
pub struct RequestFacts<'a> {
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    /// Classified on first use: only active experiments look at it.
    device_class: std::cell::OnceCell<DeviceClass>,
}

impl<'a> RequestFacts<'a> {
    pub fn new(headers: &'a HeaderMap, query: Option<&'a str>) -> RequestFacts<'a> {
        RequestFacts {
            headers,
            query,
            device_class: std::cell::OnceCell::new(),
        }
    }

    /// The device class from the User-Agent.
    pub fn device_class(&self) -> DeviceClass {
        *self.device_class.get_or_init(|| {
            classify(
                self.headers
                    .get(http::header::USER_AGENT)
                    .and_then(|v| v.to_str().ok()),
            )
        })
    }

    fn header(&self, name: &HeaderName) -> impl Iterator<Item = &str> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
    }

    fn cookie(&self, name: &str) -> Option<&'a [u8]> {
        crate::experiments::device::cookie_value(self.headers, name)
    }

    fn query_param(&self, name: &str) -> Option<String> {
        query_param(self.query?, name)
    }
}

/// The first value of `name` in a query string, percent-decoded (`+` is a space).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

impl Target {
    pub fn matches(&self, facts: &RequestFacts) -> bool {
        (self.devices.is_empty() || self.devices.contains(&facts.device_class()))
            && self
                .headers
                .iter()
                .all(|(name, want)| facts.header(name).any(|v| v == want))
            && self
                .header_matches
                .iter()
                .all(|(name, pattern)| facts.header(name).any(|v| pattern.0.is_match(v)))
            && self
                .cookies
                .iter()
                .all(|(name, want)| facts.cookie(name) == Some(want.as_bytes()))
            && self
                .cookies_present
                .iter()
                .all(|name| facts.cookie(name).is_some())
            && self
                .query
                .iter()
                .all(|(name, want)| facts.query_param(name).as_deref() == Some(want.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::target::Pattern;

    #[test]
    fn device_classes() {
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148";
        let android = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36";
        let desktop = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
        let googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
        let bing = "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0) Chrome/116.0 Safari/537.36";
        let facebook = "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)";
        assert_eq!(classify(Some(iphone)), DeviceClass::Mobile);
        assert_eq!(classify(Some(android)), DeviceClass::Mobile);
        assert_eq!(classify(Some(desktop)), DeviceClass::Desktop);
        assert_eq!(
            classify(Some(googlebot)),
            DeviceClass::Bot,
            "bot wins over mobile markers"
        );
        assert_eq!(classify(Some(bing)), DeviceClass::Bot);
        assert_eq!(classify(Some(facebook)), DeviceClass::Bot);
        assert_eq!(classify(None), DeviceClass::Desktop);
        assert_eq!(
            classify(Some("SOME-CRAWLER/1.0")),
            DeviceClass::Bot,
            "markers match in any case"
        );
        assert_eq!(classify(Some("x (IPHONE)")), DeviceClass::Mobile);
        assert_eq!(classify(Some("")), DeviceClass::Desktop);
    }

    fn facts<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> RequestFacts<'a> {
        RequestFacts::new(headers, query)
    }

    #[test]
    fn each_condition() {
        let mut h = HeaderMap::new();
        h.insert("x-country", "DE".parse().unwrap());
        h.insert(
            "user-agent",
            "Mozilla/5.0 (iPhone) Mobile Firefox/121.0".parse().unwrap(),
        );
        h.insert("cookie", "beta=1; plan=pro".parse().unwrap());
        let q = Some("ref=news%20letter&x=1");
        let f = facts(&h, q);
        let t = |build: fn(&mut Target)| {
            let mut t = Target::default();
            build(&mut t);
            t
        };
        assert!(Target::default().matches(&f));
        assert!(t(|t| t.devices = vec![DeviceClass::Mobile]).matches(&f));
        assert!(!t(|t| t.devices = vec![DeviceClass::Desktop]).matches(&f));
        assert!(t(|t| t.headers = vec![("x-country".parse().unwrap(), "DE".into())]).matches(&f));
        assert!(!t(|t| t.headers = vec![("x-country".parse().unwrap(), "de".into())]).matches(&f));
        assert!(!t(|t| t.headers = vec![("x-missing".parse().unwrap(), "DE".into())]).matches(&f));
        assert!(t(|t| t.header_matches = vec![(
            "user-agent".parse().unwrap(),
            Pattern(regex::Regex::new(r"Firefox/\d+").unwrap())
        )])
        .matches(&f));
        assert!(!t(|t| t.header_matches = vec![(
            "user-agent".parse().unwrap(),
            Pattern(regex::Regex::new(r"^Chrome").unwrap())
        )])
        .matches(&f));
        assert!(t(|t| t.cookies = vec![("plan".into(), "pro".into())]).matches(&f));
        assert!(!t(|t| t.cookies = vec![("plan".into(), "free".into())]).matches(&f));
        assert!(t(|t| t.cookies_present = vec!["beta".into()]).matches(&f));
        assert!(!t(|t| t.cookies_present = vec!["alpha".into()]).matches(&f));
        assert!(t(|t| t.query = vec![("ref".into(), "news letter".into())]).matches(&f));
        assert!(!t(|t| t.query = vec![("ref".into(), "ads".into())]).matches(&f));
        assert!(
            !t(|t| t.query = vec![("ref".into(), "news letter".into())]).matches(&facts(&h, None))
        );
    }

    #[test]
    fn conditions_combine_with_and() {
        let mut h = HeaderMap::new();
        h.insert("x-country", "DE".parse().unwrap());
        let f = facts(&h, None);
        let t = Target {
            headers: vec![("x-country".parse().unwrap(), "DE".into())],
            devices: vec![DeviceClass::Mobile],
            ..Target::default()
        };
        assert!(!t.matches(&f), "desktop (no UA) fails the device condition");
    }

    #[test]
    fn query_decoding() {
        assert_eq!(query_param("a=1&b=x%2By+z", "b").as_deref(), Some("x+y z"));
        assert_eq!(query_param("a&b=2", "a").as_deref(), Some(""));
        assert_eq!(query_param("a=%zz%4", "a").as_deref(), Some("%zz%4"));
        assert_eq!(query_param("a=1", "c"), None);
    }
}
