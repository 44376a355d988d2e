//! The experiment config: one YAML file, parsed into a position-carrying tree
//! ([`yaml`]), then validated into the typed [`Config`] (`parse`).
//!
//! The same path runs at start-up, on every hot reload and in `abproxy check`, so a file
//! that `check` accepts is exactly a file the proxy accepts.

pub mod edit;
pub mod names;
mod parse;
/// A duration as it is written in the file (`1s`, `1500ms`, `1h`, `7d`), for messages and the page.
pub(crate) use parse::fields::show_duration;
pub mod target;
pub mod yaml;

use std::fmt;
// Addresses are plain data here (`core::net`): the config opens no socket.
use core::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use yaml::Pos;

/// A validated config. Every cross-reference (fallback → variant, variant → upstream)
/// has been checked; names are known to be valid metric labels and header tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    /// TLS on `listen` (off unless configured; turning it on or off needs a restart).
    pub tls: Option<TlsConfig>,
    pub admin_listen: SocketAddr,
    /// In file order.
    pub upstreams: Vec<Upstream>,
    /// Where a request goes when no routing experiment applies to it.
    pub default_upstream: Option<String>,
    pub host_header: HostPolicy,
    pub cookie: CookieConfig,
    pub timeouts: Timeouts,
    pub pool: PoolConfig,
    pub limits: Limits,
    /// Run records and the generated secret live here (relative to the working directory).
    pub data_dir: PathBuf,
    /// Key for the signed assignment cookie (`ABPROXY_SECRET` takes precedence).
    pub secret_file: Option<PathBuf>,
    /// Bearer token of the admin API (`ABPROXY_ADMIN_TOKEN` takes precedence).
    pub admin_token_file: Option<PathBuf>,
    /// QA overrides, off unless configured.
    pub qa_override: Option<QaOverride>,
    /// The JSON-lines export of every exposure, assignment and conversion (off unless
    /// configured; fixed at start-up, like `data_dir`).
    pub export: Option<ExportConfig>,
    /// The Prometheus server bandits with `counts: prometheus` read (off unless configured).
    pub prometheus: Option<PrometheusSource>,
    /// Where automated decisions are sent (off unless configured; without it a decision
    /// is still recorded and logged).
    pub notify: Option<Notify>,
    /// In file order: the first routing experiment that applies picks the upstream, and
    /// `X-AB-Assignments` lists experiments in this order.
    pub experiments: Vec<Experiment>,
}

/// PEM files of the proxy listener's certificate chain and private key (relative to the
/// working directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportConfig {
    /// `events.jsonl` and the rotated `events-<unix ms>.jsonl` go here.
    pub dir: PathBuf,
    /// Rotate once the current file is past this many bytes.
    pub max_file_size: u64,
    /// Rotated files kept (the oldest are removed); 0 keeps them all.
    pub keep_files: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub name: String,
    /// `host[:port]` of the URL, without a path.
    pub origin: http::uri::Authority,
    /// `https://`: TLS to the upstream, SNI and verification by the URL's host.
    pub tls: bool,
    /// HTTP/2 to the upstream: over TLS by ALPN `h2`, else cleartext with prior
    /// knowledge (h2c).
    pub http2: bool,
    /// PEM CA certificates trusted for this upstream instead of the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl Upstream {
    /// The port connected to: the URL's, else the scheme's default.
    pub fn port(&self) -> u16 {
        self.origin
            .port_u16()
            .unwrap_or(if self.tls { 443 } else { 80 })
    }
}

/// What `Host` header the upstream receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPolicy {
    /// The client's `Host`, unchanged (the upstream sees the public name, as behind
    /// Envoy); the upstream's own `host:port` when the client sent none (HTTP/1.0).
    Client,
    /// Always the upstream's `host:port` (as nginx's default `proxy_set_header Host
    /// $proxy_host`), for upstreams that serve several virtual hosts.
    Upstream,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConfig {
    pub name: String,
    /// The signed cookie that carries the device's sticky assignments.
    pub assignments_name: String,
    pub max_age: Duration,
    pub domain: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect to an upstream; past it the request gets 504.
    pub connect: Duration,
    /// From sending the request to receiving the upstream's response head; past it 504.
    pub upstream_response: Duration,
    /// A client must send its whole request head within this (slow-loris defence).
    pub header_read: Duration,
    /// A client sending a request body must send its next bytes within this; past it the
    /// request gets 408 (the client's fault, never counted against the upstream).
    pub request_body_idle: Duration,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Idle keep-alive connections kept per upstream.
    pub max_idle_per_host: usize,
    /// An idle upstream connection is closed after this.
    pub idle_timeout: Duration,
}

