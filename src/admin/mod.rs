//! The admin listener.
//!
//! | route | auth | what |
//! |---|---|---|
//! | `GET /metrics`, `GET /healthz` | none | Prometheus text; liveness |
//! | `GET /api/experiments` | read | every experiment, JSON |
//! | `GET /api/experiments/{key}/results[?run=N]` | read | one run's analysis (default: the last) |
//! | `GET /api/experiments/{key}/decisions` | read | the automated decisions' settings and every record, oldest first |
//! | `PATCH /api/experiments/{key}` | write | change state, weights, rollout variant |
//! | `GET /experiments[?run.KEY=N]` | read | the admin page (a login form when unauthenticated) |
//! | `POST /login`, `POST /logout` | — | exchange the token for a session cookie; end it |
//!
//! "read" and "write" are decided in `auth`: with a token configured, both need it
//! (bearer, or the session cookie plus the CSRF header for writes); with none, reads
//! are open and writes refused.

pub mod api;
pub mod auth;
pub mod axis;
pub mod bandit_view;
pub mod chart;
pub mod decision_view;
pub mod frame;
pub mod page;
pub mod period_chart;
#[cfg(test)]
mod period_view_tests;
pub mod results;
pub mod results_view;
pub mod series;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::state::app::App;
use crate::state::snapshot::Snapshot;
use auth::Caller;

/// Admin request bodies (a PATCH, a login form) are small.

#[derive(Clone)]
pub struct AdminService {
    app: Arc<App>,
}

impl AdminService {
    pub fn new(app: Arc<App>) -> AdminService {
        AdminService { app }
    }
}

impl hyper::service::Service<Request<Incoming>> for AdminService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let app = self.app.clone();
        Box::pin(async move { Ok(handle(app, request).await) })
    }
}

async fn handle(app: Arc<App>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let read = method == Method::GET || method == Method::HEAD;
    match path.as_str() {
        "/metrics" if read => text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            app.metrics
                .render(app.snapshot().count_families(app.counts.replica())),
        ),
        "/healthz" if read => text(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            b"ok\n".to_vec(),
        ),
        "/" if read => redirect("/experiments", None),
        "/api/experiments" if read => {
            let snapshot = app.snapshot();
            match authorize(&snapshot, request.headers(), Need::Read) {
                Err(denied) => denied,
                Ok(_) => json(StatusCode::OK, &api::list(&snapshot)),
            }
        }
        p if sub_key(p, "/decisions").is_some() && read => {
            let key = sub_key(p, "/decisions").expect("matched");
            let snapshot = app.snapshot();
            if let Err(denied) = authorize(&snapshot, request.headers(), Need::Read) {
                return denied;
            }
            match api::decisions(&snapshot, &app, key) {
                Some(answer) => json(StatusCode::OK, &answer),
                None => json(
                    StatusCode::NOT_FOUND,
                    &serde_json::json!({ "error": format!("no experiment `{key}`") }),
                ),
            }
        }
        p if sub_key(p, "/results").is_some() && read => {
            let key = sub_key(p, "/results").expect("matched");
            let snapshot = app.snapshot();
            if let Err(denied) = authorize(&snapshot, request.headers(), Need::Read) {
                return denied;
            }
            let (settings, run) = match results_query(request.uri().query()) {
                Ok(query) => query,
                Err(message) => {
                    return json(
                        StatusCode::BAD_REQUEST,
                        &serde_json::json!({ "error": message }),
                    )
                }
            };
            let now = crate::util::time::unix_ms(std::time::SystemTime::now());
            match crate::admin::results::collect(&snapshot, &app, key, run, now) {
                Ok(results) => json(
                    StatusCode::OK,
                    &crate::admin::results::to_json(&results, settings),
                ),
                // An unknown experiment and a run it never had are both "not found".
                Err(err) => json(
                    StatusCode::NOT_FOUND,
                    &serde_json::json!({ "error": err.to_string() }),
                ),
            }
        }
        p if p.starts_with("/api/experiments/") && method == Method::PATCH => {
            let key = p["/api/experiments/".len()..].to_string();
            let snapshot = app.snapshot();
            if let Err(denied) = authorize(&snapshot, request.headers(), Need::Write) {
                return denied;
            }
            let body = match read_body(&snapshot, request).await {
                Ok(body) => body,
                Err(response) => return response,
            };
            // File reads, writes and fsyncs: off the async workers.
            let answer = tokio::task::spawn_blocking(move || api::patch(&app, &key, &body))
                .await
                .unwrap_or_else(|_| {
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        serde_json::json!({"error": "the change failed"}),
                    )
                });
            json(answer.0, &answer.1)
        }
        "/experiments" if read => experiments_page(&app, &request),
        "/login" if method == Method::POST => login(&app, request).await,
        "/logout" if method == Method::POST => redirect("/experiments", Some(clear_session())),
        "/metrics" | "/healthz" | "/api/experiments" | "/experiments" | "/login" | "/logout" => {
            text(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                b"method not allowed\n".to_vec(),
            )
        }
        p if sub_key(p, "/results").is_some() || sub_key(p, "/decisions").is_some() => json(
            StatusCode::METHOD_NOT_ALLOWED,
            &serde_json::json!({"error": "use GET"}),
        ),
        p if p.starts_with("/api/experiments/") => json(
            StatusCode::METHOD_NOT_ALLOWED,
            &serde_json::json!({"error": "use PATCH"}),
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            b"not found; try /experiments, /api/experiments or /metrics\n".to_vec(),
        ),
    }
}

