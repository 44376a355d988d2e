//! `abproxy simulate`: drive a running proxy like real visitors, and print what the
//! original demo's simulator printed. Each visit is a new device: it loads the page
//! (getting its cookies), reads its groups from `/_ab/assignments`, and clicks with the
//! probability given for its variant by sending the event to `/_ab/events`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::stats::{self, Proportion};
use crate::util::random::SplitMix;

#[derive(Debug, Clone)]
pub struct Options {
    /// The proxy's base URL, e.g. `http://127.0.0.1:8080`.
    pub target: String,
    pub visits: usize,
    /// (variant, click probability), in the order given.
    pub click_probs: Vec<(String, f64)>,
    pub event: String,
    pub params: serde_json::Value,
    pub concurrency: usize,
    pub seed: u64,
    /// The designed split for the SRM line; equal when empty.
    pub weights: Vec<(String, f64)>,
}

/// One simulated visit: every experiment's group, and whether it clicked.
#[derive(Debug, Clone, PartialEq)]
pub struct Visit {
    pub groups: BTreeMap<String, String>,
    pub clicked: bool,
}

/// Run the simulation; `progress` is called with the number of visits done.
pub async fn run(
    options: &Options,
    progress: impl Fn(usize) + Send + Sync + 'static,
) -> Result<Vec<Visit>, String> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let base = options.target.trim_end_matches('/').to_string();
    let next = Arc::new(AtomicUsize::new(0));
    let visits = Arc::new(Mutex::new(Vec::with_capacity(options.visits)));
    let progress = Arc::new(progress);
    let mut workers = Vec::new();
    for worker in 0..options.concurrency.max(1) {
        let (client, base, next, visits, progress, options) = (
            client.clone(),
            base.clone(),
            next.clone(),
            visits.clone(),
            progress.clone(),
            options.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut rng = SplitMix(options.seed.wrapping_add(worker as u64 * 0x9E37_79B9));
            loop {
                if next.fetch_add(1, Ordering::Relaxed) >= options.visits {
                    return Ok::<(), String>(());
                }
                let visit = visit(&client, &base, &options, &mut rng).await?;
                let done = {
                    let mut all = visits.lock().unwrap_or_else(|p| p.into_inner());
                    all.push(visit);
                    all.len()
                };
                progress(done);
            }
        }));
    }
    for w in workers {
        w.await.map_err(|e| e.to_string())??;
    }
    let visits = std::mem::take(&mut *visits.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(visits)
}

async fn visit(
    client: &Client<HttpConnector, Full<Bytes>>,
    base: &str,
    options: &Options,
    rng: &mut SplitMix,
) -> Result<Visit, String> {
    let (headers, _) = request(client, Request::get(format!("{base}/")), Bytes::new()).await?;
    let mut jar = merge_cookies(&headers, "");
    let (headers, body) = request(
        client,
        Request::get(format!("{base}/_ab/assignments")).header(header::COOKIE, &jar),
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
            Request::post(format!("{base}/_ab/events"))
                .header(header::COOKIE, &jar)
                .header(header::CONTENT_TYPE, "application/json"),
            Bytes::from(event),
        )
        .await?;
    }
    Ok(Visit { groups, clicked })
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

