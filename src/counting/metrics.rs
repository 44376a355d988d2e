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

pub const EXPOSURES: &str = "abproxy_exposures_total";
pub const ASSIGNMENTS: &str = "abproxy_assignments_total";
pub const UPSTREAM_RESPONSES: &str = "abproxy_upstream_responses_total";
pub const UPSTREAM_DURATION: &str = "abproxy_upstream_duration_seconds";
pub const VARIANT_RESPONSES: &str = "abproxy_variant_responses_total";
pub const VARIANT_DURATION: &str = "abproxy_variant_duration_seconds";
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
pub const BANDIT_UPDATES: &str = "abproxy_bandit_updates_total";
pub const DECISIONS: &str = "abproxy_decisions_total";
pub const EXPERIMENT_PERIOD: &str = "abproxy_experiment_period";
pub const PERIOD_ASSIGNMENTS: &str = "abproxy_period_assignments_total";
pub const PERIOD_CONVERSIONS: &str = "abproxy_period_conversions_total";
pub const PERIOD_CONVERSION_VALUE_SUM: &str = "abproxy_period_conversion_value_sum";
pub const PERIOD_CONVERSION_VALUE_SUM_SQUARES: &str = "abproxy_period_conversion_value_sum_squares";
pub const PERIOD_SHARE: &str = "abproxy_period_share";
pub const WEBHOOK_FAILURES: &str = "abproxy_webhook_failures_total";

/// The `reason` label values of `abproxy_assignment_cookie_rejected_total`, indexed by
/// `experiments::sticky::Rejected`.
pub const COOKIE_REJECTED_REASONS: [&str; 2] = ["malformed", "bad_signature"];

/// The `code_class` label values, indexed by [`code_class_index`].
pub const CODE_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];
pub const CODE_CLASS_ERROR: usize = 5;

/// Upstream latency buckets (seconds): sub-millisecond resolution for a loopback
/// upstream, up to the default 30 s response timeout. Shared by the upstream and the
/// variant histograms, so a variant's p95 reads on the same scale as its upstream's.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

pub struct Metrics {
    registry: Registry,
    pub upstream_responses: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub fallback_served: IntCounterVec,
    pub upstream_duration: HistogramVec,
    /// `abproxy_variant_responses_total{experiment, variant, code_class}`: the routing
    /// experiment's served variant, first attempt only (see [`VariantMetrics`]).
    pub variant_responses: IntCounterVec,
    /// `abproxy_variant_duration_seconds{experiment, variant}`.
    pub variant_duration: HistogramVec,
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
    /// `abproxy_bandit_updates_total{experiment, outcome}`, outcome one of
    /// [`BANDIT_OUTCOMES`].
    pub bandit_updates: IntCounterVec,
    /// `abproxy_decisions_total{experiment, kind}`: every decision record (those of
    /// `notify` mode too), by kind.
    pub decisions: IntCounterVec,
    /// Given to `transport::webhook::Webhook::start`.
    pub webhook_failures: IntCounter,
}