/// `/api/experiments/{key}{suffix}` (`/results`, `/decisions`) → `key` (not empty).
fn sub_key<'p>(path: &'p str, suffix: &str) -> Option<&'p str> {
    path.strip_prefix("/api/experiments/")?
        .strip_suffix(suffix)
        .filter(|key| !key.is_empty() && !key.contains('/'))
}

/// `?confidence=0.99` (default 0.95) and `?run=N` (default: the last run).
fn results_query(
    query: Option<&str>,
) -> Result<(crate::stats::analysis::Settings, Option<u32>), String> {
    let mut settings = crate::stats::analysis::Settings::default();
    let mut run = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("confidence", value)) => match value.parse::<f64>() {
                Ok(c) if c > 0.0 && c < 1.0 => settings.confidence = c,
                _ => return Err(format!("confidence: `{value}` is not between 0 and 1")),
            },
            Some(("run", _)) if run.is_some() => return Err("run: given twice".to_string()),
            Some(("run", value)) => run = Some(crate::admin::results::parse_run(value)?),
            _ => {
                return Err(format!(
                    "unknown query parameter `{pair}` (only confidence and run)"
                ))
            }
        }
    }
    Ok((settings, run))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Read,
    Write,
}

/// The caller, or the response that refuses it.
fn authorize(
    snapshot: &crate::state::snapshot::Snapshot,
    headers: &http::HeaderMap,
    need: Need,
) -> Result<Caller, Response<Full<Bytes>>> {
    let Some(token) = snapshot.admin_token.as_ref() else {
        return match need {
            Need::Read => Ok(Caller::Unknown),
            Need::Write => Err(json(
                StatusCode::FORBIDDEN,
                &serde_json::json!({ "error": auth::HOW_TO_SET }),
            )),
        };
    };
    match auth::identify(headers, Some(token), &snapshot.signer) {
        Caller::Unknown => {
            let mut response = json(
                StatusCode::UNAUTHORIZED,
                &serde_json::json!({"error": "missing or wrong admin token (Authorization: Bearer <token>)"}),
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Err(response)
        }
        Caller::Session { csrf } if need == Need::Write && !auth::csrf_ok(headers, &csrf) => {
            Err(json(
                StatusCode::FORBIDDEN,
                &serde_json::json!({"error": "missing or wrong X-CSRF-Token (reload the admin page)"}),
            ))
        }
        caller => Ok(caller),
    }
}

fn experiments_page(app: &App, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let snapshot = app.snapshot();
    let nonce = nonce();
    let (caller, notice) = match authorize(&snapshot, request.headers(), Need::Read) {
        Err(_) => return html(StatusCode::UNAUTHORIZED, page::login_page(None), &nonce),
        Ok(caller) => {
            let notice = match (&caller, snapshot.admin_token.is_some()) {
                (_, false) => Some(auth::HOW_TO_SET),
                (Caller::Bearer, true) => {
                    Some("Read with a bearer token: log in through the form to make changes here.")
                }
                _ => None,
            };
            (caller, notice)
        }
    };
    let csrf = match &caller {
        Caller::Session { csrf } => Some(csrf.as_str()),
        _ => None,
    };
    let experiments = api::list(&snapshot);
    let now = crate::util::time::unix_ms(std::time::SystemTime::now());
    let settings = crate::stats::analysis::Settings::default();
    let (selected, mut problems) = page_runs(request.uri().query());
    let mut status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    for key in selected.keys() {
        if !snapshot.config.experiments.iter().any(|e| &e.key == key) {
            problems.push(format!("run.{key}: no experiment `{key}`"));
            status = StatusCode::NOT_FOUND;
        }
    }
    let outcomes: Vec<results_view::Outcome> = snapshot
        .config
        .experiments
        .iter()
        .filter_map(|e| {
            let asked = selected.get(&e.key).copied();
            let (results, problem) =
                match crate::admin::results::collect(&snapshot, &app, &e.key, asked, now) {
                    Ok(results) => (results, None),
                    // A run it never had: say so, and show the last one.
                    Err(err) => (
                        crate::admin::results::collect(&snapshot, &app, &e.key, None, now).ok()?,
                        Some(format!("{err}: showing the last run instead.")),
                    ),
                };
            if problem.is_some() {
                status = StatusCode::NOT_FOUND;
            }
            let report = crate::stats::analysis::analyze(&results.counts, settings)
                .map_err(|e| e.to_string());
            Some(results_view::Outcome {
                title: e.title.clone(),
                state: e.state,
                results,
                report,
                confidence: settings.confidence,
                problem,
            })
        })
        .collect();
    let problems = problems.join(" ");
    let notice = match (notice, problems.is_empty()) {
        (Some(n), false) => Some(format!("{problems} {n}")),
        (None, false) => Some(problems),
        (n, true) => n.map(str::to_string),
    };
    let body = page::experiments_page(&page::PageContext {
        experiments: &experiments,
        csrf,
        can_write: csrf.is_some(),
        notice: notice.as_deref(),
        logged_in: csrf.is_some(),
        nonce: &nonce,
        results: &outcomes,
        selected: &selected,
        now_ms: now,
    });
    html(status, body, &nonce)
}

/// The page's `run.KEY=N` choices, and what was wrong with the others.
fn page_runs(query: Option<&str>) -> (std::collections::BTreeMap<String, u32>, Vec<String>) {
    let mut selected = std::collections::BTreeMap::new();
    let mut problems = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name.strip_prefix("run.") {
            Some(key)
                if crate::config::names::check_name(
                    key,
                    crate::config::names::NameKind::Experiment,
                )
                .is_ok() =>
            {
                match crate::admin::results::parse_run(value) {
                    Ok(n) => {
                        selected.insert(key.to_string(), n);
                    }
                    Err(message) => problems.push(format!("run.{key}: {message}")),
                }
            }
            _ => problems.push(format!(
                "unknown query parameter `{name}` (the page takes run.EXPERIMENT=N)"
            )),
        }
    }
    (selected, problems)
}

