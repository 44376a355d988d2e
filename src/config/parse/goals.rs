//! An experiment's goals: `goals` (name → an `event` with `params`, or a `request` with
//! `method`, `path_prefix` and `status`, and optionally the `value` to sum).

use super::fields::{error, join, scalar, string_map, Fields, Result};
use crate::config::names;
use crate::config::yaml::{Key, Node, Value};
use crate::config::{Goal, Trigger, ValueSource};

const MAX_GOALS: usize = 16;

pub(super) fn goals(key: &Key, node: &Node, path: &str) -> Result<Vec<Goal>> {
    let Value::Map(entries) = &node.value else {
        return error(
            key.pos,
            path,
            format!("expected a mapping of name: goal, found {}", node.kind()),
        );
    };
    if entries.len() > MAX_GOALS {
        return error(
            key.pos,
            path,
            format!("at most {MAX_GOALS} goals per experiment"),
        );
    }
    entries
        .iter()
        .map(|(gkey, gnode)| goal(gkey, gnode, &join(path, &gkey.name)))
        .collect()
}

fn goal(key: &Key, node: &Node, path: &str) -> Result<Goal> {
    if let Err(m) = names::check_name(&key.name, names::NameKind::Variant) {
        return error(key.pos, path, m.replace("variant name", "goal name"));
    }
    let f = Fields::new(
        node,
        path,
        key.pos,
        &["event", "params", "request", "value"],
    )?;
    let trigger = match (f.get("event"), f.get("request")) {
        (Some((ekey, enode)), None) => {
            let epath = f.child_path(ekey);
            let name = scalar(ekey, enode, &epath)?.to_string();
            if let Err(m) = names::check_name(&name, names::NameKind::Variant) {
                return error(ekey.pos, &epath, m.replace("variant name", "event name"));
            }
            let params = match f.get("params") {
                None => Vec::new(),
                Some((pk, pn)) => string_map(pk, pn, &f.child_path(pk))?
                    .into_iter()
                    .map(|(k, v)| (k.name.clone(), v))
                    .collect(),
            };
            Trigger::Event { name, params }
        }
        (None, Some((rkey, rnode))) => {
            if let Some((pk, _)) = f.get("params") {
                return error(
                    pk.pos,
                    &f.child_path(pk),
                    "`params` goes with `event`, not `request`",
                );
            }
            let rpath = f.child_path(rkey);
            let r = Fields::new(
                rnode,
                &rpath,
                rkey.pos,
                &["method", "path_prefix", "status"],
            )?;
            let method = match r.string("method")? {
                None => None,
                Some((pos, m)) => Some(
                    http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).or_else(|_| {
                        error(
                            pos,
                            &join(&rpath, "method"),
                            format!("`{m}` is not an HTTP method"),
                        )
                    })?,
                ),
            };
            let path_prefix = match r.string("path_prefix")? {
                Some((pos, p)) if !p.starts_with('/') => {
                    return error(
                        pos,
                        &join(&rpath, "path_prefix"),
                        format!("`{p}` must start with /"),
                    )
                }
                other => other.map(|(_, p)| p),
            };
            let status_class = match r.string("status")? {
                None => None,
                Some((pos, s)) => match s.as_str() {
                    "1xx" | "2xx" | "3xx" | "4xx" | "5xx" => Some((s.as_bytes()[0] - b'0') as u16),
                    _ => {
                        return error(
                            pos,
                            &join(&rpath, "status"),
                            format!("`{s}` is not a status class (2xx, 3xx, 4xx or 5xx)"),
                        )
                    }
                },
            };
            Trigger::Request {
                method,
                path_prefix,
                status_class,
            }
        }
        (Some((ekey, _)), Some(_)) => {
            return error(ekey.pos, path, "a goal has `event` or `request`, not both")
        }
        (None, None) => {
            return error(
                key.pos,
                path,
                "a goal needs `event: NAME` or `request: {method, path_prefix, status}`",
            )
        }
    };
    let value = match f.get("value") {
        None => None,
        Some((vkey, vnode)) => {
            let vpath = f.child_path(vkey);
            let v = Fields::new(vnode, &vpath, vkey.pos, &["param", "header"])?;
            match (v.string("param")?, v.string("header")?, &trigger) {
                (Some((_, param)), None, Trigger::Event { .. }) => Some(ValueSource::Param(param)),
                (None, Some((pos, header)), Trigger::Request { .. }) => Some(ValueSource::Header(
                    http::HeaderName::from_bytes(header.as_bytes())
                        .or_else(|_| error(pos, &join(&vpath, "header"), format!("`{header}` is not a header name")))?,
                )),
                _ => return error(vkey.pos, &vpath, "an event goal takes `value: {param: NAME}`, a request goal `value: {header: NAME}`"),
            }
        }
    };
    Ok(Goal {
        name: key.name.clone(),
        trigger,
        value,
    })
}