/// What a bandit's evaluation at a boundary came to: a new period; the rule gave the
/// weights in force; burn-in not reached; the counts could not be read (Prometheus
/// unreachable or incomplete); the run's period limit reached; the run book could not be
/// saved.
pub const BANDIT_OUTCOMES: [&str; 6] = [
    "started",
    "unchanged",
    "burn_in",
    "counts_unavailable",
    "period_limit",
    "not_saved",
];

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
        let webhook_failures = plain(
            WEBHOOK_FAILURES,
            "Webhook deliveries given up after every retry (or refused, or with an unusable URL), or dropped because the queue was full.",
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
        for reason in COOKIE_REJECTED_REASONS {
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
        let variant_responses = counter(
            VARIANT_RESPONSES,
            "Responses to the requests a routing experiment sent to each variant's upstream, by status class; `error` when no response came. First attempt only (a fallback's answer is not the variant's); client-caused failures are never counted.",
            &["experiment", "variant", "code_class"],
        );
        let variant_duration = registered(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    VARIANT_DURATION,
                    "Time from sending a routing experiment's request to its variant's upstream to the response head (first attempt only).",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                &["experiment", "variant"],
            )
            .expect("valid histogram definition"),
        );
        let variant_weight = registered(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    VARIANT_WEIGHT,
                    "The weight new devices of each variant are hashed by now: the config's, or the current period's (a bandit's, in parts per billion); their ratios are the shares.",
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
        let bandit_updates = counter(
            BANDIT_UPDATES,
            "Bandit evaluations at update boundaries, by outcome: started (a new period), unchanged, burn_in, counts_unavailable (Prometheus unreachable or incomplete: shares kept), period_limit, not_saved.",
            &["experiment", "outcome"],
        );
        let decisions = counter(
            DECISIONS,
            "Automated decisions recorded, by kind: promote, guardrail_errors, guardrail_latency, srm, timeout (each also in notify mode, where nothing is changed), and no_decision (an evaluation that could not be made, once per streak).",
            &["experiment", "kind"],
        );
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
            variant_responses,
            variant_duration,
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
            bandit_updates,
            decisions,
            webhook_failures,
        }
    }

    /// The Prometheus text exposition of every metric, with `counts` (the experiment
    /// counts, read from the count book at scrape time: `Snapshot::count_families`).
    pub fn render(&self, counts: Vec<prometheus::proto::MetricFamily>) -> Vec<u8> {
        let mut families = self.registry.gather();
        families.extend(counts);
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::with_capacity(8 * 1024);
        TextEncoder::new()
            .encode(&families, &mut out)
            .expect("text encoding to a Vec cannot fail");
        out
    }

    /// Publish the weights of `config`, and drop the series of experiments or variants
    /// that are gone (set first, remove after, so a scrape never sees a gap).
    /// Set `abproxy_variant_weight` to the weights in force, (experiment, variant,
    /// weight); drop the series of variants in `previous` that are no longer there.
    pub fn publish_weights<'a>(
        &self,
        current: &[(&'a str, &'a str, u32)],
        previous: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        for &(experiment, variant, weight) in current {
            self.variant_weight
                .with_label_values(&[experiment, variant])
                .set(weight as i64);
        }
        for (experiment, variant) in previous {
            if !current
                .iter()
                .any(|&(e, v, _)| e == experiment && v == variant)
            {
                let _ = self
                    .variant_weight
                    .remove_label_values(&[experiment, variant]);
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

/// The `kind` label of `abproxy_client_errors_total`: a request refused because of what
/// the client sent. Kept apart from upstream errors, so no client can inflate a
/// variant's error rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientErrorKind {
    /// An HTTP/1.1 request without `Host`, with two, or with an invalid one (400).
    Host = 0,
    /// `CONNECT`: abproxy is not a forward proxy (501).
    Method = 1,
    /// A request transfer coding other than `chunked` (501).
    TransferCoding = 2,
    /// A malformed request body (bad chunked framing) or one the client cut off (400).
    Body = 3,
    /// The client stopped sending its request body (`timeouts.request_body_idle`, 408).
    BodyTimeout = 4,
}

impl ClientErrorKind {
    pub const LABELS: [&'static str; 5] =
        ["host", "method", "transfer_coding", "body", "body_timeout"];
}

/// Pre-resolved counters of one upstream.
#[derive(Clone)]
pub struct UpstreamMetrics {
    pub responses: [IntCounter; CODE_CLASSES.len()],
    /// Indexed by [`UpstreamErrorKind`].
    pub errors: [IntCounter; UpstreamErrorKind::LABELS.len()],
    pub duration: prometheus::Histogram,
}

/// Pre-resolved series of one variant of a routing experiment: what its upstream
/// answered to the requests routed to it. Counted on the first attempt only, and never
/// for a client-caused failure, so the figures the guardrails compare are the
/// upstream's alone.
#[derive(Clone)]
pub struct VariantMetrics {
    /// Indexed like [`CODE_CLASSES`].
    pub responses: [IntCounter; CODE_CLASSES.len()],
    pub duration: prometheus::Histogram,
}

impl VariantMetrics {
    /// The series of `variant` of `experiment`, created at 0 if new.
    pub fn new(metrics: &Metrics, experiment: &str, variant: &str) -> VariantMetrics {
        VariantMetrics {
            responses: CODE_CLASSES.map(|class| {
                metrics
                    .variant_responses
                    .with_label_values(&[experiment, variant, class])
            }),
            duration: metrics
                .variant_duration
                .with_label_values(&[experiment, variant]),
        }
    }
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
    /// Count a failure in `abproxy_upstream_errors_total` by its kind (`None`: not an
    /// upstream failure; `ProxyError::upstream_error_kind` is the one place that maps
    /// errors to kinds).
    pub fn count_error(&self, kind: Option<UpstreamErrorKind>) {
        if let Some(kind) = kind {
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
pub fn registered<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

pub fn int_counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> IntCounterVec {
    registered(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition"),
    )
}
