//! The top-level `notify`: the `webhook` each automated decision is posted to, and the
//! `secret_file` whose key signs each body.

use super::fields::{error, scalar, Fields, Result};
use super::upstreams::check_authority;
use crate::config::yaml::{Key, Node};
use crate::config::Notify;

/// `notify: { webhook: https://hooks.example/abproxy, secret_file: hook.secret }`
pub(super) fn notify(key: &Key, node: &Node) -> Result<Notify> {
    let f = Fields::new(node, "notify", key.pos, &["webhook", "secret_file"])?;
    let (wkey, wnode) = f.required("webhook")?;
    let wpath = f.child_path(wkey);
    let webhook = scalar(wkey, wnode, &wpath)?;
    check_webhook(webhook).or_else(|m| error(wkey.pos, &wpath, m))?;
    // Not read here: the config is pure, and the notifier reports a missing file.
    let secret_file = f.path("secret_file")?;
    Ok(Notify {
        webhook: webhook.to_string(),
        secret_file,
    })
}

/// `http://` or `https://` with a host and a usable port; any path and query (many
/// webhook services put their token there).
fn check_webhook(url: &str) -> std::result::Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("`{url}` is not a URL like https://hooks.example/abproxy"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!("`{url}` must start with http:// or https://"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("`{url}` has no host"))?;
    check_authority(url, authority, "webhook")
}
