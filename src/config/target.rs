//! The `target` conditions of an experiment, as the config states them. How a request
//! is matched against them is `experiments::targeting`'s business.

use http::HeaderName;

/// What kind of client sent the request, from its User-Agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceClass {
    Mobile,
    Desktop,
    Bot,
}

/// A regex compared by its source, so configs stay comparable.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}
impl Eq for Pattern {}

/// `target` conditions: every one given must hold (AND). Empty = everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// The device class must be one of these (never `Bot`).
    pub devices: Vec<DeviceClass>,
    /// Header equals value (exactly).
    pub headers: Vec<(HeaderName, String)>,
    /// Header matches a regex (unanchored: use `^…$` for the whole value).
    pub header_matches: Vec<(HeaderName, Pattern)>,
    /// Cookie equals value.
    pub cookies: Vec<(String, String)>,
    /// Cookie is present (any value).
    pub cookies_present: Vec<String>,
    /// Query parameter equals value (after percent-decoding).
    pub query: Vec<(String, String)>,
}

impl Target {
    pub fn is_empty(&self) -> bool {
        *self == Target::default()
    }
}
