//! How long and how much: `timeouts` (connect, upstream response, header read, request
//! body idle, shutdown grace), `pool` (idle upstream connections) and `limits`
//! (connections, header and body sizes).

use std::time::Duration;

use super::fields::{integer, Fields, Result};
use crate::config::yaml::{Key, Node};
use crate::config::{Limits, PoolConfig, Timeouts};

const DEFAULT_TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(2),
    upstream_response: Duration::from_secs(30),
    header_read: Duration::from_secs(10),
    request_body_idle: Duration::from_secs(10),
    shutdown_grace: Duration::from_secs(30),
};
const DEFAULT_POOL: PoolConfig = PoolConfig {
    max_idle_per_host: 256,
    idle_timeout: Duration::from_secs(90),
};
const DEFAULT_LIMITS: Limits = Limits {
    max_connections: 10_000,
    max_header_bytes: 64 << 10,
    max_headers: 100,
    max_body_bytes: 64 << 10,
};
/// The smallest timeout: zero would fail every request.
const NONZERO: Duration = Duration::from_millis(1);

/// `timeouts: { connect: 2s, upstream_response: 30s, header_read: 10s,
/// request_body_idle: 10s, shutdown_grace: 30s }`; only `shutdown_grace` may be zero.
pub(super) fn timeouts(top: &Fields) -> Result<Timeouts> {
    let Some((key, node)) = top.get("timeouts") else {
        return Ok(DEFAULT_TIMEOUTS);
    };
    let t = Fields::new(
        node,
        "timeouts",
        key.pos,
        &[
            "connect",
            "upstream_response",
            "header_read",
            "request_body_idle",
            "shutdown_grace",
        ],
    )?;
    Ok(Timeouts {
        connect: t.duration("connect", DEFAULT_TIMEOUTS.connect, NONZERO)?,
        upstream_response: t.duration(
            "upstream_response",
            DEFAULT_TIMEOUTS.upstream_response,
            NONZERO,
        )?,
        header_read: t.duration("header_read", DEFAULT_TIMEOUTS.header_read, NONZERO)?,
        request_body_idle: t.duration(
            "request_body_idle",
            DEFAULT_TIMEOUTS.request_body_idle,
            NONZERO,
        )?,
        shutdown_grace: t.duration(
            "shutdown_grace",
            DEFAULT_TIMEOUTS.shutdown_grace,
            Duration::ZERO,
        )?,
    })
}

/// `pool: { max_idle_per_host: 256, idle_timeout: 90s }`
pub(super) fn pool(top: &Fields) -> Result<PoolConfig> {
    let Some((key, node)) = top.get("pool") else {
        return Ok(DEFAULT_POOL);
    };
    let p = Fields::new(
        node,
        "pool",
        key.pos,
        &["max_idle_per_host", "idle_timeout"],
    )?;
    let max_idle_per_host = match p.get("max_idle_per_host") {
        None => DEFAULT_POOL.max_idle_per_host,
        Some((key, node)) => integer(key, node, "pool.max_idle_per_host", 0, 100_000)? as usize,
    };
    Ok(PoolConfig {
        max_idle_per_host,
        idle_timeout: p.duration("idle_timeout", DEFAULT_POOL.idle_timeout, NONZERO)?,
    })
}

/// `limits: { max_connections: 10000, max_header_bytes: 64KiB, max_headers: 100,
/// max_body_bytes: 64KiB }`
pub(super) fn limits(top: &Fields) -> Result<Limits> {
    match top.get("limits") {
        None => Ok(DEFAULT_LIMITS),
        Some((key, node)) => limits_section(key, node),
    }
}

fn limits_section(key: &Key, node: &Node) -> Result<Limits> {
    let d = DEFAULT_LIMITS;
    let f = Fields::new(
        node,
        "limits",
        key.pos,
        &[
            "max_connections",
            "max_header_bytes",
            "max_headers",
            "max_body_bytes",
        ],
    )?;
    Ok(Limits {
        max_connections: f.whole("max_connections", d.max_connections as u64, 1, 1_000_000)?
            as usize,
        // hyper's read buffer cannot be smaller than 8 KiB.
        max_header_bytes: f.size(
            "max_header_bytes",
            d.max_header_bytes as u64,
            8 << 10,
            1 << 20,
        )? as usize,
        max_headers: f.whole("max_headers", d.max_headers as u64, 8, 1000)? as usize,
        max_body_bytes: f.size("max_body_bytes", d.max_body_bytes as u64, 1 << 10, 16 << 20)?
            as usize,
    })
}
