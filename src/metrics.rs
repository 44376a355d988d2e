//! Every metric abproxy exports, named in one place, in a registry the proxy owns (the
//! prometheus crate's global registry is shared process-wide; tests run several proxies
//! in one process).
//!
//! Labels only ever take values from the config (experiment, variant, upstream names,
//! validated by `names`) or a fixed set (code classes, reload results): never a device
//! id, a path or a header value. The request path uses handles resolved when a config
//! snapshot is built, so counting is an atomic add with no label lookup.
//!
//! The experiment counts (exposures, assignments, conversions, value sums) are not
//! prometheus counters: they live in the `counts::CountBook`, durable in the data
//! directory, and are rendered from it at scrape time for each experiment's last run.
//! A restarted replica therefore goes on from the counts it had.
//!
//! Per run, on purpose: a run's assignments are its analysis population (a device
//! assigned in run 1 is not new in run 2), so summing runs would mix populations. A new
//! run starts them again from 0, which Prometheus reads as a counter reset (`rate()` and
//! `increase()` stay right); `abproxy_experiment_run` says which run they are for. An
//! earlier run stays in Prometheus's history and in the results API (`?run=N`).

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

pub use crate::client_request::ClientErrorKind;
use crate::config::Config;
use crate::snapshot::Snapshot;

pub const EXPOSURES: &str = "abproxy_exposures_total";
pub const ASSIGNMENTS: &str = "abproxy_assignments_total";
pub const UPSTREAM_RESPONSES: &str = "abproxy_upstream_responses_total";
pub const UPSTREAM_DURATION: &str = "abproxy_upstream_duration_seconds";
pub const VARIANT_WEIGHT: &str = "abproxy_variant_weight";
pub const CONFIG_RELOADS: &str = "abproxy_config_reloads_total";
pub const CONVERSIONS: &str = "abproxy_conversions_total";
pub const CONVERSION_VALUE_SUM: &str = "abproxy_conversion_value_sum";
pub const CONVERSION_VALUE_SUM_SQUARES: &str = "abproxy_conversion_value_sum_squares";
pub const EVENTS_RECEIVED: &str = "abproxy_events_received_total";
pub const EVENTS_UNMATCHED: &str = "abproxy_events_unmatched_total";
pub const ASSIGNMENT_COOKIE_REJECTED: &str = "abproxy_assignment_cookie_rejected_total";
pub const CONFIG_LAST_RELOAD_SUCCESS: &str = "abproxy_config_last_reload_success_timestamp_seconds";
pub const EXPERIMENT_RUN: &str = "abproxy_experiment_run";
pub const EXPORT_DROPPED: &str = "abproxy_export_dropped_total";
pub const UPSTREAM_ERRORS: &str = "abproxy_upstream_errors_total";
pub const FALLBACK_SERVED: &str = "abproxy_fallback_served_total";
pub const TUNNELS_OPEN: &str = "abproxy_tunnels_open";
pub const CONNECTIONS_OPEN: &str = "abproxy_connections_open";
pub const CONNECTIONS_REJECTED: &str = "abproxy_connections_rejected_total";
pub const CLIENT_ERRORS: &str = "abproxy_client_errors_total";

/// The `code_class` label values, indexed by [`code_class_index`].
pub const CODE_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];
pub const CODE_CLASS_ERROR: usize = 5;

/// Upstream latency buckets (seconds): sub-millisecond resolution for a loopback
/// upstream, up to the default 30 s response timeout.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

