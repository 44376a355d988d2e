//! Everything derived from one config, built once and swapped whole.
//!
//! A request loads one `Arc<Snapshot>` and uses it to the end, so it can never see half
//! of a reload (new weights with old upstreams, say). Building does all the work a
//! request would otherwise repeat: variants sorted into weight tables, metric handles
//! resolved, the `Set-Cookie` attributes formatted, the upstream client configured.

use std::sync::Arc;

use http::HeaderValue;

use crate::config::{Config, HostPolicy};
use crate::counting::metrics::{Metrics, UpstreamMetrics, VariantMetrics};
use crate::experiments::plan::ExperimentPlan;
use crate::experiments::sticky::Signer;
use crate::state::runs::RunBook;

use crate::transport::http1_pool::Http1Pool;
pub use crate::transport::upstream_client::UpstreamClient;

pub struct Snapshot {
    pub config: Arc<Config>,
    /// In config order.
    pub experiments: Vec<ExperimentPlan>,
    /// In config order; experiments refer to them by index.
    pub upstreams: Vec<UpstreamTarget>,
    pub default_upstream: Option<usize>,
    /// `; Path=/; Max-Age=…; HttpOnly; SameSite=Lax[; Domain=…]`, appended to a new id
    /// and to the assignment cookie.
    pub set_cookie_attributes: String,
    /// Signs and verifies the sticky-assignment cookie.
    pub signer: Signer,
    /// The run book as of this config (what the admin API shows), so readers never take
    /// the load lock.
    pub runs: RunBook,
    /// `abproxy_events_received_total` and `abproxy_events_unmatched_total`.
    pub events_received: prometheus::IntCounter,
    /// `abproxy_tunnels_open`.
    pub tunnels_open: prometheus::IntGauge,
    /// `abproxy_client_errors_total`, by `ClientErrorKind`.
    pub client_errors:
        [prometheus::IntCounter; crate::counting::metrics::ClientErrorKind::LABELS.len()],
    pub events_unmatched: prometheus::IntCounter,
    /// Whether any goal is reached by a proxied request (else the proxy path skips them).
    pub has_request_goals: bool,
    /// The admin API's bearer token; `None` = write routes refused.
    pub admin_token: Option<crate::state::secret::AdminToken>,
    /// `abproxy_assignment_cookie_rejected_total`, by `Rejected` discriminant.
    pub rejected_cookies: [prometheus::IntCounter; 2],
    /// The JSON-lines export, when configured.
    pub export: Option<Arc<crate::counting::export::Exporter>>,
}

pub struct UpstreamTarget {
    pub name: String,
    /// `host:port`, the authority of the absolute URI the client pool needs.
    pub authority: http::uri::Authority,
    /// `host:port` as a header value, for `Host` when the policy (or a missing Host)
    /// asks for the upstream's own name.
    pub authority_header: HeaderValue,
    pub metrics: UpstreamMetrics,
    /// `https` for a TLS upstream, else `http`.
    pub scheme: http::uri::Scheme,
    /// HTTP/2 to this upstream (h2 over TLS, or h2c).
    pub http2: bool,
    /// This upstream's keep-alive pool for TLS, HTTP/2 and upgrades.
    pub client: UpstreamClient,
    /// Plain HTTP/1.1 upstreams: connections driven by the requests that hold them.
    pub http1: Option<Arc<Http1Pool>>,
}

impl UpstreamTarget {
    /// What requests need of upstream `u`, sent through `client`.
    pub fn new(
        u: &crate::config::Upstream,
        metrics: &Metrics,
        (client, http1): (UpstreamClient, Option<Arc<Http1Pool>>),
    ) -> Self {
        UpstreamTarget {
            name: u.name.clone(),
            authority: u.origin.clone(),
            authority_header: HeaderValue::from_str(u.origin.as_str())
                .expect("an authority is a valid header value"),
            metrics: UpstreamMetrics::new(metrics, &u.name),
            scheme: if u.tls {
                http::uri::Scheme::HTTPS
            } else {
                http::uri::Scheme::HTTP
            },
            http2: u.http2,
            client,
            http1,
        }
    }
}

