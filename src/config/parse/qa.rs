//! The QA override: `qa_override` (the query parameter and/or header through which a
//! tester picks a variant).

use super::fields::{error, Fields, Result};
use crate::config::names;
use crate::config::yaml::{Key, Node};
use crate::config::QaOverride;

/// `qa_override: { query_param: ab, header: x-ab-variant }`; at least one of them.
pub(super) fn qa_override(key: &Key, node: &Node) -> Result<QaOverride> {
    let f = Fields::new(node, "qa_override", key.pos, &["query_param", "header"])?;
    let query_param = match f.string("query_param")? {
        Some((pos, name)) if names::check_name(&name, names::NameKind::Variant).is_err() => {
            return error(
                pos,
                "qa_override.query_param",
                format!("`{name}` must be 1–64 of A-Z a-z 0-9 _ -, starting with a letter"),
            )
        }
        other => other.map(|(_, name)| name),
    };
    let header = match f.string("header")? {
        None => None,
        Some((pos, name)) => Some(http::HeaderName::from_bytes(name.as_bytes()).or_else(|_| {
            error(
                pos,
                "qa_override.header",
                format!("`{name}` is not a header name"),
            )
        })?),
    };
    if query_param.is_none() && header.is_none() {
        return error(
            key.pos,
            "qa_override",
            "give `query_param`, `header` or both (leave the section out to turn overrides off)",
        );
    }
    Ok(QaOverride {
        query_param,
        header,
    })
}