/// A routing experiment's policy for a variant whose upstream cannot be reached
/// (connection refused or connect timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamDown {
    /// `502`/`504`: the visitor is never silently moved to another variant.
    #[default]
    Fail,
    /// Serve the fallback variant's upstream (requests without a body only), counted in
    /// `abproxy_fallback_served_total` so the analysis can leave that traffic out.
    Fallback,
}

/// What one client may ask of the proxy. A reload applies them to new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Client connections open at once (proxy listener); past it a new connection gets 503.
    pub max_connections: usize,
    /// Request line and header fields together; past it 431.
    pub max_header_bytes: usize,
    /// Header fields in one request; past it 431.
    pub max_headers: usize,
    /// Bodies abproxy reads itself (`POST /_ab/events`, admin API writes); past it 413.
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    pub key: String,
    pub title: String,
    pub state: State,
    /// Where `state:` is in the file, for refused-transition errors.
    pub state_pos: Pos,
    /// In file order (the hash walks them sorted by name; see `assign`).
    pub variants: Vec<Variant>,
    pub fallback: String,
    /// What the other variants are compared with in the analysis (default: the fallback).
    pub control: String,
    pub rollout_variant: Option<String>,
    /// What a request gets when its variant's upstream cannot be reached.
    pub upstream_down: UpstreamDown,
    pub matcher: Match,
    /// Share of devices enrolled, in basis points (10 000 = 100 %).
    pub traffic_bp: u32,
    /// Who the experiment is for; others get the fallback, uncounted.
    pub target: target::Target,
    /// What counts as a conversion, in file order.
    pub goals: Vec<Goal>,
    /// A bandit that sets the weights of new devices (the `weights` above are then the
    /// burn-in weights, and the admin API refuses to change them).
    pub bandit: Option<Bandit>,
    /// Automated decisions: promote a winner, roll back or pause on a guardrail, stop at
    /// a timeout (off unless configured).
    pub decide: Option<Decide>,
}

/// `experiments.<key>.bandit`: the rule that moves new devices toward the best variant.
#[derive(Debug, Clone, PartialEq)]
pub struct Bandit {
    pub algorithm: BanditAlgorithm,
    /// The reward: a device of the run converted on this goal (one of the experiment's).
    pub goal: String,
    /// At least 1 s; updates happen at Unix-epoch multiples of it.
    pub update_every: Duration,
    /// Devices per variant in the run before the first update.
    pub burn_in: u64,
    /// Every variant keeps at least this share of new devices (0 ≤ f, K·f < 1).
    pub min_share: f64,
    pub counts: BanditCounts,
    /// Where `bandit:` is in the file.
    pub pos: Pos,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BanditAlgorithm {
    Thompson,
    Ucb1,
    /// `epsilon` in [0, 1].
    EpsilonGreedy {
        epsilon: f64,
    },
}

/// Whose counts a bandit reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanditCounts {
    /// This process's count book.
    Local,
    /// Every replica's, summed by the top-level `prometheus` server.
    Prometheus,
}

impl BanditCounts {
    /// The word the file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            BanditCounts::Local => "local",
            BanditCounts::Prometheus => "prometheus",
        }
    }
}

/// Top-level `prometheus`: the server that scrapes every replica, read by bandits with
/// `counts: prometheus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusSource {
    /// `http://host:port` (a path prefix is allowed: `http://host/prometheus`).
    pub url: http::Uri,
    /// How long after a boundary the counts are read, so that every replica's scrape
    /// up to the boundary has reached the server.
    pub settle: Duration,
}

/// `experiments.<key>.decide`: when and on what the experiment's automated decisions are
/// made (the rule is `experiments::decide`).
#[derive(Debug, Clone, PartialEq)]
pub struct Decide {
    pub mode: Mode,
    /// At least 1 s; evaluations happen at Unix-epoch multiples of it.
    pub every: Duration,
    /// No promotion before the run is this old.
    pub min_duration: Duration,
    /// Devices every variant needs before a promotion or a timeout decision.
    pub min_devices: u64,
    /// Past this age the run ends by `on_timeout`; at least `min_duration` and longer
    /// than `every`.
    pub max_duration: Option<Duration>,
    pub on_timeout: OnTimeout,
    /// Whose counts the evaluation reads (as a bandit's).
    pub counts: BanditCounts,
    pub promote: Promote,
    pub guardrails: Guardrails,
    /// Where `decide:` is in the file.
    pub pos: Pos,
}

/// Whether a decision is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Record and notify, change nothing.
    Notify,
    /// Record, notify and apply.
    Act,
}

