//! HTTP/1.1 Upgrade (WebSockets) through the proxy: the handshake is a request like any
//! other (assignment, cookies, the variant's upstream); once the upstream answers
//! `101 Switching Protocols`, both connections are handed over from hyper and their
//! bytes copied both ways until either side closes.
//!
//! A tunnel belongs to no config snapshot: a reload does not touch it, and it keeps
//! the upstream it was opened to.

use http::header::{self, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// The `Upgrade` value of a request that asks to switch protocols (HTTP/1.1, with
/// `upgrade` among its `Connection` options), else `None`.
pub fn requested<B>(request: &Request<B>) -> Option<HeaderValue> {
    if request.version() != Version::HTTP_11 {
        return None;
    }
    let upgrade = request.headers().get(header::UPGRADE)?;
    connection_has_upgrade(request.headers()).then(|| upgrade.clone())
}

fn connection_has_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
}

/// Put the upgrade back on a head whose hop-by-hop fields were removed: the request to
/// the upstream, or the `101` to the client.
pub fn restore(headers: &mut HeaderMap, upgrade: HeaderValue) {
    headers.insert(header::UPGRADE, upgrade);
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
}

/// The client's side of an upgrade, taken from its request before it is forwarded.
pub struct ClientSide {
    pub upgrade: HeaderValue,
    on_upgrade: OnUpgrade,
}

impl ClientSide {
    pub fn take<B>(request: &mut Request<B>) -> Option<ClientSide> {
        let upgrade = requested(request)?;
        Some(ClientSide {
            upgrade,
            on_upgrade: hyper::upgrade::on(request),
        })
    }

    /// If the upstream switched protocols, start the tunnel and give the client its
    /// `101` with the upgrade fields back; any other answer goes to the client as is.
    pub fn finish<B>(self, response: &mut Response<B>, open: prometheus::IntGauge) {
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return;
        }
        let upstream_side = hyper::upgrade::on(&mut *response);
        let upgrade = response
            .headers()
            .get(header::UPGRADE)
            .cloned()
            .unwrap_or(self.upgrade);
        restore(response.headers_mut(), upgrade);
        tokio::spawn(async move {
            let (client, upstream_io) = match tokio::try_join!(self.on_upgrade, upstream_side) {
                Ok(both) => both,
                Err(err) => {
                    tracing::debug!("upgrade did not complete: {err}");
                    return;
                }
            };
            open.inc();
            let copied = tokio::io::copy_bidirectional(
                &mut TokioIo::new(client),
                &mut TokioIo::new(upstream_io),
            )
            .await;
            open.dec();
            if let Err(err) = copied {
                tracing::debug!("tunnel ended: {err}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, fields: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::get("/chat").version(version);
        for (name, value) in fields {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn an_upgrade_needs_both_fields_on_http_1_1() {
        let ws = [
            ("upgrade", "websocket"),
            ("connection", "keep-alive, Upgrade"),
        ];
        assert_eq!(
            requested(&request(Version::HTTP_11, &ws)).unwrap(),
            "websocket"
        );
        assert_eq!(requested(&request(Version::HTTP_10, &ws)), None);
        assert_eq!(
            requested(&request(Version::HTTP_11, &[("upgrade", "websocket")])),
            None,
            "Upgrade without Connection: upgrade is not a request to switch"
        );
        assert_eq!(
            requested(&request(
                Version::HTTP_11,
                &[("connection", "upgrade-insecure-requests")]
            )),
            None
        );
    }
}
