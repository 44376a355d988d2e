//! What every section of the config shares: the error (placed at a key, named by its
//! dotted path), [`Fields`] (one mapping's entries with unknown keys refused, and its
//! typed getters), and the value parsers they use (durations, sizes, whole numbers,
//! lists and maps of text). No section of the config is read here.

use core::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::yaml::{Key, Node, Pos, Value};

/// A config error: where, and what (the message starts with the dotted path).
pub(in crate::config) struct Error {
    pub pos: Pos,
    pub message: String,
}

pub(super) type Result<T> = std::result::Result<T, Error>;

pub(super) fn error<T>(pos: Pos, path: &str, message: impl std::fmt::Display) -> Result<T> {
    Err(Error {
        pos,
        message: format!("{path}: {message}"),
    })
}

/// The entries of one mapping, with unknown keys already refused.
pub(super) struct Fields<'a> {
    pub(super) path: String,
    entries: &'a [(Key, Node)],
    /// Where to point "missing key" errors: the mapping's own key.
    at: Pos,
}

impl<'a> Fields<'a> {
    pub(super) fn new(node: &'a Node, path: &str, at: Pos, allowed: &[&str]) -> Result<Fields<'a>> {
        let entries = match &node.value {
            Value::Map(entries) => entries.as_slice(),
            Value::Null => &[],
            _ => {
                return error(
                    at,
                    path,
                    format!("expected a mapping, found {}", node.kind()),
                )
            }
        };
        for (key, _) in entries {
            if !allowed.contains(&key.name.as_str()) {
                return error(
                    key.pos,
                    &join(path, &key.name),
                    format!(
                        "unknown key `{}` (expected one of: {})",
                        key.name,
                        allowed.join(", ")
                    ),
                );
            }
        }
        Ok(Fields {
            path: path.to_string(),
            entries,
            at,
        })
    }

    pub(super) fn get(&self, name: &str) -> Option<(&'a Key, &'a Node)> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(k, v)| (k, v))
    }

    pub(super) fn required(&self, name: &str) -> Result<(&'a Key, &'a Node)> {
        match self.get(name) {
            Some(found) => Ok(found),
            None => error(self.at, &self.path, format!("missing key `{name}`")),
        }
    }

    pub(super) fn child_path(&self, key: &Key) -> String {
        join(&self.path, &key.name)
    }

    pub(super) fn string(&self, name: &str) -> Result<Option<(Pos, String)>> {
        self.get(name)
            .map(|(key, node)| {
                Ok((
                    key.pos,
                    scalar(key, node, &self.child_path(key))?.to_string(),
                ))
            })
            .transpose()
    }

    /// A duration of at least `min` (zero timeouts would fail every request).
    pub(super) fn duration(
        &self,
        name: &str,
        default: Duration,
        min: Duration,
    ) -> Result<Duration> {
        match self.get(name) {
            None => Ok(default),
            Some((key, node)) => {
                let path = self.child_path(key);
                let value = parse_duration(scalar(key, node, &path)?)
                    .or_else(|m| error(key.pos, &path, m))?;
                if value < min {
                    return error(
                        key.pos,
                        &path,
                        format!("must be at least {}ms", min.as_millis()),
                    );
                }
                Ok(value)
            }
        }
    }

    /// A byte size (`64KiB`, `1000000`, see [`parse_size`]) from `min` to `max`.
    pub(super) fn size(&self, name: &str, default: u64, min: u64, max: u64) -> Result<u64> {
        let Some((key, node)) = self.get(name) else {
            return Ok(default);
        };
        let path = self.child_path(key);
        let text = scalar(key, node, &path)?;
        match parse_size(text) {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            _ => error(
                key.pos,
                &path,
                format!(
                    "`{text}` is not a size from {} to {} (e.g. 64KiB, 1MiB, 1000000)",
                    show_size(min),
                    show_size(max)
                ),
            ),
        }
    }

    /// `true` or `false`.
    pub(super) fn boolean(&self, name: &str, default: bool) -> Result<bool> {
        let Some((key, node)) = self.get(name) else {
            return Ok(default);
        };
        let path = self.child_path(key);
        match scalar(key, node, &path)? {
            "true" => Ok(true),
            "false" => Ok(false),
            other => error(key.pos, &path, format!("`{other}` is not true or false")),
        }
    }

    /// A whole number from `min` to `max`.
    pub(super) fn whole(&self, name: &str, default: u64, min: u64, max: u64) -> Result<u64> {
        match self.get(name) {
            None => Ok(default),
            Some((key, node)) => integer(key, node, &self.child_path(key), min, max),
        }
    }

    pub(super) fn path(&self, name: &str) -> Result<Option<PathBuf>> {
        Ok(self.string(name)?.map(|(_, p)| PathBuf::from(p)))
    }

    pub(super) fn socket_addr(&self, name: &str, default: &str) -> Result<SocketAddr> {
        let Some((key, node)) = self.get(name) else {
            return Ok(default.parse().expect("default listen address parses"));
        };
        let path = self.child_path(key);
        let text = scalar(key, node, &path)?;
        text.parse().or_else(|_| {
            error(
                key.pos,
                &path,
                format!("`{text}` is not an IP:port address (e.g. 127.0.0.1:8080 or [::1]:8080)"),
            )
        })
    }
}

