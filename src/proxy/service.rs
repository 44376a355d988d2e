//! The proxy as a hyper `Service`: one request through its phases.
//!
//! ```text
//! load snapshot → reserved /_ab/ paths → device id (read or mint)
//!   → experiments that apply → assign each (count exposures/assignments)
//!   → choose upstream (first routing experiment, else default_upstream)
//!   → rewrite request headers → forward (streamed) → rewrite response → Set-Cookie
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::Either;
use hyper::body::Incoming;

use crate::config::{HostPolicy, UpstreamDown};
use crate::counting::metrics::{
    code_class_index, UpstreamErrorKind, VariantMetrics, CODE_CLASS_ERROR,
};
use crate::experiments::device::Device;
use crate::proxy::error::ProxyError;
use crate::proxy::headers;
use crate::proxy::response::{plain_response, ProxyBody, UpstreamBody};
use crate::proxy::routing::{assignments_header, route, RequestView};
use crate::state::app::App;
use crate::state::snapshot::{Snapshot, UpstreamTarget};
use crate::transport::request_body::UpstreamRequestBody;
use crate::transport::request_body::{BodyWatch, ClientBody};

/// The reserved prefix of `PRODUCT.md`: never forwarded.
pub const RESERVED_PREFIX: &str = "/_ab/";

/// One per client connection (it knows the peer address).
#[derive(Clone)]
pub struct ProxyService {
    app: Arc<App>,
    /// Who is at the other end: made once per connection.
    peer: Peer,
    /// Held for as long as the connection lasts (hyper drops the service with it).
    _open: Arc<OpenConnection>,
    /// The connection came past `limits.max_connections`: answer 503, then close.
    over_capacity: bool,
}

impl ProxyService {
    /// Admit a new client connection: it counts as open until the service is dropped,
    /// and is over capacity if more than `limits.max_connections` are then open.
    pub fn admit(app: Arc<App>, peer: SocketAddr, scheme: Scheme) -> ProxyService {
        let open = OpenConnection::enter(app.metrics.connections_open.clone());
        let over_capacity = open.count > app.snapshot().config.limits.max_connections;
        if over_capacity {
            app.metrics.connections_rejected.inc();
        }
        ProxyService {
            app,
            peer: Peer::new(peer, scheme),
            _open: Arc::new(open),
            over_capacity,
        }
    }

    pub fn over_capacity(&self) -> bool {
        self.over_capacity
    }

    pub fn peer(&self) -> &Peer {
        &self.peer
    }
}

/// How the client reached the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// The client connection's end, as the upstream is told it: `X-Forwarded-For` and
/// `X-Forwarded-Proto` values formatted once per connection (formatting an IP per
/// request showed in the profile).
#[derive(Clone)]
pub struct Peer {
    pub forwarded_for: HeaderValue,
    pub forwarded_proto: HeaderValue,
}

impl Peer {
    pub fn new(addr: SocketAddr, scheme: Scheme) -> Peer {
        Peer {
            forwarded_for: headers::peer_value(addr.ip()),
            forwarded_proto: HeaderValue::from_static(match scheme {
                Scheme::Http => "http",
                Scheme::Https => "https",
            }),
        }
    }
}

/// One open client connection, counted in `abproxy_connections_open` until dropped.
struct OpenConnection {
    gauge: prometheus::IntGauge,
    /// Open connections, this one included, when it was admitted.
    count: usize,
}

