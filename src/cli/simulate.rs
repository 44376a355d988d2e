//! `abproxy simulate`: drive a running proxy like real visitors, and print what the
//! original demo's simulator printed (`report`). Each visit is a new device: it loads the
//! page (getting its cookies), reads its groups from `/_ab/assignments?path=PAGE`, and
//! clicks with the probability given for its variant by sending the event to
//! `/_ab/events`.
//!
//! With the admin listener (`--admin`), the experiments' titles, weights and pages are
//! read before the first visit (`design`): `--click-probs` names are checked, the page is
//! one every simulated experiment applies to, and the split is checked against the real
//! weights. Without it, names are checked against the variants the visits got, and the
//! split only against `--weights`.
//!
//! The visits are paced by `pacing` (`-n`, `--duration`, `--rate`). After them, with
//! the admin listener, each experiment's results are read once more for its periods
//! (`periods`: the shares a bandit or a weight change set, and who was assigned when).

pub mod command;
pub mod design;
pub mod pacing;
pub mod periods;
pub mod report;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::util::random::SplitMix;

#[derive(Debug, Clone)]
pub struct Options {
    /// The proxy's base URL, e.g. `http://127.0.0.1:8080`.
    pub target: String,
    /// How many visits, for how long, how fast.
    pub pacing: pacing::Pacing,
    /// (variant, click probability), in the order given.
    pub click_probs: Vec<(String, f64)>,
    pub event: String,
    pub params: serde_json::Value,
    pub concurrency: usize,
    pub seed: u64,
    /// The designed split for the SRM line when there is no `admin` to read it from.
    pub weights: Vec<(String, f64)>,
    /// The proxy's admin URL (`http://127.0.0.1:8081`) and its token, if it has one.
    pub admin: Option<String>,
    pub token: Option<String>,
    /// The page each visit loads; by default one the simulated experiments apply to
    /// (known from `admin`), else `/`.
    pub path: Option<String>,
}

pub use report::{report, After};

/// Run a whole simulation: read the experiments (with `admin`), check the options
/// against them, drive the visits, read the experiments' periods (with `admin`) and
/// return the report. `progress` gets the number of visits done and the last one. An
/// error is a sentence for the user.
pub async fn simulate(
    options: &Options,
    progress: impl Fn(usize, &Visit) + Send + Sync + 'static,
) -> Result<String, String> {
    let designs = match &options.admin {
        Some(url) => {
            let list = crate::cli::remote::get_json(
                &format!("{}/api/experiments", url.trim_end_matches('/')),
                options.token.as_deref(),
                crate::cli::remote::Service::Admin,
            )
            .await
            .map_err(|e| {
                let hint = if e.contains("401") {
                    " (give --token, or set ABPROXY_ADMIN_TOKEN)"
                } else {
                    ""
                };
                format!("cannot read the experiments from the admin listener {url}: {e}{hint}")
            })?;
            let designs = design::from_api(&list)?;
            design::check_click_probs(&options.click_probs, &designs)?;
            Some(designs)
        }
        None => None,
    };
    let simulated = designs
        .as_deref()
        .map(|d| design::simulated(&options.click_probs, d))
        .unwrap_or_default();
    let (auto_path, host) = design::page_for(&simulated)?;
    let page = Page {
        path: options.path.clone().unwrap_or(auto_path),
        host,
    };
    if !page.path.starts_with('/') {
        return Err(format!("--path `{}` must start with /", page.path));
    }
    let (visits, elapsed) = run(options, &page, progress).await?;
    check_visits(options, &simulated, &page, &visits)?;
    let mut after = After {
        elapsed,
        results: BTreeMap::new(),
    };
    if let (Some(url), Some(designs)) = (&options.admin, &designs) {
        for design in designs {
            if visits.iter().any(|v| v.groups.contains_key(&design.key)) {
                let read = read_periods(url, options.token.as_deref(), &design.key).await;
                after.results.insert(design.key.clone(), read);
            }
        }
    }
    Ok(report(
        options,
        designs.as_deref(),
        &page.path,
        &visits,
        &after,
    ))
}

/// An experiment's run as the proxy tells it after the visits: its periods (a failure
/// here is a line of the report, not a lost simulation).
async fn read_periods(
    url: &str,
    token: Option<&str>,
    key: &str,
) -> Result<periods::RunResults, String> {
    let results = crate::cli::remote::get_json(
        &format!(
            "{}/api/experiments/{key}/results",
            url.trim_end_matches('/')
        ),
        token,
        crate::cli::remote::Service::Admin,
    )
    .await?;
    periods::RunResults::from_json(&results)
}