async fn login(app: &App, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let snapshot = app.snapshot();
    let nonce = nonce();
    let Some(token) = snapshot.admin_token.clone() else {
        return html(
            StatusCode::FORBIDDEN,
            page::login_page(Some(auth::HOW_TO_SET)),
            &nonce,
        );
    };
    let body = match read_body(&snapshot, request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let form = String::from_utf8_lossy(&body);
    let candidate = crate::experiments::targeting::query_param(&form, "token").unwrap_or_default();
    if !token.matches(candidate.trim()) {
        return html(
            StatusCode::UNAUTHORIZED,
            page::login_page(Some("That is not the admin token.")),
            &nonce,
        );
    }
    let session = auth::new_session(&token, &snapshot.signer, SystemTime::now());
    let attributes = format!(
        "; Path=/; Max-Age={}; HttpOnly; SameSite=Strict",
        auth::SESSION_TTL.as_secs()
    );
    redirect(
        "/experiments",
        Some(crate::experiments::device::set_cookie(
            auth::SESSION_COOKIE,
            &session,
            &attributes,
        )),
    )
}

fn clear_session() -> HeaderValue {
    HeaderValue::from_static("abproxy_admin=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")
}

async fn read_body(
    snapshot: &Snapshot,
    request: Request<Incoming>,
) -> Result<Bytes, Response<Full<Bytes>>> {
    crate::transport::body::read_limited(request.into_body(), snapshot.config.limits.max_body_bytes)
        .await
        .map_err(|e| json(e.status(), &serde_json::json!({ "error": e.to_string() })))
}

fn nonce() -> String {
    // A CSP nonce must not be guessable; without randomness, refuse to render a page
    // that trusts it (an empty nonce matches no script).
    crate::util::random::token(16).unwrap_or_default()
}

fn text(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = text(
        status,
        "application/json",
        serde_json::to_vec(value).expect("JSON serialises"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn html(status: StatusCode, body: String, nonce: &str) -> Response<Full<Bytes>> {
    let mut response = text(status, "text/html; charset=utf-8", body.into_bytes());
    let h = response.headers_mut();
    // Only our own inline script (by nonce) and styles; nothing from elsewhere.
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::try_from(csp).expect("hex nonce"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn redirect(to: &'static str, cookie: Option<HeaderValue>) -> Response<Full<Bytes>> {
    let mut response = text(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        Vec::new(),
    );
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    if let Some(cookie) = cookie {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}