impl Mode {
    /// The word the file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Notify => "notify",
            Mode::Act => "act",
        }
    }
}

/// How a run that reached `max_duration` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTimeout {
    /// To `inactive`.
    Stop,
    /// Roll out the variant with the best rate on the promote goal (the control if none
    /// beats it).
    RolloutBest,
    /// Leave the experiment as it is (the decision is still recorded and notified).
    Keep,
}

impl OnTimeout {
    /// The word the file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            OnTimeout::Stop => "stop",
            OnTimeout::RolloutBest => "rollout_best",
            OnTimeout::Keep => "keep",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Promote {
    /// One of the experiment's goals.
    pub goal: String,
    /// Strictly between 0 and 1; a variant is promoted when its always-valid p-value is
    /// below 1 − `confidence`.
    pub confidence: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Guardrails {
    pub action: GuardrailAction,
    /// `None`: that guardrail is not checked.
    pub errors: Option<Guardrail>,
    pub latency_p95: Option<Guardrail>,
    /// Freeze the experiment on a sample-ratio mismatch.
    pub srm: bool,
}

/// What a guardrail's streak of breaches does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardrailAction {
    /// Roll out the control.
    Rollback,
    /// Set the breaching variant's weight to 0 (refused with a bandit, which owns the
    /// weights).
    Pause,
}

impl GuardrailAction {
    /// The word the file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            GuardrailAction::Rollback => "rollback",
            GuardrailAction::Pause => "pause",
        }
    }
}

/// A variant's figure against the control's in each evaluation window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guardrail {
    /// Above 1: a breach is the variant's figure above this × the control's.
    pub max_ratio: f64,
    /// At least 1: requests both sides need in a window for it to count.
    pub min_requests: u64,
    /// At least 1: consecutive breaches before `action`.
    pub failures: u32,
}

/// Top-level `notify`: where each automated decision is posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// `http://` or `https://` URL with a host, as written.
    pub webhook: String,
    /// A key that signs each body (relative to the working directory, like
    /// `secret_file`; read by the notifier, not here).
    pub secret_file: Option<PathBuf>,
}

/// A goal: reached by a client event or by a proxied request, at most once per device
/// and run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goal {
    /// 1–64 of `A-Z a-z 0-9 _ -` (a metric label value and a cookie token).
    pub name: String,
    pub trigger: Trigger,
    /// Where a revenue-like value comes from, if the goal has one.
    pub value: Option<ValueSource>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// `POST /_ab/events` with this event name, and these params equal (as text).
    Event {
        name: String,
        params: Vec<(String, String)>,
    },
    /// A proxied request matching all that is given.
    Request {
        method: Option<http::Method>,
        path_prefix: Option<String>,
        status_class: Option<u16>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueSource {
    /// A numeric event parameter.
    Param(String),
    /// A numeric upstream response header.
    Header(http::HeaderName),
}

/// Forcing a variant for QA: `?ab_force=moon_mars=Mars` (remembered by a session cookie)
/// or a header on each request. Off unless configured; forced requests are never counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QaOverride {
    pub query_param: Option<String>,
    pub header: Option<http::HeaderName>,
}

impl Experiment {
    /// A routing experiment's variants name upstreams; a tag-only experiment's do not.
    pub fn is_routing(&self) -> bool {
        self.variants.iter().any(|v| v.upstream.is_some())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub name: String,
    pub weight: u32,
    pub upstream: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Inactive,
    Active,
    Rollout,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Inactive => "inactive",
            State::Active => "active",
            State::Rollout => "rollout",
        }
    }
}

/// Which requests an experiment applies to. Empty = every request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Match {
    pub path_prefix: Option<String>,
    /// Lower-case host name, compared with the request's host without its port.
    pub host: Option<String>,
}

/// A config error, displayed as `PATH:LINE:COL: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub path: PathBuf,
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pos.line == 0 {
            // Not about a place in the text (the file could not be read at all).
            return write!(f, "{}: {}", self.path.display(), self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.pos.line,
            self.pos.col,
            self.message
        )
    }
}

impl Config {
    /// Parse and validate config text; `path` only names the source in messages.
    pub fn from_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let at = |pos: Pos, message: String| ConfigError {
            path: path.to_path_buf(),
            pos,
            message,
        };
        let tree = yaml::parse(text).map_err(|e| at(e.pos, e.message))?;
        parse::config(&tree).map_err(|e| at(e.pos, e.message))
    }

    pub fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.upstreams.iter().find(|u| u.name == name)
    }
}

#[cfg(test)]
mod bandit_tests;
#[cfg(test)]
mod decide_tests;
#[cfg(test)]
mod tests;
