//! The experiments: `experiments` (key → experiment), and in each its `title`, `state`,
//! `variants` (weight and upstream), `fallback`, `control`, `rollout_variant`,
//! `upstream_down`, `match` (path prefix, host) and `traffic` (a percentage). Its
//! `target`, `goals`, `bandit` and `decide` are read by [`super::targeting`],
//! [`super::goals`], [`super::bandit`] and [`super::decide`].

use super::bandit::bandit;
use super::decide::decide;
use super::fields::{error, integer, join, named_entries, scalar, Fields, Result};
use super::goals::goals;
use super::targeting::target;
use super::upstreams::unknown_upstream;
use crate::config::names;
use crate::config::target::Target;
use crate::config::yaml::{Key, Node, Value};
use crate::config::{Experiment, Match, PrometheusSource, State, Upstream, UpstreamDown, Variant};

/// Keeps the total weight far from overflow and the label cardinality sane.
const MAX_WEIGHT: u32 = 1_000_000;
const MAX_VARIANTS: usize = 32;

pub(super) fn experiments(
    top: &Fields,
    upstreams: &[Upstream],
    prometheus: Option<&PrometheusSource>,
) -> Result<Vec<Experiment>> {
    let entries = named_entries(top, "experiments", "a mapping of key: experiment")?;
    entries
        .iter()
        .map(|(key, node)| experiment(key, node, upstreams, prometheus))
        .collect()
}

fn experiment(
    key: &Key,
    node: &Node,
    upstreams: &[Upstream],
    prometheus: Option<&PrometheusSource>,
) -> Result<Experiment> {
    let path = format!("experiments.{}", key.name);
    if let Err(m) = names::check_name(&key.name, names::NameKind::Experiment) {
        return error(key.pos, &path, m);
    }
    let f = Fields::new(
        node,
        &path,
        key.pos,
        &[
            "title",
            "state",
            "variants",
            "fallback",
            "control",
            "rollout_variant",
            "upstream_down",
            "match",
            "traffic",
            "target",
            "goals",
            "bandit",
            "decide",
        ],
    )?;
    let title = f
        .string("title")?
        .map(|(_, t)| t)
        .unwrap_or_else(|| key.name.clone());
    let (state_key, state_node) = f.required("state")?;
    let state = match scalar(state_key, state_node, &f.child_path(state_key))? {
        "inactive" => State::Inactive,
        "active" => State::Active,
        "rollout" => State::Rollout,
        other => {
            return error(
                state_key.pos,
                &f.child_path(state_key),
                format!("`{other}` is not a state (inactive, active or rollout)"),
            )
        }
    };
    let (variants_key, variants_node) = f.required("variants")?;
    let variants = variants(
        variants_key,
        variants_node,
        &f.child_path(variants_key),
        upstreams,
    )?;

    let variant_named = |field: &str| -> Result<Option<String>> {
        match f.string(field)? {
            None => Ok(None),
            Some((_, name)) if variants.iter().any(|v| v.name == name) => Ok(Some(name)),
            Some((pos, name)) => {
                let known: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
                error(
                    pos,
                    &join(&path, field),
                    format!(
                        "`{name}` is not a variant of {} (variants: {})",
                        key.name,
                        known.join(", ")
                    ),
                )
            }
        }
    };
    let Some(fallback) = variant_named("fallback")? else {
        return error(
            key.pos,
            &path,
            "missing key `fallback` (the variant served when the experiment is inactive)",
        );
    };
    let control = variant_named("control")?.unwrap_or_else(|| fallback.clone());
    let rollout_variant = variant_named("rollout_variant")?;
    if state == State::Rollout && rollout_variant.is_none() {
        return error(
            state_key.pos,
            &f.child_path(state_key),
            "state `rollout` needs `rollout_variant` (the variant everyone gets)",
        );
    }
    let upstream_down = match f.string("upstream_down")? {
        None => UpstreamDown::Fail,
        Some((_, v)) if v == "fail" => UpstreamDown::Fail,
        Some((pos, v)) if v == "fallback" => {
            if !variants.iter().all(|v| v.upstream.is_some()) {
                return error(
                    pos,
                    &join(&path, "upstream_down"),
                    "`fallback` needs a routing experiment (every variant names an upstream)",
                );
            }
            UpstreamDown::Fallback
        }
        Some((pos, v)) => {
            return error(
                pos,
                &join(&path, "upstream_down"),
                format!("`{v}` is not one of: fail, fallback"),
            )
        }
    };
    let matcher = match f.get("match") {
        None => Match::default(),
        Some((mkey, mnode)) => {
            let m = Fields::new(
                mnode,
                &f.child_path(mkey),
                mkey.pos,
                &["path_prefix", "host"],
            )?;
            let path_prefix = match m.string("path_prefix")? {
                Some((pos, p)) if !p.starts_with('/') => {
                    return error(
                        pos,
                        &join(&m.path, "path_prefix"),
                        format!("`{p}` must start with /"),
                    )
                }
                other => other.map(|(_, p)| p),
            };
            let host = match m.string("host")? {
                Some((pos, h)) if !names::is_host_name(&h) => {
                    return error(
                        pos,
                        &join(&m.path, "host"),
                        format!("`{h}` is not a host name (no port, no scheme)"),
                    )
                }
                other => other.map(|(_, h)| h.to_ascii_lowercase()),
            };
            Match { path_prefix, host }
        }
    };
    let traffic_bp = match f.get("traffic") {
        None => 10_000,
        Some((tkey, tnode)) => {
            let tpath = f.child_path(tkey);
            parse_percent(scalar(tkey, tnode, &tpath)?).or_else(|m| error(tkey.pos, &tpath, m))?
        }
    };
    let target = match f.get("target") {
        None => Target::default(),
        Some((tkey, tnode)) => target(tkey, tnode, &f.child_path(tkey))?,
    };
    let goals = match f.get("goals") {
        None => Vec::new(),
        Some((gkey, gnode)) => goals(gkey, gnode, &f.child_path(gkey))?,
    };
    let bandit = match f.get("bandit") {
        None => None,
        Some((bkey, bnode)) => Some(bandit(
            bkey,
            bnode,
            &f.child_path(bkey),
            &variants,
            &goals,
            prometheus,
        )?),
    };
    let decide = match f.get("decide") {
        None => None,
        Some((dkey, dnode)) => Some(decide(
            dkey,
            dnode,
            &f.child_path(dkey),
            &variants,
            &goals,
            bandit.as_ref(),
            prometheus,
        )?),
    };
    Ok(Experiment {
        key: key.name.clone(),
        title,
        state,
        state_pos: state_key.pos,
        variants,
        fallback,
        control,
        rollout_variant,
        upstream_down,
        matcher,
        traffic_bp,
        target,
        goals,
        bandit,
        decide,
    })
}