impl OpenConnection {
    fn enter(gauge: prometheus::IntGauge) -> OpenConnection {
        gauge.inc();
        let count = gauge.get().max(0) as usize;
        OpenConnection { gauge, count }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// hyper's own service trait, not tower's: hyper calls it by reference, where tower's
/// bridge clones the service and wraps the call in a `Oneshot` for every request.
impl hyper::service::Service<Request<Incoming>> for ProxyService {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        if self.over_capacity {
            let mut response = plain_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "abproxy: too many open connections; try again shortly\n",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Box::pin(std::future::ready(Ok(response)));
        }
        if let Err(refused) = crate::proxy::client_request::check_head(
            request.method(),
            request.version(),
            request.headers(),
        ) {
            self.app.metrics.client_errors[refused.kind as usize].inc();
            tracing::debug!(reason = refused.reason, "request refused");
            let response =
                plain_response(refused.status, &format!("abproxy: {}\n", refused.reason));
            return Box::pin(std::future::ready(Ok(response)));
        }
        let snapshot = self.app.snapshot();
        let peer = self.peer.clone();
        Box::pin(async move { Ok(handle(&snapshot, &peer, request).await) })
    }
}

async fn handle(
    snapshot: &Snapshot,
    peer: &Peer,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let device = Device::from_headers(request.headers(), &snapshot.config.cookie.name);
    let (mut response, set_cookies) = if request.uri().path() == crate::proxy::events::PATH {
        // Boxed, as the rare path it is (like the fallback retry in `send_upstream`).
        Box::pin(crate::proxy::events::handle(snapshot, &device, request)).await
    } else if request.uri().path().starts_with(RESERVED_PREFIX) {
        crate::proxy::frontend::respond(snapshot, &device, &request)
    } else {
        let mut routed = Routed::new(
            snapshot,
            &device,
            request.method(),
            request.uri(),
            request.headers(),
            // hyper's path serves one request per call: nothing is kept between them.
            &mut Default::default(),
        );
        let response = match routed.upstream(snapshot) {
            Some(upstream) => {
                let added = Added {
                    peer,
                    device_id: &device.id,
                    assignments: routed.assignments.take(),
                    upgrade: None,
                };
                send_upstream(snapshot, &routed, upstream, request, added).await
            }
            None => error_response(&ProxyError::NoRoute),
        };
        let set_cookies = routed.finish(snapshot, &device, response.status(), response.headers());
        (response, set_cookies)
    };
    add_cookies(snapshot, &device, set_cookies, response.headers_mut());
    response
}

/// A proxied request's experiments, decided before it is forwarded; both HTTP paths
/// (hyper's and [`crate::proxy::plain_http1`]) go through it.
pub struct Routed<'s> {
    pub routing: crate::proxy::routing::Routing<'s>,
    /// `X-AB-Assignments` for the upstream.
    pub assignments: Option<HeaderValue>,
    /// Request goals look at the response: what they need of the request.
    goal_request: Option<(http::Method, String)>,
}

impl<'s> Routed<'s> {
    pub fn new(
        snapshot: &'s Snapshot,
        device: &Device,
        method: &http::Method,
        uri: &Uri,
        request_headers: &http::HeaderMap,
        verified: &mut crate::experiments::sticky::Verified,
    ) -> Routed<'s> {
        let view = RequestView {
            host: headers::request_host(uri, request_headers),
            path: uri.path(),
            query: uri.query(),
            headers: request_headers,
        };
        let routing = route(snapshot, device, &view, verified);
        let assignments = assignments_header(&routing);
        let goal_request = snapshot
            .has_request_goals
            .then(|| (method.clone(), uri.path().to_string()));
        Routed {
            routing,
            assignments,
            goal_request,
        }
    }

    /// The upstream to forward to: the first routing experiment's, else the default.
    pub fn upstream(&self, snapshot: &Snapshot) -> Option<usize> {
        self.routing.upstream.or(snapshot.default_upstream)
    }

    /// The routing experiment's variant series, which answer for the first attempt only:
    /// a fallback's answer is its upstream's, not the variant's.
    pub fn variant_metrics(&self) -> Option<&'s VariantMetrics> {
        self.routing
            .applied
            .iter()
            .find(|a| a.experiment.routing)
            .and_then(|a| a.experiment.upstream_metrics.get(a.served))
    }

    /// Record the request goals the response reached; the `Set-Cookie` values the
    /// device's pins need.
    pub fn finish(
        mut self,
        snapshot: &Snapshot,
        device: &Device,
        status: StatusCode,
        response_headers: &http::HeaderMap,
    ) -> Vec<HeaderValue> {
        if let Some((method, path)) = self.goal_request {
            self.routing.pins.record_goals(snapshot, &device.id, |e| {
                crate::experiments::goals::reached_by_request(
                    e,
                    &method,
                    &path,
                    status,
                    response_headers,
                )
            });
        }
        self.routing.finish(snapshot, device)
    }
}

/// A new device's id and the pins' cookies, appended (the upstream's own `Set-Cookie`
/// fields stay); such a response is private to the visitor.
pub fn add_cookies(
    snapshot: &Snapshot,
    device: &Device,
    set_cookies: Vec<HeaderValue>,
    h: &mut http::HeaderMap,
) {
    if device.is_new || !set_cookies.is_empty() {
        headers::make_private(h);
    }
    if device.is_new {
        h.append(
            header::SET_COOKIE,
            device.set_cookie(
                &snapshot.config.cookie.name,
                &snapshot.set_cookie_attributes,
            ),
        );
    }
    for cookie in set_cookies {
        h.append(header::SET_COOKIE, cookie);
    }
}