/// After the visits: a `--click-probs` name no visit got (without `admin`, the only way
/// to tell a typo), or a simulated experiment no visit was in (it does not apply to the
/// page), means the figures are not what was asked for.
fn check_visits(
    options: &Options,
    simulated: &[&design::Design],
    page: &Page,
    visits: &[Visit],
) -> Result<(), String> {
    let in_experiment = |key: &str| visits.iter().any(|v| v.groups.contains_key(key));
    if let Some(missed) = simulated.iter().find(|d| !in_experiment(&d.key)) {
        return Err(format!(
            "no visit was in experiment {} on the page {}: does it apply there (match, target)?",
            missed.key, page.path
        ));
    }
    if options.admin.is_some() {
        return Ok(());
    }
    let seen: std::collections::BTreeSet<&str> = visits
        .iter()
        .flat_map(|v| v.groups.values().map(String::as_str))
        .collect();
    let unseen: Vec<&str> = options
        .click_probs
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !seen.contains(n))
        .collect();
    if unseen.is_empty() {
        return Ok(());
    }
    Err(format!(
        "--click-probs: no visit to {} got {} (variants seen: {}): a typo, or an experiment \
         under a match.path_prefix (give --path)? With --admin URL the names and the page \
         are checked before any visit",
        page.path,
        unseen.join(", "),
        if seen.is_empty() {
            "none".to_string()
        } else {
            seen.into_iter().collect::<Vec<_>>().join(", ")
        }
    ))
}

/// What every visit requests: the page path and, for an experiment matched by host, the
/// Host header.
#[derive(Debug, Clone)]
pub struct Page {
    pub path: String,
    pub host: Option<String>,
}

/// One simulated visit: every experiment's group, and whether it clicked.
#[derive(Debug, Clone, PartialEq)]
pub struct Visit {
    pub groups: BTreeMap<String, String>,
    pub clicked: bool,
    /// When it started (before the page load that assigned the device): which period of
    /// a run it fell in, by the clock.
    pub at: SystemTime,
}

/// Run the simulation, each visit when `options.pacing` says; `progress` is called with
/// the number of visits done and the last one. The visits, and how long they took.
pub async fn run(
    options: &Options,
    page: &Page,
    progress: impl Fn(usize, &Visit) + Send + Sync + 'static,
) -> Result<(Vec<Visit>, Duration), String> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let base = options.target.trim_end_matches('/').to_string();
    let next = Arc::new(AtomicUsize::new(0));
    let start = tokio::time::Instant::now();
    let visits = Arc::new(Mutex::new(Vec::with_capacity(
        options.pacing.planned().min(1 << 20),
    )));
    let progress = Arc::new(progress);
    let mut workers = Vec::new();
    for worker in 0..options.concurrency.max(1) {
        let (client, base, next, visits, progress, options, page) = (
            client.clone(),
            base.clone(),
            next.clone(),
            visits.clone(),
            progress.clone(),
            options.clone(),
            page.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut rng = SplitMix(options.seed.wrapping_add(worker as u64 * 0x9E37_79B9));
            loop {
                // Each worker takes the next visit and waits for its time: the visits
                // start evenly whatever the number of workers.
                let Some(due) = options.pacing.due(next.fetch_add(1, Ordering::Relaxed)) else {
                    return Ok::<(), String>(());
                };
                tokio::time::sleep_until(start + due).await;
                // Behind the pace (a slow proxy), a timed run still ends on time: the
                // visits it had no time for are not made, and the report says so.
                if !options.pacing.in_time(start.elapsed()) {
                    return Ok(());
                }
                let visit = visit(&client, &base, &page, &options, &mut rng).await?;
                let done = {
                    let mut all = visits.lock().unwrap_or_else(|p| p.into_inner());
                    all.push(visit.clone());
                    all.len()
                };
                progress(done, &visit);
            }
        }));
    }
    for w in workers {
        w.await.map_err(|e| e.to_string())??;
    }
    let elapsed = start.elapsed();
    let visits = std::mem::take(&mut *visits.lock().unwrap_or_else(|p| p.into_inner()));
    Ok((visits, elapsed))
}