/// What the original demo's simulator printed: per experiment the split, per variant the
/// conversion with its 95 % interval and the true (given) probability, the z-test and
/// SRM lines, then the independence of every pair of experiments.
pub fn report(options: &Options, visits: &[Visit]) -> String {
    let mut out = format!(
        "simulated {} visits to {} (click probabilities: {})\n",
        visits.len(),
        options.target,
        options
            .click_probs
            .iter()
            .map(|(v, p)| format!("{v}={p}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let experiments: Vec<String> = visits
        .iter()
        .flat_map(|v| v.groups.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for experiment in &experiments {
        out.push_str(&format!("\nexperiment {experiment}\n"));
        let mut by_variant: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for v in visits {
            if let Some(g) = v.groups.get(experiment) {
                let e = by_variant.entry(g.as_str()).or_default();
                e.0 += 1;
                e.1 += u64::from(v.clicked);
            }
        }
        let total: u64 = by_variant.values().map(|(n, _)| n).sum();
        for (variant, (n, _)) in &by_variant {
            out.push_str(&format!(
                "  {variant}: {n} visits ({:.2}%)\n",
                100.0 * *n as f64 / total as f64
            ));
        }
        let known: Vec<(&str, f64)> = options
            .click_probs
            .iter()
            .filter(|(v, _)| by_variant.contains_key(v.as_str()))
            .map(|(v, p)| (v.as_str(), *p))
            .collect();
        for (variant, exact) in &known {
            let (n, clicks) = by_variant[variant];
            let rate = clicks as f64 / n as f64;
            let half = stats::z_critical(0.95) * (rate * (1.0 - rate) / n as f64).sqrt();
            out.push_str(&format!(
                "  {variant}: visits {n}, clicks {clicks}, Conv={:.2} +- {:.2}%, Exact: {:.2}%\n",
                100.0 * rate,
                100.0 * half,
                100.0 * exact
            ));
        }
        if let Some((control, _)) = known.first() {
            let (na, ca) = by_variant[control];
            for (variant, _) in known.iter().skip(1) {
                let (nb, cb) = by_variant[variant];
                match stats::two_proportion_z(
                    Proportion {
                        conversions: ca,
                        users: na,
                    },
                    Proportion {
                        conversions: cb,
                        users: nb,
                    },
                ) {
                    Some((z, p)) => out.push_str(&format!(
                        "  z-test {variant} vs {control}: z = {z:.2}, p = {p:.4}\n"
                    )),
                    None => {
                        out.push_str(&format!("  z-test {variant} vs {control}: no variance\n"))
                    }
                }
            }
        }
        let observed: Vec<u64> = by_variant.values().map(|(n, _)| *n).collect();
        let weights: Vec<f64> = if options.weights.is_empty() {
            vec![1.0; observed.len()]
        } else {
            by_variant
                .keys()
                .map(|v| {
                    options
                        .weights
                        .iter()
                        .find(|(n, _)| n == v)
                        .map_or(0.0, |(_, w)| *w)
                })
                .collect()
        };
        let against = if options.weights.is_empty() {
            "equal weights"
        } else {
            "the given weights"
        };
        if let Some((_, p)) = stats::sample_ratio_mismatch(&observed, &weights) {
            let flag = if p < crate::stats::analysis::SRM_THRESHOLD {
                "MISMATCH"
            } else {
                "ok"
            };
            out.push_str(&format!("  SRM against {against}: p = {p:.4} ({flag})\n"));
        }
    }
    for (i, a) in experiments.iter().enumerate() {
        for b in &experiments[i + 1..] {
            let rows: Vec<&str> = variants_of(visits, a);
            let cols: Vec<&str> = variants_of(visits, b);
            let table: Vec<Vec<u64>> = rows
                .iter()
                .map(|r| {
                    cols.iter()
                        .map(|c| {
                            visits
                                .iter()
                                .filter(|v| {
                                    v.groups.get(a).map(String::as_str) == Some(*r)
                                        && v.groups.get(b).map(String::as_str) == Some(*c)
                                })
                                .count() as u64
                        })
                        .collect()
                })
                .collect();
            out.push_str(&format!(
                "\nindependence of {a} and {b}\n  {:<10}{}\n",
                "",
                cols.iter().map(|c| format!("{c:>10}")).collect::<String>()
            ));
            for (r, row) in rows.iter().zip(&table) {
                out.push_str(&format!(
                    "  {r:<10}{}\n",
                    row.iter().map(|n| format!("{n:>10}")).collect::<String>()
                ));
            }
            match stats::independence(&table) {
                Some((chi2, p)) => out.push_str(&format!("  chi2 = {chi2:.2}, p = {p:.4}\n")),
                None => out.push_str("  (one of them has a single group: nothing to test)\n"),
            }
        }
    }
    out
}

fn variants_of<'v>(visits: &'v [Visit], experiment: &str) -> Vec<&'v str> {
    visits
        .iter()
        .filter_map(|v| v.groups.get(experiment).map(String::as_str))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
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

    fn options() -> Options {
        Options {
            target: "http://x".into(),
            visits: 0,
            click_probs: vec![("Moon".into(), 0.1), ("Mars".into(), 0.2)],
            event: "button_click".into(),
            params: serde_json::json!({}),
            concurrency: 1,
            seed: 1,
            weights: vec![],
        }
    }

    fn visit(mm: &str, btn: &str, clicked: bool) -> Visit {
        Visit {
            groups: [
                ("moon_mars".to_string(), mm.to_string()),
                ("btn".to_string(), btn.to_string()),
            ]
            .into(),
            clicked,
        }
    }

    #[test]
    fn report_lines() {
        let mut visits = Vec::new();
        for i in 0..100 {
            visits.push(visit("Moon", if i % 2 == 0 { "A" } else { "B" }, i < 10));
            visits.push(visit("Mars", if i % 2 == 0 { "A" } else { "B" }, i < 25));
        }
        let text = report(&options(), &visits);
        assert!(text.contains("  Mars: 100 visits (50.00%)"), "{text}");
        // 25/100 = 25.00 %, half-width 1.96·√(0.25·0.75/100) = 8.49 points.
        assert!(
            text.contains("  Mars: visits 100, clicks 25, Conv=25.00 +- 8.49%, Exact: 20.00%"),
            "{text}"
        );
        // python3 -c "from statsmodels.stats.proportion import proportions_ztest;
        //   print(proportions_ztest([25, 10], [100, 100]))"  → (2.7914526, 0.0052472)
        assert!(
            text.contains("  z-test Mars vs Moon: z = 2.79, p = 0.0052"),
            "{text}"
        );
        assert!(
            text.contains("  SRM against equal weights: p = 1.0000 (ok)"),
            "{text}"
        );
        assert!(text.contains("independence of btn and moon_mars"), "{text}");
        assert!(text.contains("chi2 = 0.00, p = 1.0000"), "{text}");
    }

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
}