/// `10`, `12.5`, `0.25` percent → basis points (0–10 000).
fn parse_percent(text: &str) -> std::result::Result<u32, String> {
    let bad = || format!("`{text}` is not a percentage from 0 to 100 with at most two decimals");
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || frac.len() > 2
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: u32 = whole.parse().map_err(|_| bad())?;
    let frac: u32 = format!("{frac:0<2}").parse().map_err(|_| bad())?;
    let bp = whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(bad)?;
    if bp > 10_000 {
        return Err(bad());
    }
    Ok(bp)
}

fn variants(key: &Key, node: &Node, path: &str, upstreams: &[Upstream]) -> Result<Vec<Variant>> {
    let Value::Map(entries) = &node.value else {
        return error(
            key.pos,
            path,
            format!(
                "expected a mapping of name: {{weight, upstream}}, found {}",
                node.kind()
            ),
        );
    };
    if entries.is_empty() {
        return error(key.pos, path, "an experiment needs at least one variant");
    }
    if entries.len() > MAX_VARIANTS {
        return error(key.pos, path, format!("at most {MAX_VARIANTS} variants"));
    }
    let mut variants = Vec::with_capacity(entries.len());
    for (vkey, vnode) in entries {
        let vpath = join(path, &vkey.name);
        if let Err(m) = names::check_name(&vkey.name, names::NameKind::Variant) {
            return error(vkey.pos, &vpath, m);
        }
        let f = Fields::new(vnode, &vpath, vkey.pos, &["weight", "upstream"])?;
        let (wkey, wnode) = f.required("weight")?;
        let weight = integer(wkey, wnode, &f.child_path(wkey), 0, MAX_WEIGHT as u64)? as u32;
        let upstream = match f.string("upstream")? {
            None => None,
            Some((pos, name)) if !upstreams.iter().any(|u| u.name == name) => {
                return error(
                    pos,
                    &join(&vpath, "upstream"),
                    unknown_upstream(&name, upstreams),
                )
            }
            Some((_, name)) => Some(name),
        };
        variants.push((
            vkey.pos,
            Variant {
                name: vkey.name.clone(),
                weight,
                upstream,
            },
        ));
    }
    if variants.iter().map(|(_, v)| v.weight as u64).sum::<u64>() == 0 {
        return error(
            key.pos,
            path,
            "the weights sum to 0; at least one variant needs a positive weight",
        );
    }
    // A half-routing experiment would send some visitors nowhere.
    let routing = variants.iter().any(|(_, v)| v.upstream.is_some());
    if routing {
        if let Some((pos, v)) = variants.iter().find(|(_, v)| v.upstream.is_none()) {
            return error(
                *pos,
                &join(path, &v.name),
                "missing `upstream`: in a routing experiment every variant names an upstream (or none does, for a tag-only experiment)",
            );
        }
    }
    Ok(variants.into_iter().map(|(_, v)| v).collect())
}
