//! The top-level `prometheus`: the server that scrapes every replica (`url`) and how long
//! after a bandit's boundary its counts are read (`settle`); and the `counts: local |
//! prometheus` of a bandit or a `decide`, which may need it.

use std::time::Duration;

use super::fields::{error, join, scalar, show_duration, Fields, Result};
use super::upstreams::check_authority;
use crate::config::yaml::{Key, Node};
use crate::config::{BanditCounts, PrometheusSource};

/// Default of `settle`, also in the README's config reference: a few of Prometheus's
/// usual 10–15 s scrape intervals.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(30);

/// `prometheus: { url: http://127.0.0.1:9090, settle: 30s }`
pub(super) fn prometheus(key: &Key, node: &Node) -> Result<PrometheusSource> {
    let f = Fields::new(node, "prometheus", key.pos, &["url", "settle"])?;
    let (ukey, unode) = f.required("url")?;
    let upath = f.child_path(ukey);
    let url = parse_url(scalar(ukey, unode, &upath)?).or_else(|m| error(ukey.pos, &upath, m))?;
    let settle = f.duration("settle", DEFAULT_SETTLE, Duration::ZERO)?;
    Ok(PrometheusSource { url, settle })
}

/// `counts: local` (the default) or `prometheus` of the section `f` (a bandit, a
/// `decide`), whose boundaries are `every` apart (`every_key` is the key that sets it).
/// `prometheus` needs the top-level source, and `every` longer than its `settle`.
pub(super) fn counts(
    f: &Fields,
    every_key: &str,
    every: Duration,
    prometheus: Option<&PrometheusSource>,
) -> Result<BanditCounts> {
    match f.string("counts")? {
        None => Ok(BanditCounts::Local),
        Some((_, c)) if c == "local" => Ok(BanditCounts::Local),
        Some((pos, c)) if c == "prometheus" => {
            let Some(source) = prometheus else {
                return error(
                    pos,
                    &join(&f.path, "counts"),
                    "`counts: prometheus` needs the top-level `prometheus: { url: http://HOST:9090 }` that scrapes every replica",
                );
            };
            if every <= source.settle {
                // The counts of a boundary are read `settle` after it: that must come
                // before the next boundary.
                let at = f.get(every_key).map_or(pos, |(k, _)| k.pos);
                return error(
                    at,
                    &f.path,
                    format!(
                        "`{every_key}` ({}) must be longer than `prometheus.settle` ({}): the counts of each boundary are read `settle` after it",
                        show_duration(every),
                        show_duration(source.settle)
                    ),
                );
            }
            Ok(BanditCounts::Prometheus)
        }
        Some((pos, c)) => error(
            pos,
            &join(&f.path, "counts"),
            format!("`{c}` is not one of: local, prometheus"),
        ),
    }
}

/// `http://host:port`, optionally with a path prefix (`http://host/prometheus`, behind a
/// reverse proxy); the query API's path is appended to it.
fn parse_url(url: &str) -> std::result::Result<http::Uri, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("`{url}` is not a URL like http://127.0.0.1:9090"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "`{url}`: only http:// is supported (the replicas query Prometheus without TLS)"
            ))
        }
        _ => return Err(format!("`{url}` must start with http://")),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("`{url}` has no host"))?;
    check_authority(url, authority, "prometheus")?;
    if uri.query().is_some() {
        return Err(format!(
            "`{url}`: a Prometheus URL cannot have a query (a path prefix is fine)"
        ));
    }
    Ok(uri)
}