/// What abproxy adds to a request on its way upstream.
#[derive(Clone)]
struct Added<'a> {
    peer: &'a Peer,
    device_id: &'a str,
    assignments: Option<HeaderValue>,
    /// A WebSocket (or other) upgrade the client asked for, put back after the
    /// hop-by-hop fields are removed.
    upgrade: Option<HeaderValue>,
}

/// Forward to `upstream` (falling back per `upstream_down`), and open the tunnel if the
/// request was an upgrade the upstream accepted. Every failure is a response.
async fn send_upstream(
    snapshot: &Snapshot,
    routed: &Routed<'_>,
    upstream: usize,
    mut request: Request<Incoming>,
    mut added: Added<'_>,
) -> Response<ProxyBody> {
    let client_upgrade = crate::proxy::upgrade::ClientSide::take(&mut request);
    added.upgrade = client_upgrade.as_ref().map(|c| c.upgrade.clone());
    let fallback = FallbackRetry::plan(&routed.routing, &request);
    let retry = fallback.as_ref().map(|_| added.clone());
    let (parts, body) = request.into_parts();
    let (body, watch) = ClientBody::new(body, snapshot.config.timeouts.request_body_idle);
    let request = Request::from_parts(parts, Either::Left(body));
    let first = forward(
        snapshot,
        upstream,
        request,
        added,
        watch.as_deref(),
        routed.variant_metrics(),
    );
    let mut response = match first.await {
        Ok(response) => response,
        Err(err) => match (fallback, retry) {
            (Some(fallback), Some(retry)) if err.upstream_is_down() => {
                fallback.served.inc();
                tracing::debug!(error = %err, "serving the fallback's upstream");
                // Boxed: a retry is rare, and its state would otherwise be part of
                // every request's future.
                let again = Box::pin(forward(
                    snapshot,
                    fallback.upstream,
                    fallback.request,
                    retry,
                    None,
                    None,
                ));
                match again.await {
                    Ok(response) => response,
                    Err(err) => return error_response(&err),
                }
            }
            _ => return error_response(&err),
        },
    };
    if let Some(client) = client_upgrade {
        client.finish(&mut response, snapshot.tunnels_open.clone());
    }
    response
}

/// `upstream_down: fallback`: where to send a request again, and what to count, if its
/// variant's upstream turns out to be down.
struct FallbackRetry {
    upstream: usize,
    /// A copy of the client's head. Only bodiless requests are retried: a body is
    /// streamed into the first attempt and cannot be sent twice.
    request: Request<UpstreamRequestBody>,
    served: prometheus::IntCounter,
}

impl FallbackRetry {
    fn plan(
        routing: &crate::proxy::routing::Routing<'_>,
        request: &Request<Incoming>,
    ) -> Option<Self> {
        if !hyper::body::Body::is_end_stream(request.body()) {
            return None;
        }
        let (upstream, served) = fallback_upstream(routing)?;
        let mut copy = Request::new(Either::Right(http_body_util::Empty::new()));
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        Some(FallbackRetry {
            upstream,
            request: copy,
            served,
        })
    }
}

/// Where a bodiless request goes again, and the series that counts it, if its routing
/// variant's upstream turns out to be down (`upstream_down: fallback`, served by another
/// variant with another upstream).
pub fn fallback_upstream(
    routing: &crate::proxy::routing::Routing<'_>,
) -> Option<(usize, prometheus::IntCounter)> {
    let applied = routing.applied.iter().find(|a| a.experiment.routing)?;
    let e = applied.experiment;
    if e.upstream_down != UpstreamDown::Fallback || applied.served == e.fallback {
        return None;
    }
    let upstream = e.variants[e.fallback].upstream?;
    if Some(upstream) == e.variants[applied.served].upstream {
        return None;
    }
    Some((upstream, e.fallback_served[applied.served].clone()))
}