impl Snapshot {
    /// `previous` lends its upstream client when the client settings did not change, so
    /// a reload keeps the warm connection pool.
    pub fn build(
        config: Config,
        runs: RunBook,
        signer: Signer,
        admin_token: Option<crate::state::secret::AdminToken>,
        metrics: &Metrics,
        // Per upstream, in config order: the rustls settings of `https://` ones.
        upstream_tls: Vec<Option<Arc<rustls::ClientConfig>>>,
        counts: &crate::counting::book::CountBook,
        export: Option<Arc<crate::counting::export::Exporter>>,
        previous: Option<&Snapshot>,
    ) -> Snapshot {
        let upstreams: Vec<UpstreamTarget> = config
            .upstreams
            .iter()
            .zip(upstream_tls)
            .map(|(u, tls)| {
                // A reload keeps an upstream's warm pool when nothing about reaching it
                // changed.
                let kept = previous
                    .filter(|prev| {
                        prev.config.timeouts.connect == config.timeouts.connect
                            && prev.config.pool == config.pool
                    })
                    .and_then(|prev| {
                        // The previous snapshot's targets are in its config's order.
                        let same = prev.config.upstreams.iter().position(|p| p == u)?;
                        let prev = &prev.upstreams[same];
                        Some((prev.client.clone(), prev.http1.clone()))
                    });
                let clients = kept.unwrap_or_else(|| {
                    let http1 = (!u.tls && !u.http2).then(|| {
                        Arc::new(Http1Pool::new(
                            crate::transport::upstream_client::dial_host(u),
                            u.port(),
                            config.timeouts.connect,
                            config.pool.max_idle_per_host,
                            config.pool.idle_timeout,
                        ))
                    });
                    let client = crate::transport::upstream_client::build(
                        u,
                        tls,
                        config.timeouts.connect,
                        config.pool,
                    );
                    (client, http1)
                });
                UpstreamTarget::new(u, metrics, clients)
            })
            .collect();
        let upstream_index = |name: &str| upstreams.iter().position(|u| u.name == name);
        let experiments = config
            .experiments
            .iter()
            .map(|e| {
                let last_run = runs.get(&e.key).and_then(|r| r.last_run()).map(|r| {
                    crate::experiments::plan::LastRun {
                        number: r.number,
                        weights: r.current_period().map(|p| &p.weights),
                        periods: r.periods.len() as u32,
                    }
                });
                let mut plan = ExperimentPlan::new(e, last_run, counts, upstream_index);
                if e.upstream_down == crate::config::UpstreamDown::Fallback {
                    plan.fallback_served = e
                        .variants
                        .iter()
                        .map(|v| {
                            metrics
                                .fallback_served
                                .with_label_values(&[e.key.as_str(), v.name.as_str()])
                        })
                        .collect();
                }
                if plan.routing {
                    // Created here, so every variant's series is there at 0 from the
                    // first snapshot on: a guardrail (or a dashboard's `increase`) has a
                    // start to count from.
                    plan.upstream_metrics = e
                        .variants
                        .iter()
                        .map(|v| VariantMetrics::new(metrics, &e.key, &v.name))
                        .collect();
                }
                plan
            })
            .collect();
        let default_upstream = config.default_upstream.as_deref().and_then(upstream_index);
        let set_cookie_attributes = set_cookie_attributes(&config);
        let has_request_goals = config
            .experiments
            .iter()
            .flat_map(|e| &e.goals)
            .any(|g| matches!(g.trigger, crate::config::Trigger::Request { .. }));
        Snapshot {
            config: Arc::new(config),
            experiments,
            upstreams,
            default_upstream,
            set_cookie_attributes,
            signer,
            has_request_goals,
            events_received: metrics.events_received.clone(),
            tunnels_open: metrics.tunnels_open.clone(),
            client_errors: metrics.client_errors.clone(),
            events_unmatched: metrics.events_unmatched.clone(),
            runs,
            admin_token,
            export,
            rejected_cookies: crate::counting::metrics::COOKIE_REJECTED_REASONS.map(|reason| {
                metrics
                    .assignment_cookie_rejected
                    .with_label_values(&[reason])
            }),
        }
    }

    /// `abproxy_variant_weight`: the weights new devices are hashed by now (a period's,
    /// when a bandit or a weight change moved them); series of variants that `previous`
    /// had and this snapshot has not are dropped.
    pub fn publish_weights(&self, metrics: &Metrics, previous: Option<&Snapshot>) {
        let current: Vec<(&str, &str, u32)> = self
            .experiments
            .iter()
            .flat_map(|plan| {
                let weights = plan.table.weights(plan.variants.len());
                plan.variants
                    .iter()
                    .zip(weights)
                    .map(|(v, w)| (plan.key.as_str(), v.name.as_str(), w))
            })
            .collect();
        let previous = previous.into_iter().flat_map(|p| {
            p.experiments.iter().flat_map(|plan| {
                plan.variants
                    .iter()
                    .map(|v| (plan.key.as_str(), v.name.as_str()))
            })
        });
        metrics.publish_weights(&current, previous);
    }

    pub fn host_policy(&self) -> HostPolicy {
        self.config.host_header
    }

    /// Hand one counted event to the export, if there is one. `variant` indexes
    /// `plan.variants`; `goal` indexes `plan.goals`.
    pub fn export(
        &self,
        kind: crate::counting::export::Kind,
        plan: &ExperimentPlan,
        variant: usize,
        device_id: &str,
        goal: Option<(usize, Option<f64>)>,
    ) {
        let Some(export) = &self.export else { return };
        export.send(crate::counting::export::ExportEvent {
            ts: std::time::SystemTime::now(),
            kind,
            experiment: plan.key.clone(),
            run: plan.run.unwrap_or(0),
            variant: plan.variants[variant].name.clone(),
            device_id: device_id.to_string(),
            goal: goal.map(|(g, _)| plan.goals[g].name.clone()),
            value: goal.and_then(|(_, v)| v),
        });
    }
}

/// Cookie attributes of `PRODUCT.md`, in its order.
fn set_cookie_attributes(config: &Config) -> String {
    let mut attrs = format!(
        "; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
        config.cookie.max_age.as_secs()
    );
    if let Some(domain) = &config.cookie.domain {
        attrs.push_str("; Domain=");
        attrs.push_str(domain);
    }
    // Over TLS the cookies never travel in clear text.
    if config.tls.is_some() {
        attrs.push_str("; Secure");
    }
    attrs
}
