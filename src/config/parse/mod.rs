//! Tree → [`Config`]: every key checked, every error placed at the key it is about and
//! named by its dotted path (`experiments.moon_mars.fallback`).

use core::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::target::{DeviceClass, Pattern, Target};
use super::yaml::{Key, Node, Pos, Value};
use super::{
    Config, CookieConfig, Experiment, ExportConfig, Goal, HostPolicy, Limits, Match, PoolConfig,
    QaOverride, State, Timeouts, TlsConfig, Trigger, Upstream, UpstreamDown, ValueSource, Variant,
};
use crate::config::names;

pub(super) struct Error {
    pub pos: Pos,
    pub message: String,
}

type Result<T> = std::result::Result<T, Error>;

fn error<T>(pos: Pos, path: &str, message: impl std::fmt::Display) -> Result<T> {
    Err(Error {
        pos,
        message: format!("{path}: {message}"),
    })
}

/// Defaults, also listed in the README's config reference.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8081";
pub const DEFAULT_COOKIE_NAME: &str = "device_id";
pub const DEFAULT_ASSIGNMENTS_COOKIE: &str = "ab_assignments";
pub const DEFAULT_DATA_DIR: &str = "./data";
const DEFAULT_COOKIE_MAX_AGE: Duration = Duration::from_secs(365 * 24 * 3600);
const DEFAULT_TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(2),
    upstream_response: Duration::from_secs(30),
    header_read: Duration::from_secs(10),
    request_body_idle: Duration::from_secs(10),
    shutdown_grace: Duration::from_secs(30),
};
const DEFAULT_POOL: PoolConfig = PoolConfig {
    max_idle_per_host: 256,
    idle_timeout: Duration::from_secs(90),
};
const DEFAULT_LIMITS: Limits = Limits {
    max_connections: 10_000,
    max_header_bytes: 64 << 10,
    max_headers: 100,
    max_body_bytes: 64 << 10,
};
/// The smallest timeout: zero would fail every request.
const NONZERO: Duration = Duration::from_millis(1);
/// Keeps the total weight far from overflow and the label cardinality sane.
const MAX_WEIGHT: u32 = 1_000_000;
const MAX_VARIANTS: usize = 32;

/// The entries of one mapping, with unknown keys already refused.
struct Fields<'a> {
    path: String,
    entries: &'a [(Key, Node)],
    /// Where to point "missing key" errors: the mapping's own key.
    at: Pos,
}

impl<'a> Fields<'a> {
    fn new(node: &'a Node, path: &str, at: Pos, allowed: &[&str]) -> Result<Fields<'a>> {
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

    fn get(&self, name: &str) -> Option<(&'a Key, &'a Node)> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(k, v)| (k, v))
    }

    fn required(&self, name: &str) -> Result<(&'a Key, &'a Node)> {
        match self.get(name) {
            Some(found) => Ok(found),
            None => error(self.at, &self.path, format!("missing key `{name}`")),
        }
    }

    fn child_path(&self, key: &Key) -> String {
        join(&self.path, &key.name)
    }