async fn forward(
    snapshot: &Snapshot,
    upstream_index: usize,
    request: Request<UpstreamRequestBody>,
    added: Added<'_>,
    client_body: Option<&BodyWatch>,
    // The routing variant's series: `None` for a fallback's retry and for requests no
    // routing experiment chose the upstream of.
    variant: Option<&VariantMetrics>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let upstream = &snapshot.upstreams[upstream_index];
    let (mut parts, body) = request.into_parts();
    rewrite_for_upstream(
        &mut parts,
        upstream,
        snapshot.host_policy(),
        added.device_id,
        added.assignments,
        added.peer,
    );
    // Upgrades go through the pooled client, whose connections can outlive an exchange.
    let in_task = upstream.http1.as_ref().filter(|_| added.upgrade.is_none());
    if let Some(upgrade) = added.upgrade {
        crate::proxy::upgrade::restore(&mut parts.headers, upgrade);
        if upstream.http1.is_some() {
            let path_and_query = parts.uri.path_and_query().cloned();
            parts.uri = absolute_uri(upstream, &upstream.authority, path_and_query);
        }
    }

    let timeouts = snapshot.config.timeouts;
    let started = Instant::now();
    let request = Request::from_parts(parts, body);
    let sent = async {
        match in_task {
            Some(pool) => match pool.send(request).await {
                Ok(sent) => Ok(sent),
                Err(err) => Err(ProxyError::from_http1_pool(
                    &upstream.name,
                    err,
                    timeouts.connect,
                )),
            },
            None => match upstream.client.request(request).await {
                Ok(response) => Ok((response, None)),
                Err(err) => Err(ProxyError::from_client(
                    &upstream.name,
                    err,
                    timeouts.connect,
                )),
            },
        }
    };
    let outcome = match tokio::time::timeout(timeouts.upstream_response, sent).await {
        Ok(Ok(response)) => Ok(response),
        failed => {
            // A failure or a timeout while the client broke or held back its own body
            // is the client's; any other is the upstream's.
            let timed_out = failed.is_err();
            Err(match client_body.and_then(|b| b.client_fault(timed_out)) {
                Some(kind) => ProxyError::from_client_fault(kind, timeouts.request_body_idle),
                None => match failed {
                    Ok(Err(err)) => err,
                    _ => ProxyError::UpstreamTimeout {
                        upstream: upstream.name.clone(),
                        timeout: timeouts.upstream_response,
                    },
                },
            })
        }
    };
    let (mut response, lease) = match outcome {
        Ok(response) => response,
        Err(err) => {
            count_failure(snapshot, upstream, variant, &err);
            return Err(err);
        }
    };
    count_response(upstream, variant, response.status(), started);
    // abproxy answers in its own HTTP version whatever the upstream spoke (RFC 9110 §6.2):
    // an HTTP/1.0 upstream's version would otherwise reach the client and close its
    // connection after every response. (hyper answers an HTTP/1.0 client in HTTP/1.0 by
    // itself, and HTTP/2 clients ignore this.)
    *response.version_mut() = http::Version::HTTP_11;
    if headers::remove_hop_by_hop(response.headers_mut()) == headers::TransferCoding::Other {
        // We would pass on still-encoded bytes with nothing saying how they are encoded.
        let err = ProxyError::UpstreamTransferCoding {
            upstream: upstream.name.clone(),
        };
        upstream.metrics.count_error(err.upstream_error_kind());
        return Err(err);
    }
    let cut = upstream.metrics.errors[UpstreamErrorKind::Body as usize].clone();
    Ok(response.map(|inner| Either::Left(UpstreamBody::new(inner, lease, cut))))
}

/// A failed exchange: the client's fault (nothing counted against the upstream), or
/// the upstream's.
pub fn count_failure(
    snapshot: &Snapshot,
    upstream: &UpstreamTarget,
    variant: Option<&VariantMetrics>,
    err: &ProxyError,
) {
    match err.client_error_kind() {
        Some(kind) => {
            snapshot.client_errors[kind as usize].inc();
            tracing::debug!(error = %err, "request body failed on the client's side");
        }
        None => {
            upstream.metrics.responses[CODE_CLASS_ERROR].inc();
            if let Some(variant) = variant {
                variant.responses[CODE_CLASS_ERROR].inc();
            }
            upstream.metrics.count_error(err.upstream_error_kind());
            tracing::debug!(error = %format_chain(err), "upstream request failed");
        }
    }
}

/// An upstream's response head, in by `started`'s elapsed time.
pub fn count_response(
    upstream: &UpstreamTarget,
    variant: Option<&VariantMetrics>,
    status: StatusCode,
    started: Instant,
) {
    let elapsed = started.elapsed().as_secs_f64();
    let class = code_class_index(status);
    upstream.metrics.duration.observe(elapsed);
    upstream.metrics.responses[class].inc();
    if let Some(variant) = variant {
        variant.duration.observe(elapsed);
        variant.responses[class].inc();
    }
}

fn format_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

pub fn error_response(err: &ProxyError) -> Response<ProxyBody> {
    plain_response(err.status(), &format!("abproxy: {err}\n"))
}