pub struct Metrics {
    registry: Registry,
    pub upstream_responses: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub fallback_served: IntCounterVec,
    pub upstream_duration: HistogramVec,
    pub variant_weight: IntGaugeVec,
    pub config_reloads: IntCounterVec,
    pub config_last_reload_success: Gauge,
    pub assignment_cookie_rejected: IntCounterVec,
    pub events_received: IntCounter,
    pub events_unmatched: IntCounter,
    pub export_dropped: IntCounter,
    /// Also the admission count that `limits.max_connections` is checked against.
    pub connections_open: IntGauge,
    pub connections_rejected: IntCounter,
    pub tunnels_open: IntGauge,
    /// `abproxy_client_errors_total`, indexed by [`ClientErrorKind`].
    pub client_errors: [IntCounter; ClientErrorKind::LABELS.len()],
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            int_counter_vec(&registry, name, help, labels)
        };
        let upstream_responses = counter(
            UPSTREAM_RESPONSES,
            "Upstream responses by status class; `error` when no response came (refused, reset, timeout).",
            &["upstream", "code_class"],
        );
        let upstream_errors = counter(
            UPSTREAM_ERRORS,
            "Upstream failures by kind: refused, timeout, reset (closed before a response), protocol (not valid HTTP), body (cut mid-body).",
            &["upstream", "kind"],
        );
        let fallback_served = counter(
            FALLBACK_SERVED,
            "Requests of a variant whose upstream was down, served by the fallback variant's upstream (upstream_down: fallback).",
            &["experiment", "variant"],
        );
        let plain = |name: &str, help: &str| {
            registered(
                &registry,
                IntCounter::new(name, help).expect("valid metric definition"),
            )
        };
        let events_received = plain(EVENTS_RECEIVED, "Events accepted by POST /_ab/events.");
        let events_unmatched = plain(
            EVENTS_UNMATCHED,
            "Accepted events whose name no goal uses (names are never labels).",
        );
        let export_dropped = plain(
            EXPORT_DROPPED,
            "Export lines dropped because the export writer fell behind (the counts are unaffected).",
        );
        let connections_rejected = plain(
            CONNECTIONS_REJECTED,
            "Client connections answered 503 and closed because limits.max_connections were open.",
        );
        let connections_open = registered(
            &registry,
            IntGauge::new(
                CONNECTIONS_OPEN,
                "Client connections open on the proxy listener (rejected ones included while they last).",
            )
            .expect("valid gauge"),
        );
        let tunnels_open = registered(
            &registry,
            IntGauge::new(
                TUNNELS_OPEN,
                "Upgraded connections (WebSockets) being relayed between a client and an upstream.",
            )
            .expect("valid gauge"),
        );
        let assignment_cookie_rejected = counter(
            ASSIGNMENT_COOKIE_REJECTED,
            "Assignment cookies ignored (device re-assigned by hash): malformed, or a bad signature (tampered, another device's, another secret).",
            &["reason"],
        );
        for reason in crate::sticky::Rejected::LABELS {
            assignment_cookie_rejected.with_label_values(&[reason]);
        }
        let config_reloads = counter(
            CONFIG_RELOADS,
            "Config reload attempts by result.",
            &["result"],
        );
        let upstream_duration = registered(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    UPSTREAM_DURATION,
                    "Time from sending a request upstream to its response head.",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                &["upstream"],
            )
            .expect("valid histogram definition"),
        );
        let variant_weight = registered(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    VARIANT_WEIGHT,
                    "The weight of each variant in the config in force.",
                ),
                &["experiment", "variant"],
            )
            .expect("valid gauge definition"),
        );
        let config_last_reload_success = registered(
            &registry,
            Gauge::new(
                CONFIG_LAST_RELOAD_SUCCESS,
                "Unix time of the last successful config load.",
            )
            .expect("valid gauge"),
        );
        let client_errors_vec = counter(
            CLIENT_ERRORS,
            "Requests refused for the client's own fault, by kind: host (missing, repeated or invalid Host), method (CONNECT), transfer_coding (a request coding other than chunked), body (malformed or aborted request body), body_timeout (request body stalled). Never counted against an upstream.",
            &["kind"],
        );
        let client_errors =
            ClientErrorKind::LABELS.map(|kind| client_errors_vec.with_label_values(&[kind]));
        // Both results exist from the start, so a dashboard's rate() has a zero to start from.
        for result in ["success", "failure"] {
            config_reloads.with_label_values(&[result]);
        }
        Metrics {
            registry,
            upstream_responses,
            upstream_errors,
            fallback_served,
            upstream_duration,
            variant_weight,
            config_reloads,
            config_last_reload_success,
            assignment_cookie_rejected,
            events_received,
            events_unmatched,
            export_dropped,
            connections_open,
            connections_rejected,
            tunnels_open,
            client_errors,
        }
    }

    /// The Prometheus text exposition of every metric, with the experiment counts of
    /// `snapshot`'s experiments, from the data directory whose id is `replica`.
    pub fn render(&self, snapshot: &Snapshot, replica: &str) -> Vec<u8> {
        let mut families = self.registry.gather();
        families.extend(count_families(snapshot, replica));
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::with_capacity(8 * 1024);
        TextEncoder::new()
            .encode(&families, &mut out)
            .expect("text encoding to a Vec cannot fail");
        out
    }

    /// Publish the weights of `config`, and drop the series of experiments or variants
    /// that are gone (set first, remove after, so a scrape never sees a gap).
    pub fn publish_weights(&self, config: &Config, previous: Option<&Config>) {
        for e in &config.experiments {
            for v in &e.variants {
                self.variant_weight
                    .with_label_values(&[e.key.as_str(), v.name.as_str()])
                    .set(v.weight as i64);
            }
        }
        let Some(previous) = previous else { return };
        for e in &previous.experiments {
            for v in &e.variants {
                let still_there = config
                    .experiments
                    .iter()
                    .any(|n| n.key == e.key && n.variants.iter().any(|nv| nv.name == v.name));
                if !still_there {
                    let _ = self
                        .variant_weight
                        .remove_label_values(&[e.key.as_str(), v.name.as_str()]);
                }
            }
        }
    }

    pub fn record_reload(&self, success: bool) {
        self.config_reloads
            .with_label_values(&[if success { "success" } else { "failure" }])
            .inc();
        if success {
            self.mark_loaded();
        }
    }

    /// Stamp the time of a successful load (start-up or reload).
    pub fn mark_loaded(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.config_last_reload_success.set(now.as_secs_f64());
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Index into [`CODE_CLASSES`] for an HTTP status.
pub fn code_class_index(status: http::StatusCode) -> usize {
    match status.as_u16() {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// Pre-resolved counters of one upstream.
#[derive(Clone)]
pub struct UpstreamMetrics {
    pub responses: [IntCounter; CODE_CLASSES.len()],
    /// Indexed by [`UpstreamErrorKind`].
    pub errors: [IntCounter; UpstreamErrorKind::LABELS.len()],
    pub duration: prometheus::Histogram,
}

/// The `kind` label of `abproxy_upstream_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// Connection refused or the host unreachable.
    Refused = 0,
    /// Connect or response timeout.
    Timeout = 1,
    /// The connection closed or was reset before a response head.
    Reset = 2,
    /// What came back was not a response abproxy can pass on.
    Protocol = 3,
    /// The response started, and its body was cut off.
    Body = 4,
}

impl UpstreamErrorKind {
    pub const LABELS: [&'static str; 5] = ["refused", "timeout", "reset", "protocol", "body"];
}

impl UpstreamMetrics {
    /// Count `err` in `abproxy_upstream_errors_total` by its kind (see
    /// `ProxyError::upstream_error_kind`, the one place that maps errors to kinds).
    pub fn count_error(&self, err: &crate::error::ProxyError) {
        if let Some(kind) = err.upstream_error_kind() {
            self.errors[kind as usize].inc();
        }
    }

    pub fn new(metrics: &Metrics, upstream: &str) -> UpstreamMetrics {
        UpstreamMetrics {
            responses: CODE_CLASSES.map(|class| {
                metrics
                    .upstream_responses
                    .with_label_values(&[upstream, class])
            }),
            errors: UpstreamErrorKind::LABELS
                .map(|kind| metrics.upstream_errors.with_label_values(&[upstream, kind])),
            duration: metrics.upstream_duration.with_label_values(&[upstream]),
        }
    }
}

/// Register `metric` in `registry` and hand it back (clones share its values).
fn registered<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

fn int_counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition"),
    )
}

/// The experiment counts as metric families, read from the count book through the
/// snapshot's plans (each experiment's last run; zeros before its first).
fn count_families(snapshot: &Snapshot, replica: &str) -> Vec<prometheus::proto::MetricFamily> {
    let registry = Registry::new();
    let int_counter =
        |name: &str, help: &str, labels: &[&str]| int_counter_vec(&registry, name, help, labels);
    let float_counter = |name: &str, help: &str| {
        registered(
            &registry,
            prometheus::CounterVec::new(Opts::new(name, help), &["experiment", "variant", "goal"])
                .expect("valid metric definition"),
        )
    };
    let exposures = int_counter(
        EXPOSURES,
        "Requests served under an active experiment, by assigned variant (last run).",
        &["experiment", "variant"],
    );
    let assignments = int_counter(
        ASSIGNMENTS,
        "Devices newly assigned to a variant in the experiment's last run (the analysis population).",
        &["experiment", "variant"],
    );
    let conversions = int_counter(
        CONVERSIONS,
        "Devices of the last run's population reaching a goal (once per device, goal and run).",
        &["experiment", "variant", "goal"],
    );
    let value_sum = float_counter(
        CONVERSION_VALUE_SUM,
        "Value goals: sum of the converting devices' values (the first conversion's value).",
    );
    let value_sum_squares = float_counter(
        CONVERSION_VALUE_SUM_SQUARES,
        "Value goals: sum of squares of the converting devices' values, for the variance.",
    );
    let run = registered(
        &registry,
        IntGaugeVec::new(
            Opts::new(
                EXPERIMENT_RUN,
                "The run the count metrics of an experiment are for (0: never active); a new run starts them again from 0; `control` is the variant the analysis compares with; `replica` identifies the data directory the counts come from.",
            ),
            &["experiment", "control", "replica"],
        )
        .expect("valid gauge definition"),
    );
    for plan in &snapshot.experiments {
        let key = plan.key.as_str();
        run.with_label_values(&[key, plan.variants[plan.control].name.as_str(), replica])
            .set(plan.counts_run.unwrap_or(0) as i64);
        for variant in &plan.variants {
            let name = variant.name.as_str();
            let totals = variant.counts.totals();
            exposures
                .with_label_values(&[key, name])
                .inc_by(totals.exposures);
            assignments
                .with_label_values(&[key, name])
                .inc_by(totals.assigned);
            for (goal, counts) in plan.goals.iter().zip(&variant.goals) {
                let labels = [key, name, goal.name.as_str()];
                let totals = counts.totals();
                conversions
                    .with_label_values(&labels)
                    .inc_by(totals.conversions);
                if goal.value.is_some() {
                    value_sum
                        .with_label_values(&labels)
                        .inc_by(totals.value_sum);
                    value_sum_squares
                        .with_label_values(&labels)
                        .inc_by(totals.value_sum_sq);
                }
            }
        }
    }
    registry.gather()
}
