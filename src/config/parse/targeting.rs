//! An experiment's targeting: `target` (device classes, headers equal to or matching a
//! regex, cookies equal or present, query parameters) — who may enter the experiment.

use super::fields::{error, join, string_list, string_map, Fields, Result};
use crate::config::target::{DeviceClass, Pattern, Target};
use crate::config::yaml::{Key, Node};

pub(super) fn target(key: &Key, node: &Node, path: &str) -> Result<Target> {
    let f = Fields::new(
        node,
        path,
        key.pos,
        &[
            "device",
            "headers",
            "header_matches",
            "cookies",
            "cookies_present",
            "query",
        ],
    )?;
    let mut t = Target::default();
    if let Some((k, n)) = f.get("device") {
        for (pos, class) in string_list(k, n, &f.child_path(k))? {
            t.devices.push(match class.as_str() {
                "mobile" => DeviceClass::Mobile,
                "desktop" => DeviceClass::Desktop,
                "bot" => {
                    return error(
                        pos,
                        &f.child_path(k),
                        "bots are never part of an experiment (they get the fallback)",
                    )
                }
                other => {
                    return error(
                        pos,
                        &f.child_path(k),
                        format!("`{other}` is not a device class (mobile or desktop)"),
                    )
                }
            });
        }
    }
    let header_name = |k: &Key, path: &str| {
        http::HeaderName::from_bytes(k.name.as_bytes())
            .or_else(|_| error(k.pos, path, format!("`{}` is not a header name", k.name)))
    };
    if let Some((k, n)) = f.get("headers") {
        for (hk, value) in string_map(k, n, &f.child_path(k))? {
            let hpath = join(&f.child_path(k), &hk.name);
            t.headers.push((header_name(hk, &hpath)?, value));
        }
    }
    if let Some((k, n)) = f.get("header_matches") {
        for (hk, value) in string_map(k, n, &f.child_path(k))? {
            let hpath = join(&f.child_path(k), &hk.name);
            let pattern = regex::Regex::new(&value)
                .or_else(|e| error(hk.pos, &hpath, format!("not a valid regex: {e}")))?;
            t.header_matches
                .push((header_name(hk, &hpath)?, Pattern(pattern)));
        }
    }
    if let Some((k, n)) = f.get("cookies") {
        t.cookies = string_map(k, n, &f.child_path(k))?
            .into_iter()
            .map(|(ck, v)| (ck.name.clone(), v))
            .collect();
    }
    if let Some((k, n)) = f.get("cookies_present") {
        t.cookies_present = string_list(k, n, &f.child_path(k))?
            .into_iter()
            .map(|(_, v)| v)
            .collect();
    }
    if let Some((k, n)) = f.get("query") {
        t.query = string_map(k, n, &f.child_path(k))?
            .into_iter()
            .map(|(qk, v)| (qk.name.clone(), v))
            .collect();
    }
    Ok(t)
}