async fn visit(
    client: &Client<HttpConnector, Full<Bytes>>,
    base: &str,
    page: &Page,
    options: &Options,
    rng: &mut SplitMix,
) -> Result<Visit, String> {
    let at = SystemTime::now();
    let with_host = |builder: http::request::Builder| match &page.host {
        Some(host) => builder.header(header::HOST, host),
        None => builder,
    };
    let (headers, _) = request(
        client,
        with_host(Request::get(format!("{base}{}", page.path))),
        Bytes::new(),
    )
    .await?;
    let mut jar = merge_cookies(&headers, "");
    let (headers, body) = request(
        client,
        with_host(Request::get(format!(
            "{base}/_ab/assignments?path={}",
            query_escape(&page.path)
        )))
        .header(header::COOKIE, &jar),
        Bytes::new(),
    )
    .await?;
    jar = merge_cookies(&headers, &jar);
    let assignments: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("{base}/_ab/assignments did not answer JSON: {e}"))?;
    let groups: BTreeMap<String, String> = assignments
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v["group"].as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let probability = groups
        .values()
        .find_map(|g| {
            options
                .click_probs
                .iter()
                .find(|(v, _)| v == g)
                .map(|(_, p)| *p)
        })
        .unwrap_or(0.0);
    let clicked = rng.next_f64() < probability;
    if clicked {
        let event =
            serde_json::json!({ "event": options.event, "params": options.params }).to_string();
        request(
            client,
            with_host(Request::post(format!("{base}/_ab/events")))
                .header(header::COOKIE, &jar)
                .header(header::CONTENT_TYPE, "application/json"),
            Bytes::from(event),
        )
        .await?;
    }
    Ok(Visit {
        groups,
        clicked,
        at,
    })
}

async fn request(
    client: &Client<HttpConnector, Full<Bytes>>,
    builder: http::request::Builder,
    body: Bytes,
) -> Result<(HeaderMap, Bytes), String> {
    let request = builder.body(Full::new(body)).map_err(|e| e.to_string())?;
    let uri = request.uri().to_string();
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("{uri}: {e}"))?;
    let (parts, body) = response.into_parts();
    if !parts.status.is_success() {
        return Err(format!("{uri} answered {}", parts.status));
    }
    let body = body
        .collect()
        .await
        .map_err(|e| format!("{uri}: {e}"))?
        .to_bytes();
    Ok((parts.headers, body))
}

/// What a browser sends next: the `Cookie` value `jar` (`a=1; b=2`) after a response's
/// `Set-Cookie` fields (a cookie set again replaces the old one; `Max-Age=0` deletes it).
pub fn merge_cookies(headers: &HeaderMap, jar: &str) -> String {
    let mut pairs: Vec<(String, String)> = jar
        .split("; ")
        .filter_map(|p| p.split_once('='))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    for set in headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        if let Some((name, value)) = set.split(';').next().and_then(|p| p.split_once('=')) {
            pairs.retain(|(n, _)| n != name);
            if !set.contains("Max-Age=0") {
                pairs.push((name.to_string(), value.to_string()));
            }
        }
    }
    pairs
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `path` as a query value: what would end or split it is percent-encoded.
fn query_escape(path: &str) -> String {
    path.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Parse `Moon=0.1,Mars=0.2` (probabilities or weights).
pub fn parse_pairs(text: &str, what: &str) -> Result<Vec<(String, f64)>, String> {
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("{what}: `{pair}` is not NAME=NUMBER"))?;
            let value: f64 = value
                .trim()
                .parse()
                .map_err(|_| format!("{what}: `{value}` is not a number"))?;
            if !(value >= 0.0) {
                return Err(format!("{what}: `{value}` must be 0 or more"));
            }
            Ok((name.trim().to_string(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs() {
        assert_eq!(
            parse_pairs("Moon=0.1, Mars=0.2", "x").unwrap(),
            vec![("Moon".to_string(), 0.1), ("Mars".to_string(), 0.2)]
        );
        assert!(parse_pairs("Moon", "x").is_err());
        assert!(parse_pairs("Moon=-1", "x").is_err());
        assert!(parse_pairs("Moon=NaN", "x").is_err());
    }

    #[test]
    fn a_page_path_survives_the_query() {
        assert_eq!(query_escape("/shop/a b&c=d"), "/shop/a%20b%26c%3Dd");
        let decoded = crate::experiments::targeting::query_param(
            &format!("path={}", query_escape("/shop/a b&c=d")),
            "path",
        );
        assert_eq!(decoded.as_deref(), Some("/shop/a b&c=d"));
    }
}