/// Turn a client's request head into the one the upstream gets: hop-by-hop fields
/// dropped, `X-Device-Id`, `X-AB-Assignments`, `X-Forwarded-*` set (never taken from the
/// client), the admin session cookie removed, `Host` by the policy, and the URI: the
/// origin form for a plain HTTP/1.1 upstream, else the absolute URI the pooled client
/// needs. Pure: the benchmarks call it directly.
pub fn rewrite_for_upstream(
    parts: &mut http::request::Parts,
    upstream: &UpstreamTarget,
    host_policy: HostPolicy,
    device_id: &str,
    assignments: Option<HeaderValue>,
    peer: &Peer,
) {
    // hyper sizes the parsed map to the request's fields: make room for ours at once
    // rather than regrowing (and rehashing) it on the first insert.
    parts.headers.reserve(6);

    // The name the client asked for: an absolute-form URI's authority wins over Host
    // (RFC 9112 §3.2.2).
    let client_host = match parts.uri.authority() {
        Some(authority) => {
            HeaderValue::from_str(headers::without_userinfo(authority.as_str())).ok()
        }
        // An empty Host (a target with no authority) names no host.
        None => parts
            .headers
            .get(header::HOST)
            .filter(|h| !h.is_empty())
            .cloned(),
    };
    let h = &mut parts.headers;
    let takes_trailers = headers::takes_trailers(h);
    // hyper's server only accepts request bodies framed by `chunked` or a length.
    headers::remove_hop_by_hop(h);
    if takes_trailers {
        // TE is hop-by-hop: this hop's says abproxy takes trailers, as the client does
        // (hyper's server, like many, only sends trailers to a request that says so).
        h.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    // Never let a client speak for the proxy: these are ours to set, or (X-Real-IP,
    // which we do not set) an address an app might trust.
    h.insert(
        &headers::X_DEVICE_ID,
        HeaderValue::from_str(device_id).expect("validated device id"),
    );
    match assignments {
        Some(value) => h.insert(&headers::X_AB_ASSIGNMENTS, value),
        None => h.remove(&headers::X_AB_ASSIGNMENTS),
    };
    h.remove(&headers::X_REAL_IP);
    // The admin session: browsers send it to every port of the host, and an upstream
    // app must never be able to replay it against the admin listener. HTTP/2's one
    // field per cookie becomes one field.
    headers::cookies_for_upstream(h, crate::admin::auth::SESSION_COOKIE);
    headers::append_forwarded_for(h, &peer.forwarded_for);
    h.insert(&headers::X_FORWARDED_PROTO, peer.forwarded_proto.clone());
    let host = match (host_policy, client_host) {
        (HostPolicy::Client, Some(client_host)) => {
            h.insert(&headers::X_FORWARDED_HOST, client_host.clone());
            client_host
        }
        (HostPolicy::Upstream, Some(client_host)) => {
            h.insert(&headers::X_FORWARDED_HOST, client_host);
            upstream.authority_header.clone()
        }
        (_, None) => {
            h.remove(&headers::X_FORWARDED_HOST);
            upstream.authority_header.clone()
        }
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    parts.version = if upstream.http2 {
        http::Version::HTTP_2
    } else {
        http::Version::HTTP_11
    };
    parts.uri = if upstream.http2 {
        // The connector always dials the upstream, so the URI's authority is free to
        // carry the host: HTTP/2 sends it as `:authority`, where a `Host` field must not
        // differ.
        let authority = http::uri::Authority::try_from(host.as_bytes())
            .unwrap_or_else(|_| upstream.authority.clone());
        h.remove(header::HOST);
        absolute_uri(upstream, &authority, Some(path_and_query))
    } else if upstream.http1.is_some() {
        h.insert(header::HOST, host);
        // Written as is in the request line: the origin form (RFC 9112 §3.2.1).
        Uri::from(path_and_query)
    } else {
        h.insert(header::HOST, host);
        absolute_uri(upstream, &upstream.authority, Some(path_and_query))
    };
}

/// The absolute URI the pooled client needs: the upstream's scheme, `authority`, and the
/// client's path and query unchanged.
fn absolute_uri(
    upstream: &UpstreamTarget,
    authority: &http::uri::Authority,
    path_and_query: Option<http::uri::PathAndQuery>,
) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(upstream.scheme.clone());
    parts.authority = Some(authority.clone());
    parts.path_and_query = path_and_query;
    Uri::from_parts(parts).expect("scheme, authority and path make a valid URI")
}