    fn string(&self, name: &str) -> Result<Option<(Pos, String)>> {
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
    fn duration(&self, name: &str, default: Duration, min: Duration) -> Result<Duration> {
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
    fn size(&self, name: &str, default: u64, min: u64, max: u64) -> Result<u64> {
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
    fn boolean(&self, name: &str, default: bool) -> Result<bool> {
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
    fn whole(&self, name: &str, default: u64, min: u64, max: u64) -> Result<u64> {
        match self.get(name) {
            None => Ok(default),
            Some((key, node)) => integer(key, node, &self.child_path(key), min, max),
        }
    }

    fn path(&self, name: &str) -> Result<Option<PathBuf>> {
        Ok(self.string(name)?.map(|(_, p)| PathBuf::from(p)))
    }

    fn socket_addr(&self, name: &str, default: &str) -> Result<SocketAddr> {
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

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn scalar<'n>(key: &Key, node: &'n Node, path: &str) -> Result<&'n str> {
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

pub(super) fn config(root: &Node) -> Result<Config> {
    let top = Fields::new(
        root,
        "",
        root.pos,
        &[
            "listen",
            "tls",
            "admin",
            "upstreams",
            "default_upstream",
            "host_header",
            "cookie",
            "timeouts",
            "pool",
            "limits",
            "data_dir",
            "secret_file",
            "qa_override",
            "export",
            "experiments",
        ],
    )?;
    let listen = top.socket_addr("listen", DEFAULT_LISTEN)?;
    let (admin_listen, admin_token_file) = match top.get("admin") {
        None => (
            DEFAULT_ADMIN_LISTEN
                .parse()
                .expect("default admin address parses"),
            None,
        ),
        Some((key, node)) => {
            let admin = Fields::new(node, "admin", key.pos, &["listen", "token_file"])?;
            (
                admin.socket_addr("listen", DEFAULT_ADMIN_LISTEN)?,
                admin.path("token_file")?,
            )
        }
    };
    let tls = match top.get("tls") {
        None => None,
        Some((key, node)) => {
            let t = Fields::new(node, "tls", key.pos, &["cert", "key"])?;
            let path = |name: &str| -> Result<PathBuf> {
                t.path(name)?.map_or_else(
                    || error(key.pos, "tls", format!("missing key `{name}` (a PEM file)")),
                    Ok,
                )
            };
            Some(TlsConfig {
                cert: path("cert")?,
                key: path("key")?,
            })
        }
    };
    let upstreams = upstreams(&top)?;
    if upstreams.is_empty() {
        // Also what an empty or truncated file looks like: never apply one.
        let pos = top.get("upstreams").map_or(root.pos, |(key, _)| key.pos);
        return error(
            pos,
            "upstreams",
            "a config needs at least one upstream (name: http://host:port)",
        );
    }
    let default_upstream = match top.string("default_upstream")? {
        None => None,
        Some((pos, name)) => {
            if !upstreams.iter().any(|u| u.name == name) {
                return error(pos, "default_upstream", unknown_upstream(&name, &upstreams));
            }
            Some(name)
        }
    };
    let host_header = match top.string("host_header")? {
        None => HostPolicy::Client,
        Some((_, v)) if v == "client" => HostPolicy::Client,
        Some((_, v)) if v == "upstream" => HostPolicy::Upstream,
        Some((pos, v)) => {
            return error(
                pos,
                "host_header",
                format!("`{v}` is not one of: client, upstream"),
            )
        }
    };
    let cookie = cookie(&top)?;
    let timeouts = match top.get("timeouts") {
        None => DEFAULT_TIMEOUTS,
        Some((key, node)) => {
            let t = Fields::new(
                node,
                "timeouts",
                key.pos,
                &[
                    "connect",
                    "upstream_response",
                    "header_read",
                    "request_body_idle",
                    "shutdown_grace",
                ],
            )?;
            Timeouts {
                connect: t.duration("connect", DEFAULT_TIMEOUTS.connect, NONZERO)?,
                upstream_response: t.duration(
                    "upstream_response",
                    DEFAULT_TIMEOUTS.upstream_response,
                    NONZERO,
                )?,
                header_read: t.duration("header_read", DEFAULT_TIMEOUTS.header_read, NONZERO)?,
                request_body_idle: t.duration(
                    "request_body_idle",
                    DEFAULT_TIMEOUTS.request_body_idle,
                    NONZERO,
                )?,
                shutdown_grace: t.duration(
                    "shutdown_grace",
                    DEFAULT_TIMEOUTS.shutdown_grace,
                    Duration::ZERO,
                )?,
            }
        }
    };
    let pool = match top.get("pool") {
        None => DEFAULT_POOL,
        Some((key, node)) => {
            let p = Fields::new(
                node,
                "pool",
                key.pos,
                &["max_idle_per_host", "idle_timeout"],
            )?;
            let max_idle_per_host = match p.get("max_idle_per_host") {
                None => DEFAULT_POOL.max_idle_per_host,
                Some((key, node)) => {
                    integer(key, node, "pool.max_idle_per_host", 0, 100_000)? as usize
                }
            };
            PoolConfig {
                max_idle_per_host,
                idle_timeout: p.duration("idle_timeout", DEFAULT_POOL.idle_timeout, NONZERO)?,
            }
        }
    };
    let limits = match top.get("limits") {
        None => DEFAULT_LIMITS,
        Some((key, node)) => limits(key, node)?,
    };
    let experiments = experiments(&top, &upstreams)?;
    check_addresses(&top, listen, admin_listen, &upstreams)?;
    let data_dir = top
        .path("data_dir")?
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let secret_file = top.path("secret_file")?;
    let qa_override = match top.get("qa_override") {
        None => None,
        Some((key, node)) => Some(qa_override(key, node)?),
    };
    let export = match top.get("export") {
        None => None,
        Some((key, node)) => Some(export(key, node)?),
    };
    Ok(Config {
        listen,
        tls,
        admin_listen,
        upstreams,
        default_upstream,
        host_header,
        cookie,
        timeouts,
        pool,
        limits,
        data_dir,
        secret_file,
        admin_token_file,
        qa_override,
        export,
        experiments,
    })
}

fn qa_override(key: &Key, node: &Node) -> Result<QaOverride> {
    let f = Fields::new(node, "qa_override", key.pos, &["query_param", "header"])?;
    let query_param = match f.string("query_param")? {
        Some((pos, name)) if names::check_name(&name, names::NameKind::Variant).is_err() => {
            return error(
                pos,
                "qa_override.query_param",
                format!("`{name}` must be 1–64 of A-Z a-z 0-9 _ -, starting with a letter"),
            )
        }
        other => other.map(|(_, name)| name),
    };
    let header = match f.string("header")? {
        None => None,
        Some((pos, name)) => Some(http::HeaderName::from_bytes(name.as_bytes()).or_else(|_| {
            error(
                pos,
                "qa_override.header",
                format!("`{name}` is not a header name"),
            )
        })?),
    };
    if query_param.is_none() && header.is_none() {
        return error(
            key.pos,
            "qa_override",
            "give `query_param`, `header` or both (leave the section out to turn overrides off)",
        );
    }
    Ok(QaOverride {
        query_param,
        header,
    })
}

/// Addresses that can never work: both listeners on one port, or an upstream that is
/// the proxy itself (every request would loop until file descriptors run out).
fn check_addresses(
    top: &Fields,
    listen: SocketAddr,
    admin: SocketAddr,
    upstreams: &[Upstream],
) -> Result<()> {
    if listen == admin && listen.port() != 0 {
        let pos = top.get("admin").map_or(Pos::default(), |(k, _)| k.pos);
        return error(
            pos,
            "admin.listen",
            format!("`{admin}` is also `listen`; use another port"),
        );
    }
    let (_, upstreams_node) = top.get("upstreams").expect("upstreams are present");
    for (addr, what) in [(listen, "listen"), (admin, "admin.listen")] {
        let loops = |u: &Upstream| {
            u.origin.as_str().parse::<SocketAddr>().is_ok_and(|up| {
                up.port() == addr.port() && (up.ip() == addr.ip() || addr.ip().is_unspecified())
            })
        };
        if let Some(u) = upstreams.iter().find(|u| addr.port() != 0 && loops(u)) {
            let pos = match &upstreams_node.value {
                Value::Map(entries) => entries
                    .iter()
                    .find(|(k, _)| k.name == u.name)
                    .map_or(Pos::default(), |(k, _)| k.pos),
                _ => Pos::default(),
            };
            return error(
                pos,
                &format!("upstreams.{}", u.name),
                format!("`{}` is this proxy's own `{what}` address", u.origin),
            );
        }
    }
    Ok(())
}

fn unknown_upstream(name: &str, upstreams: &[Upstream]) -> String {
    let known: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
    format!(
        "unknown upstream `{name}` (defined upstreams: {})",
        if known.is_empty() {
            "none".into()
        } else {
            known.join(", ")
        }
    )
}

/// `limits: { max_connections: 10000, max_header_bytes: 64KiB, max_headers: 100,
/// max_body_bytes: 64KiB }`
fn limits(key: &Key, node: &Node) -> Result<Limits> {
    let d = DEFAULT_LIMITS;
    let f = Fields::new(
        node,
        "limits",
        key.pos,
        &[
            "max_connections",
            "max_header_bytes",
            "max_headers",
            "max_body_bytes",
        ],
    )?;
    Ok(Limits {
        max_connections: f.whole("max_connections", d.max_connections as u64, 1, 1_000_000)?
            as usize,
        // hyper's read buffer cannot be smaller than 8 KiB.
        max_header_bytes: f.size(
            "max_header_bytes",
            d.max_header_bytes as u64,
            8 << 10,
            1 << 20,
        )? as usize,
        max_headers: f.whole("max_headers", d.max_headers as u64, 8, 1000)? as usize,
        max_body_bytes: f.size("max_body_bytes", d.max_body_bytes as u64, 1 << 10, 16 << 20)?
            as usize,
    })
}

/// `export: { dir: …, max_file_size: 64MiB, keep_files: 10 }`
fn export(key: &Key, node: &Node) -> Result<ExportConfig> {
    let f = Fields::new(
        node,
        "export",
        key.pos,
        &["dir", "max_file_size", "keep_files"],
    )?;
    let Some(dir) = f.path("dir")? else {
        return error(
            key.pos,
            "export",
            "missing key `dir` (where the JSON-lines files go)",
        );
    };
    let max_file_size = f.size(
        "max_file_size",
        DEFAULT_EXPORT_FILE_SIZE,
        MIN_EXPORT_FILE_SIZE,
        MAX_EXPORT_FILE_SIZE,
    )?;
    let keep_files = f.whole("keep_files", DEFAULT_EXPORT_KEEP_FILES as u64, 0, 100_000)? as usize;
    Ok(ExportConfig {
        dir,
        max_file_size,
        keep_files,
    })
}

const DEFAULT_EXPORT_FILE_SIZE: u64 = 64 * 1024 * 1024;
const MIN_EXPORT_FILE_SIZE: u64 = 1024;
const MAX_EXPORT_FILE_SIZE: u64 = 4 * 1024 * 1024 * 1024;
const DEFAULT_EXPORT_KEEP_FILES: usize = 10;

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

fn integer(key: &Key, node: &Node, path: &str, min: u64, max: u64) -> Result<u64> {
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
fn named_entries<'a>(top: &Fields<'a>, name: &str, expected: &str) -> Result<&'a [(Key, Node)]> {
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

fn upstreams(top: &Fields) -> Result<Vec<Upstream>> {
    let entries = named_entries(top, "upstreams", "a mapping of name: URL")?;
    let mut upstreams = Vec::with_capacity(entries.len());
    for (key, node) in entries {
        let path = format!("upstreams.{}", key.name);
        if let Err(m) = names::check_name(&key.name, names::NameKind::Upstream) {
            return error(key.pos, &path, m);
        }
        // `name: URL`, or `name: { url: URL, http2: true, ca_file: PATH }`.
        let (url, url_pos, url_path, options) = match &node.value {
            Value::Map(_) => {
                let f = Fields::new(node, &path, key.pos, &["url", "http2", "ca_file"])?;
                let (url_key, url_node) = f.required("url")?;
                let url_path = f.child_path(url_key);
                (
                    scalar(url_key, url_node, &url_path)?,
                    url_key.pos,
                    url_path,
                    Some(f),
                )
            }
            _ => (scalar(key, node, &path)?, key.pos, path.clone(), None),
        };
        let (tls, origin) = parse_origin(url).or_else(|m| error(url_pos, &url_path, m))?;
        let (http2, ca_file) = match &options {
            None => (false, None),
            Some(f) => (f.boolean("http2", false)?, f.path("ca_file")?),
        };
        if ca_file.is_some() && !tls {
            return error(
                key.pos,
                &path,
                "`ca_file` is for https:// upstreams (it says whose certificates to trust)",
            );
        }
        upstreams.push(Upstream {
            name: key.name.clone(),
            origin,
            tls,
            http2,
            ca_file,
        });
    }
    Ok(upstreams)
}

/// `http://host:port` or `https://host:port` (port defaults to 80 or 443): whether it
/// is TLS, and the authority. Paths and query strings are refused rather than silently
/// ignored: the proxy forwards the client's path unchanged.
fn parse_origin(url: &str) -> std::result::Result<(bool, http::uri::Authority), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("`{url}` is not a URL like http://127.0.0.1:9001"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("`{url}` must start with http:// or https://")),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| format!("`{url}` has no host"))?
        .clone();
    if authority.host().is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    // `http` accepts any digits after the colon; an out-of-range port would silently
    // become port 80 in the connector.
    if authority
        .as_str()
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'))
        && !authority.port_u16().is_some_and(|p| p > 0)
    {
        return Err(format!("`{url}` has an invalid port (1–65535)"));
    }
    if authority.as_str().contains('@') {
        return Err(format!(
            "`{url}`: credentials in upstream URLs are not supported"
        ));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "`{url}`: an upstream URL cannot have a path or query; requests keep their own path"
        ));
    }
    Ok((tls, authority))
}

fn cookie(top: &Fields) -> Result<CookieConfig> {
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

fn experiments(top: &Fields, upstreams: &[Upstream]) -> Result<Vec<Experiment>> {
    let entries = named_entries(top, "experiments", "a mapping of key: experiment")?;
    entries
        .iter()
        .map(|(key, node)| experiment(key, node, upstreams))
        .collect()
}

fn experiment(key: &Key, node: &Node, upstreams: &[Upstream]) -> Result<Experiment> {
    let path = format!("experiments.{}", key.name);
    if let Err(m) = names::check_name(&key.name, names::NameKind::Experiment) {
        return error(key.pos, &path, m);
    }
    let f = Fields::new(
        node,
        &path,
        key.pos,
        &[
            "title",
            "state",
            "variants",
            "fallback",
            "control",
            "rollout_variant",
            "upstream_down",
            "match",
            "traffic",
            "target",
            "goals",
        ],
    )?;
    let title = f
        .string("title")?
        .map(|(_, t)| t)
        .unwrap_or_else(|| key.name.clone());
    let (state_key, state_node) = f.required("state")?;
    let state = match scalar(state_key, state_node, &f.child_path(state_key))? {
        "inactive" => State::Inactive,
        "active" => State::Active,
        "rollout" => State::Rollout,
        other => {
            return error(
                state_key.pos,
                &f.child_path(state_key),
                format!("`{other}` is not a state (inactive, active or rollout)"),
            )
        }
    };
    let (variants_key, variants_node) = f.required("variants")?;
    let variants = variants(
        variants_key,
        variants_node,
        &f.child_path(variants_key),
        upstreams,
    )?;

    let variant_named = |field: &str| -> Result<Option<String>> {
        match f.string(field)? {
            None => Ok(None),
            Some((_, name)) if variants.iter().any(|v| v.name == name) => Ok(Some(name)),
            Some((pos, name)) => {
                let known: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
                error(
                    pos,
                    &join(&path, field),
                    format!(
                        "`{name}` is not a variant of {} (variants: {})",
                        key.name,
                        known.join(", ")
                    ),
                )
            }
        }
    };
    let Some(fallback) = variant_named("fallback")? else {
        return error(
            key.pos,
            &path,
            "missing key `fallback` (the variant served when the experiment is inactive)",
        );
    };
    let control = variant_named("control")?.unwrap_or_else(|| fallback.clone());
    let rollout_variant = variant_named("rollout_variant")?;
    if state == State::Rollout && rollout_variant.is_none() {
        return error(
            state_key.pos,
            &f.child_path(state_key),
            "state `rollout` needs `rollout_variant` (the variant everyone gets)",
        );
    }
    let upstream_down = match f.string("upstream_down")? {
        None => UpstreamDown::Fail,
        Some((_, v)) if v == "fail" => UpstreamDown::Fail,
        Some((pos, v)) if v == "fallback" => {
            if !variants.iter().all(|v| v.upstream.is_some()) {
                return error(
                    pos,
                    &join(&path, "upstream_down"),
                    "`fallback` needs a routing experiment (every variant names an upstream)",
                );
            }
            UpstreamDown::Fallback
        }
        Some((pos, v)) => {
            return error(
                pos,
                &join(&path, "upstream_down"),
                format!("`{v}` is not one of: fail, fallback"),
            )
        }
    };
    let matcher = match f.get("match") {
        None => Match::default(),
        Some((mkey, mnode)) => {
            let m = Fields::new(
                mnode,
                &f.child_path(mkey),
                mkey.pos,
                &["path_prefix", "host"],
            )?;
            let path_prefix = match m.string("path_prefix")? {
                Some((pos, p)) if !p.starts_with('/') => {
                    return error(
                        pos,
                        &join(&m.path, "path_prefix"),
                        format!("`{p}` must start with /"),
                    )
                }
                other => other.map(|(_, p)| p),
            };
            let host = match m.string("host")? {
                Some((pos, h)) if !names::is_host_name(&h) => {
                    return error(
                        pos,
                        &join(&m.path, "host"),
                        format!("`{h}` is not a host name (no port, no scheme)"),
                    )
                }
                other => other.map(|(_, h)| h.to_ascii_lowercase()),
            };
            Match { path_prefix, host }
        }
    };
    let traffic_bp = match f.get("traffic") {
        None => 10_000,
        Some((tkey, tnode)) => {
            let tpath = f.child_path(tkey);
            parse_percent(scalar(tkey, tnode, &tpath)?).or_else(|m| error(tkey.pos, &tpath, m))?
        }
    };
    let target = match f.get("target") {
        None => Target::default(),
        Some((tkey, tnode)) => target(tkey, tnode, &f.child_path(tkey))?,
    };
    let goals = match f.get("goals") {
        None => Vec::new(),
        Some((gkey, gnode)) => goals(gkey, gnode, &f.child_path(gkey))?,
    };
    Ok(Experiment {
        key: key.name.clone(),
        title,
        state,
        state_pos: state_key.pos,
        variants,
        fallback,
        control,
        rollout_variant,
        upstream_down,
        matcher,
        traffic_bp,
        target,
        goals,
    })
}

const MAX_GOALS: usize = 16;

fn goals(key: &Key, node: &Node, path: &str) -> Result<Vec<Goal>> {
    let Value::Map(entries) = &node.value else {
        return error(
            key.pos,
            path,
            format!("expected a mapping of name: goal, found {}", node.kind()),
        );
    };
    if entries.len() > MAX_GOALS {
        return error(
            key.pos,
            path,
            format!("at most {MAX_GOALS} goals per experiment"),
        );
    }
    entries
        .iter()
        .map(|(gkey, gnode)| goal(gkey, gnode, &join(path, &gkey.name)))
        .collect()
}

fn goal(key: &Key, node: &Node, path: &str) -> Result<Goal> {
    if let Err(m) = names::check_name(&key.name, names::NameKind::Variant) {
        return error(key.pos, path, m.replace("variant name", "goal name"));
    }
    let f = Fields::new(
        node,
        path,
        key.pos,
        &["event", "params", "request", "value"],
    )?;
    let trigger = match (f.get("event"), f.get("request")) {
        (Some((ekey, enode)), None) => {
            let epath = f.child_path(ekey);
            let name = scalar(ekey, enode, &epath)?.to_string();
            if let Err(m) = names::check_name(&name, names::NameKind::Variant) {
                return error(ekey.pos, &epath, m.replace("variant name", "event name"));
            }
            let params = match f.get("params") {
                None => Vec::new(),
                Some((pk, pn)) => string_map(pk, pn, &f.child_path(pk))?
                    .into_iter()
                    .map(|(k, v)| (k.name.clone(), v))
                    .collect(),
            };
            Trigger::Event { name, params }
        }
        (None, Some((rkey, rnode))) => {
            if let Some((pk, _)) = f.get("params") {
                return error(
                    pk.pos,
                    &f.child_path(pk),
                    "`params` goes with `event`, not `request`",
                );
            }
            let rpath = f.child_path(rkey);
            let r = Fields::new(
                rnode,
                &rpath,
                rkey.pos,
                &["method", "path_prefix", "status"],
            )?;
            let method = match r.string("method")? {
                None => None,
                Some((pos, m)) => Some(
                    http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).or_else(|_| {
                        error(
                            pos,
                            &join(&rpath, "method"),
                            format!("`{m}` is not an HTTP method"),
                        )
                    })?,
                ),
            };
            let path_prefix = match r.string("path_prefix")? {
                Some((pos, p)) if !p.starts_with('/') => {
                    return error(
                        pos,
                        &join(&rpath, "path_prefix"),
                        format!("`{p}` must start with /"),
                    )
                }
                other => other.map(|(_, p)| p),
            };
            let status_class = match r.string("status")? {
                None => None,
                Some((pos, s)) => match s.as_str() {
                    "1xx" | "2xx" | "3xx" | "4xx" | "5xx" => Some((s.as_bytes()[0] - b'0') as u16),
                    _ => {
                        return error(
                            pos,
                            &join(&rpath, "status"),
                            format!("`{s}` is not a status class (2xx, 3xx, 4xx or 5xx)"),
                        )
                    }
                },
            };
            Trigger::Request {
                method,
                path_prefix,
                status_class,
            }
        }
        (Some((ekey, _)), Some(_)) => {
            return error(ekey.pos, path, "a goal has `event` or `request`, not both")
        }
        (None, None) => {
            return error(
                key.pos,
                path,
                "a goal needs `event: NAME` or `request: {method, path_prefix, status}`",
            )
        }
    };
    let value = match f.get("value") {
        None => None,
        Some((vkey, vnode)) => {
            let vpath = f.child_path(vkey);
            let v = Fields::new(vnode, &vpath, vkey.pos, &["param", "header"])?;
            match (v.string("param")?, v.string("header")?, &trigger) {
                (Some((_, param)), None, Trigger::Event { .. }) => Some(ValueSource::Param(param)),
                (None, Some((pos, header)), Trigger::Request { .. }) => Some(ValueSource::Header(
                    http::HeaderName::from_bytes(header.as_bytes())
                        .or_else(|_| error(pos, &join(&vpath, "header"), format!("`{header}` is not a header name")))?,
                )),
                _ => return error(vkey.pos, &vpath, "an event goal takes `value: {param: NAME}`, a request goal `value: {header: NAME}`"),
            }
        }
    };
    Ok(Goal {
        name: key.name.clone(),
        trigger,
        value,
    })
}

/// `10`, `12.5`, `0.25` percent → basis points (0–10 000).
fn parse_percent(text: &str) -> std::result::Result<u32, String> {
    let bad = || format!("`{text}` is not a percentage from 0 to 100 with at most two decimals");
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || frac.len() > 2
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: u32 = whole.parse().map_err(|_| bad())?;
    let frac: u32 = format!("{frac:0<2}").parse().map_err(|_| bad())?;
    let bp = whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(bad)?;
    if bp > 10_000 {
        return Err(bad());
    }
    Ok(bp)
}

fn target(key: &Key, node: &Node, path: &str) -> Result<Target> {
    let f = Fields::new(
        node,
        path,
        key.pos,
        &[
            "device",
            "headers",
            "header_matches",
            "cookies",
            "cookies_present",
            "query",
        ],
    )?;
    let mut t = Target::default();
    if let Some((k, n)) = f.get("device") {
        for (pos, class) in string_list(k, n, &f.child_path(k))? {
            t.devices.push(match class.as_str() {
                "mobile" => DeviceClass::Mobile,
                "desktop" => DeviceClass::Desktop,
                "bot" => {
                    return error(
                        pos,
                        &f.child_path(k),
                        "bots are never part of an experiment (they get the fallback)",
                    )
                }
                other => {
                    return error(
                        pos,
                        &f.child_path(k),
                        format!("`{other}` is not a device class (mobile or desktop)"),
                    )
                }
            });
        }
    }
    let header_name = |k: &Key, path: &str| {
        http::HeaderName::from_bytes(k.name.as_bytes())
            .or_else(|_| error(k.pos, path, format!("`{}` is not a header name", k.name)))
    };
    if let Some((k, n)) = f.get("headers") {
        for (hk, value) in string_map(k, n, &f.child_path(k))? {
            let hpath = join(&f.child_path(k), &hk.name);
            t.headers.push((header_name(hk, &hpath)?, value));
        }
    }
    if let Some((k, n)) = f.get("header_matches") {
        for (hk, value) in string_map(k, n, &f.child_path(k))? {
            let hpath = join(&f.child_path(k), &hk.name);
            let pattern = regex::Regex::new(&value)
                .or_else(|e| error(hk.pos, &hpath, format!("not a valid regex: {e}")))?;
            t.header_matches
                .push((header_name(hk, &hpath)?, Pattern(pattern)));
        }
    }
    if let Some((k, n)) = f.get("cookies") {
        t.cookies = string_map(k, n, &f.child_path(k))?
            .into_iter()
            .map(|(ck, v)| (ck.name.clone(), v))
            .collect();
    }
    if let Some((k, n)) = f.get("cookies_present") {
        t.cookies_present = string_list(k, n, &f.child_path(k))?
            .into_iter()
            .map(|(_, v)| v)
            .collect();
    }
    if let Some((k, n)) = f.get("query") {
        t.query = string_map(k, n, &f.child_path(k))?
            .into_iter()
            .map(|(qk, v)| (qk.name.clone(), v))
            .collect();
    }
    Ok(t)
}

/// A mapping of name → text value.
fn string_map<'a>(key: &Key, node: &'a Node, path: &str) -> Result<Vec<(&'a Key, String)>> {
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
fn string_list(key: &Key, node: &Node, path: &str) -> Result<Vec<(Pos, String)>> {
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

fn variants(key: &Key, node: &Node, path: &str, upstreams: &[Upstream]) -> Result<Vec<Variant>> {
    let Value::Map(entries) = &node.value else {
        return error(
            key.pos,
            path,
            format!(
                "expected a mapping of name: {{weight, upstream}}, found {}",
                node.kind()
            ),
        );
    };
    if entries.is_empty() {
        return error(key.pos, path, "an experiment needs at least one variant");
    }
    if entries.len() > MAX_VARIANTS {
        return error(key.pos, path, format!("at most {MAX_VARIANTS} variants"));
    }
    let mut variants = Vec::with_capacity(entries.len());
    for (vkey, vnode) in entries {
        let vpath = join(path, &vkey.name);
        if let Err(m) = names::check_name(&vkey.name, names::NameKind::Variant) {
            return error(vkey.pos, &vpath, m);
        }
        let f = Fields::new(vnode, &vpath, vkey.pos, &["weight", "upstream"])?;
        let (wkey, wnode) = f.required("weight")?;
        let weight = integer(wkey, wnode, &f.child_path(wkey), 0, MAX_WEIGHT as u64)? as u32;
        let upstream = match f.string("upstream")? {
            None => None,
            Some((pos, name)) if !upstreams.iter().any(|u| u.name == name) => {
                return error(
                    pos,
                    &join(&vpath, "upstream"),
                    unknown_upstream(&name, upstreams),
                )
            }
            Some((_, name)) => Some(name),
        };
        variants.push((
            vkey.pos,
            Variant {
                name: vkey.name.clone(),
                weight,
                upstream,
            },
        ));
    }
    if variants.iter().map(|(_, v)| v.weight as u64).sum::<u64>() == 0 {
        return error(
            key.pos,
            path,
            "the weights sum to 0; at least one variant needs a positive weight",
        );
    }
    // A half-routing experiment would send some visitors nowhere.
    let routing = variants.iter().any(|(_, v)| v.upstream.is_some());
    if routing {
        if let Some((pos, v)) = variants.iter().find(|(_, v)| v.upstream.is_none()) {
            return error(
                *pos,
                &join(path, &v.name),
                "missing `upstream`: in a routing experiment every variant names an upstream (or none does, for a tag-only experiment)",
            );
        }
    }
    Ok(variants.into_iter().map(|(_, v)| v).collect())
}