pub(super) fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

pub(super) fn scalar<'n>(key: &Key, node: &'n Node, path: &str) -> Result<&'n str> {
    match &node.value {
        Value::Scalar(text) => Ok(text),
        _ => error(
            key.pos,
            path,
            format!("expected a value, found {}", node.kind()),
        ),
    }
}

/// `500ms`, `2s`, `5m`, `1h`, `365d`. A bare number is refused: its unit would be a guess.
pub(crate) fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let n: u64 = digits.parse().map_err(|_| {
        format!("`{text}` is not a duration (write e.g. 500ms, 2s, 5m, 1h or 365d)")
    })?;
    let millis = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        "" => return Err(format!("`{text}` needs a unit (ms, s, m, h or d)")),
        _ => {
            return Err(format!(
                "`{text}` has an unknown unit `{unit}` (use ms, s, m, h or d)"
            ))
        }
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is too long"))
}

/// A plain decimal number ≥ 0: `0`, `0.01`, `12.5`. Not `.5`, `1e-2`, `inf` or `NaN`,
/// which `f64::from_str` would also take.
pub(super) fn decimal(text: &str) -> Option<f64> {
    let (whole, frac) = match text.split_once('.') {
        Some((_, "")) => return None,
        Some(parts) => parts,
        None => (text, "0"),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(frac) {
        return None;
    }
    text.parse().ok()
}

/// A duration as it would be written in the file: `1s`, `1500ms`, `1h`, `7d`.
pub(crate) fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".to_string(),
        ms if ms % 86_400_000 == 0 => format!("{}d", ms / 86_400_000),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

/// A size limit as a reader would write it: `4GiB`, `64KiB`, or plain bytes.
fn show_size(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{}GiB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}KiB", n >> 10),
        n => n.to_string(),
    }
}

/// `1000000`, `512KiB`, `64MiB`, `1GiB` (binary units; `KB`/`MB`/`GB` are decimal).
fn parse_size(text: &str) -> Option<u64> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = match &text[digits.len()..] {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(unit)
}

pub(super) fn integer(key: &Key, node: &Node, path: &str, min: u64, max: u64) -> Result<u64> {
    let text = scalar(key, node, path)?;
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => error(
            key.pos,
            path,
            format!("`{text}` is not a whole number from {min} to {max}"),
        ),
    }
}

/// The entries of an optional top-level mapping (`upstreams`, `experiments`); absent or
/// empty is no entries.
pub(super) fn named_entries<'a>(
    top: &Fields<'a>,
    name: &str,
    expected: &str,
) -> Result<&'a [(Key, Node)]> {
    let Some((key, node)) = top.get(name) else {
        return Ok(&[]);
    };
    match &node.value {
        Value::Map(entries) => Ok(entries.as_slice()),
        Value::Null => Ok(&[]),
        _ => error(
            key.pos,
            name,
            format!("expected {expected}, found {}", node.kind()),
        ),
    }
}

/// A mapping of name → text value.
pub(super) fn string_map<'a>(
    key: &Key,
    node: &'a Node,
    path: &str,
) -> Result<Vec<(&'a Key, String)>> {
    let Value::Map(entries) = &node.value else {
        return error(
            key.pos,
            path,
            format!("expected a mapping of name: value, found {}", node.kind()),
        );
    };
    entries
        .iter()
        .map(|(k, v)| Ok((k, scalar(k, v, &join(path, &k.name))?.to_string())))
        .collect()
}

/// A list of text values (a single value is a list of one).
pub(super) fn string_list(key: &Key, node: &Node, path: &str) -> Result<Vec<(Pos, String)>> {
    match &node.value {
        Value::Scalar(s) => Ok(vec![(node.pos, s.clone())]),
        Value::Seq(items) => items
            .iter()
            .map(|item| match &item.value {
                Value::Scalar(s) => Ok((item.pos, s.clone())),
                _ => error(
                    item.pos,
                    path,
                    format!("expected a value, found {}", item.kind()),
                ),
            })
            .collect(),
        _ => error(
            key.pos,
            path,
            format!("expected a list, found {}", node.kind()),
        ),
    }
}
