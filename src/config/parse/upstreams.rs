//! The upstreams: `upstreams` (name → `http(s)://host:port`, or a mapping with `url`,
//! `http2` and `ca_file`), `default_upstream` (which of them gets requests no experiment
//! routes) and `host_header` (which `Host` they see).

use super::fields::{error, named_entries, scalar, Fields, Result};
use crate::config::names;
use crate::config::yaml::{Pos, Value};
use crate::config::{HostPolicy, Upstream};

/// `upstreams:`; at least one is needed (an empty or truncated file is refused here, so
/// it is never applied). `root` is where to point when the section is missing.
pub(super) fn upstreams(top: &Fields, root: Pos) -> Result<Vec<Upstream>> {
    let upstreams = entries(top)?;
    if upstreams.is_empty() {
        // Also what an empty or truncated file looks like: never apply one.
        let pos = top.get("upstreams").map_or(root, |(key, _)| key.pos);
        return error(
            pos,
            "upstreams",
            "a config needs at least one upstream (name: http://host:port)",
        );
    }
    Ok(upstreams)
}

fn entries(top: &Fields) -> Result<Vec<Upstream>> {
    let entries = named_entries(top, "upstreams", "a mapping of name: URL")?;
    let mut upstreams = Vec::with_capacity(entries.len());
    for (key, node) in entries {
        let path = format!("upstreams.{}", key.name);
        if let Err(m) = names::check_name(&key.name, names::NameKind::Upstream) {
            return error(key.pos, &path, m);
        }
        // `name: URL`, or `name: { url: URL, http2: true, ca_file: PATH }`.
        let (url, url_pos, url_path, options) = match &node.value {
            Value::Map(_) => {
                let f = Fields::new(node, &path, key.pos, &["url", "http2", "ca_file"])?;
                let (url_key, url_node) = f.required("url")?;
                let url_path = f.child_path(url_key);
                (
                    scalar(url_key, url_node, &url_path)?,
                    url_key.pos,
                    url_path,
                    Some(f),
                )
            }
            _ => (scalar(key, node, &path)?, key.pos, path.clone(), None),
        };
        let (tls, origin) = parse_origin(url).or_else(|m| error(url_pos, &url_path, m))?;
        let (http2, ca_file) = match &options {
            None => (false, None),
            Some(f) => (f.boolean("http2", false)?, f.path("ca_file")?),
        };
        if ca_file.is_some() && !tls {
            return error(
                key.pos,
                &path,
                "`ca_file` is for https:// upstreams (it says whose certificates to trust)",
            );
        }
        upstreams.push(Upstream {
            name: key.name.clone(),
            origin,
            tls,
            http2,
            ca_file,
        });
    }
    Ok(upstreams)
}

/// `http://host:port` or `https://host:port` (port defaults to 80 or 443): whether it
/// is TLS, and the authority. Paths and query strings are refused rather than silently
/// ignored: the proxy forwards the client's path unchanged.
fn parse_origin(url: &str) -> std::result::Result<(bool, http::uri::Authority), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("`{url}` is not a URL like http://127.0.0.1:9001"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("`{url}` must start with http:// or https://")),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| format!("`{url}` has no host"))?
        .clone();
    check_authority(url, &authority, "upstream")?;
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "`{url}`: an upstream URL cannot have a path or query; requests keep their own path"
        ));
    }
    Ok((tls, authority))
}

/// A URL's `host:port` that a connector can use: a port (if written) of 1–65535 and no
/// credentials. `what` names the URL in the message (`upstream`, `prometheus`, `webhook`).
pub(super) fn check_authority(
    url: &str,
    authority: &http::uri::Authority,
    what: &str,
) -> std::result::Result<(), String> {
    if authority.host().is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    // First: the colon of `user:password@host` would pass for a port's.
    if authority.as_str().contains('@') {
        return Err(format!(
            "`{url}`: credentials in {what} URLs are not supported"
        ));
    }
    // `http` accepts any digits after the colon; an out-of-range port would silently
    // become port 80 in the connector.
    if authority
        .as_str()
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'))
        && authority.port_u16().is_none_or(|p| p == 0)
    {
        return Err(format!("`{url}` has an invalid port (1–65535)"));
    }
    Ok(())
}

/// `default_upstream: NAME`, one of `upstreams`.
pub(super) fn default_upstream(top: &Fields, upstreams: &[Upstream]) -> Result<Option<String>> {
    match top.string("default_upstream")? {
        None => Ok(None),
        Some((pos, name)) => {
            if !upstreams.iter().any(|u| u.name == name) {
                return error(pos, "default_upstream", unknown_upstream(&name, upstreams));
            }
            Ok(Some(name))
        }
    }
}

/// `host_header: client` (the default) or `upstream`.
pub(super) fn host_header(top: &Fields) -> Result<HostPolicy> {
    match top.string("host_header")? {
        None => Ok(HostPolicy::Client),
        Some((_, v)) if v == "client" => Ok(HostPolicy::Client),
        Some((_, v)) if v == "upstream" => Ok(HostPolicy::Upstream),
        Some((pos, v)) => error(
            pos,
            "host_header",
            format!("`{v}` is not one of: client, upstream"),
        ),
    }
}

/// The error for a name that is no upstream, listing the ones there are.
pub(super) fn unknown_upstream(name: &str, upstreams: &[Upstream]) -> String {
    let known: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
    format!(
        "unknown upstream `{name}` (defined upstreams: {})",
        if known.is_empty() {
            "none".into()
        } else {
            known.join(", ")
        }
    )
}
