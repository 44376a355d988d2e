//! Tree → [`Config`]: every key checked, every error placed at the key it is about and
//! named by its dotted path (`experiments.moon_mars.fallback`).
//!
//! One file per section of the config, all built on [`fields`] (the shared error and
//! typed getters); this file is the entry point that reads the top-level mapping and
//! calls the sections in order, so the first error in a file is the one reported.

mod bandit;
mod cookie;
mod decide;
mod experiments;
mod export;
// `pub(super)`: the config tests check `fields::parse_duration` directly.
pub(super) mod fields;
mod goals;
mod limits;
mod listeners;
mod notify;
mod prometheus;
mod qa;
mod targeting;
mod upstreams;

use std::path::PathBuf;

use crate::config::yaml::Node;
use crate::config::Config;
use fields::{Fields, Result};

/// Defaults, also listed in the README's config reference (the other sections' defaults
/// are beside their code).
pub const DEFAULT_DATA_DIR: &str = "./data";

pub(super) fn config(root: &Node) -> Result<Config> {
    let top = Fields::new(
        root,
        "",
        root.pos,
        &[
            "listen",
            "tls",
            "admin",
            "upstreams",
            "default_upstream",
            "host_header",
            "cookie",
            "timeouts",
            "pool",
            "limits",
            "data_dir",
            "secret_file",
            "qa_override",
            "export",
            "prometheus",
            "notify",
            "experiments",
        ],
    )?;
    let listen = listeners::listen(&top)?;
    let (admin_listen, admin_token_file) = listeners::admin(&top)?;
    let tls = listeners::tls(&top)?;
    let upstreams = upstreams::upstreams(&top, root.pos)?;
    let default_upstream = upstreams::default_upstream(&top, &upstreams)?;
    let host_header = upstreams::host_header(&top)?;
    let cookie = cookie::cookie(&top)?;
    let timeouts = limits::timeouts(&top)?;
    let pool = limits::pool(&top)?;
    let limits = limits::limits(&top)?;
    // Before the experiments: a bandit or a `decide` with `counts: prometheus` needs it.
    let prometheus = match top.get("prometheus") {
        None => None,
        Some((key, node)) => Some(prometheus::prometheus(key, node)?),
    };
    let experiments = experiments::experiments(&top, &upstreams, prometheus.as_ref())?;
    listeners::check_addresses(&top, listen, admin_listen, &upstreams)?;
    let data_dir = top
        .path("data_dir")?
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let secret_file = top.path("secret_file")?;
    let qa_override = match top.get("qa_override") {
        None => None,
        Some((key, node)) => Some(qa::qa_override(key, node)?),
    };
    let export = match top.get("export") {
        None => None,
        Some((key, node)) => Some(export::export(key, node)?),
    };
    let notify = match top.get("notify") {
        None => None,
        Some((key, node)) => Some(notify::notify(key, node)?),
    };
    Ok(Config {
        listen,
        tls,
        admin_listen,
        upstreams,
        default_upstream,
        host_header,
        cookie,
        timeouts,
        pool,
        limits,
        data_dir,
        secret_file,
        admin_token_file,
        qa_override,
        export,
        prometheus,
        notify,
        experiments,
    })
}
