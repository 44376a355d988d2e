//! abproxy's integration tests: one binary (one link step), one module per capability.
//! Every test starts its own mock upstreams and proxy on 127.0.0.1:0.
//!
//! - `admin`: the admin API and page: auth, PATCH through the YAML file, sessions, CSRF.
//! - `analyze`: `abproxy analyze --counts` and `abproxy plan`.
//! - `assignment`: the golden-vector hash through the proxy, weight splits, stickiness.
//! - `bandit`: a Thompson bandit through the real binary and `simulate`: shares move to
//!   the best, pins hold, a restart keeps the periods; a weight change starts a period.
//! - `bandit_replicas`: replicas of the binary and a real Prometheus: bandit periods agree,
//!   shares kept without Prometheus; the bandit's PromQL in promtool (`query`).
//! - `decision_replicas`: replicas of the binary and a real Prometheus: both record the
//!   same automated decision (same boundary, id and figures), the webhook gets one id
//!   twice, a replica stopped over the streak catches up to it.
//! - `decisions`: automated decisions through the binary: rollback, notify mode, a
//!   promotion, a timeout, client faults, Prometheus down, a failed write, a human change.
//! - `durability`: the counts log: graceful stop, kill -9, a million records, damage.
//! - `events`: POST /_ab/events and conversions (once per device, goal, run; replicas).
//! - `experiments`: stickiness, runs and transitions, traffic, targeting, overrides, /_ab/.
//! - `faults`: misbehaving upstreams: the answer, the count by kind, no leaks.
//! - `forwarding`: headers added, stripped and kept; Host policy; bodies; 502/504.
//! - `fuzz_corpus`: the fuzz targets' kept inputs through the same property checks.
//! - `injection`: CR/LF/NUL from any client byte never reaches a header abproxy writes.
//! - `layout`: the source tree's layers: imports only go down, no circle, pure stays pure.
//! - `limits`: every limit and timeout exceeded, with others still served.
//! - `metrics`: the Prometheus series and their counts.
//! - `results`: results from live counts: the admin API, `analyze --admin`, and
//!   `analyze --prometheus` against a real Prometheus scraping two replicas.
//! - `simulate`: `abproxy simulate` against a running proxy: the demo's report, the real
//!   weights, `--click-probs` checked, pages under a path prefix, a timed run at a rate.
//! - `tls`: TLS termination, HTTP/2 clients, trailers, certificate rotation under load.
//! - `upstreams`: https:// upstreams verified against a CA file, h2 over TLS, h2c.
//! - `variant_upstream`: the per-variant upstream series the guardrails read (5xx, no
//!   answer, fallback retries and client faults left out) and their PromQL in promtool.
//! - `websocket`: an echo through the proxy, assigned and cookied, surviving a reload.
//! - `protocol`: raw-socket client rules: own HTTP version, CONNECT, Host, codings,
//!   malformed and stalled request bodies, X-Forwarded-For entries.
//! - `packaging`: the Dockerfile, the build context, compose.yaml and Prometheus, without
//!   a Docker engine (the configs they run checked by the real binary).
//! - `reload`: hot reload by in-place write, rename, symlink swap; broken files; load.
//! - `browser`: the admin page in headless Chromium (skipped without it, except in CI).
//! - `cli`: the binary: `check` messages, SIGTERM drain, SIGHUP, `demo`, `healthcheck`,
//!   a help line for every option.

mod support;

mod admin;
mod analyze;
mod assignment;
mod bandit;
mod bandit_replicas;
mod browser;
mod cli;
mod decision_replicas;
mod decisions;
mod durability;
mod events;
mod experiments;
mod faults;
mod forwarding;
mod fuzz_corpus;
mod injection;
mod layout;
mod limits;
mod metrics;
mod packaging;
mod protocol;
mod reload;
mod results;
mod simulate;
mod tls;
mod upstreams;
mod variant_upstream;
mod websocket;
