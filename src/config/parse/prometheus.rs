//! The top-level `prometheus`: the server that scrapes every replica (`url`) and how long
//! after a bandit's boundary its counts are read (`settle`).

use std::time::Duration;

use super::fields::{error, scalar, Fields, Result};
use super::upstreams::check_authority;
use crate::config::yaml::{Key, Node};
use crate::config::PrometheusSource;

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
