//! The listeners: `listen` (the proxy's address), `admin` (the admin listener's address
//! and token file) and `tls` (the proxy's certificate and key), and the check that these
//! addresses can work at all (no shared port, no upstream that is the proxy itself).

use core::net::SocketAddr;
use std::path::PathBuf;

use super::fields::{error, Fields, Result};
use crate::config::yaml::{Pos, Value};
use crate::config::{TlsConfig, Upstream};

/// Defaults, also listed in the README's config reference.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8081";

/// `listen: 127.0.0.1:8080`
pub(super) fn listen(top: &Fields) -> Result<SocketAddr> {
    top.socket_addr("listen", DEFAULT_LISTEN)
}

/// `admin: { listen: 127.0.0.1:8081, token_file: PATH }`: the address and the token file.
pub(super) fn admin(top: &Fields) -> Result<(SocketAddr, Option<PathBuf>)> {
    Ok(match top.get("admin") {
        None => (
            DEFAULT_ADMIN_LISTEN
                .parse()
                .expect("default admin address parses"),
            None,
        ),
        Some((key, node)) => {
            let admin = Fields::new(node, "admin", key.pos, &["listen", "token_file"])?;
            (
                admin.socket_addr("listen", DEFAULT_ADMIN_LISTEN)?,
                admin.path("token_file")?,
            )
        }
    })
}

/// `tls: { cert: PEM, key: PEM }`; both are needed.
pub(super) fn tls(top: &Fields) -> Result<Option<TlsConfig>> {
    let Some((key, node)) = top.get("tls") else {
        return Ok(None);
    };
    let t = Fields::new(node, "tls", key.pos, &["cert", "key"])?;
    let path = |name: &str| -> Result<PathBuf> {
        t.path(name)?.map_or_else(
            || error(key.pos, "tls", format!("missing key `{name}` (a PEM file)")),
            Ok,
        )
    };
    Ok(Some(TlsConfig {
        cert: path("cert")?,
        key: path("key")?,
    }))
}

/// Addresses that can never work: both listeners on one port, or an upstream that is
/// the proxy itself (every request would loop until file descriptors run out).
pub(super) fn check_addresses(
    top: &Fields,
    listen: SocketAddr,
    admin: SocketAddr,
    upstreams: &[Upstream],
) -> Result<()> {
    if listen == admin && listen.port() != 0 {
        let pos = top.get("admin").map_or(Pos::default(), |(k, _)| k.pos);
        return error(
            pos,
            "admin.listen",
            format!("`{admin}` is also `listen`; use another port"),
        );
    }
    let (_, upstreams_node) = top.get("upstreams").expect("upstreams are present");
    for (addr, what) in [(listen, "listen"), (admin, "admin.listen")] {
        let loops = |u: &Upstream| {
            u.origin.as_str().parse::<SocketAddr>().is_ok_and(|up| {
                up.port() == addr.port() && (up.ip() == addr.ip() || addr.ip().is_unspecified())
            })
        };
        if let Some(u) = upstreams.iter().find(|u| addr.port() != 0 && loops(u)) {
            let pos = match &upstreams_node.value {
                Value::Map(entries) => entries
                    .iter()
                    .find(|(k, _)| k.name == u.name)
                    .map_or(Pos::default(), |(k, _)| k.pos),
                _ => Pos::default(),
            };
            return error(
                pos,
                &format!("upstreams.{}", u.name),
                format!("`{}` is this proxy's own `{what}` address", u.origin),
            );
        }
    }
    Ok(())
}
