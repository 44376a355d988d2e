//! An experiment's `bandit`: `algorithm`, the `goal` that is its reward, `update_every`,
//! `burn_in`, `min_share`, `epsilon` (epsilon_greedy only) and whose `counts` it reads.
//! Read after the experiment's variants and goals, which it refers to.

use std::time::Duration;

use super::fields::{decimal, error, scalar, Fields, Result};
use super::prometheus::counts;
use crate::config::yaml::{Key, Node};
use crate::config::{Bandit, BanditAlgorithm, Goal, PrometheusSource, Variant};

/// Defaults, also listed in the README's config reference.
pub const DEFAULT_UPDATE_EVERY: Duration = Duration::from_secs(3_600);
/// Boundaries are whole multiples of `update_every` since the epoch; under a second the
/// replicas' clocks would disagree about which boundary they are at.
const MIN_UPDATE_EVERY: Duration = Duration::from_secs(1);
pub const DEFAULT_BURN_IN: u64 = 100;
/// A run reaching a billion devices per variant before it learns anything is a typo.
const MAX_BURN_IN: u64 = 1_000_000_000;
pub const DEFAULT_MIN_SHARE: f64 = 0.01;
pub const DEFAULT_EPSILON: f64 = 0.1;

/// `bandit: { algorithm, goal, update_every, burn_in, min_share, epsilon, counts }` of the
/// experiment at `path`, with its `variants` and `goals` already read.
pub(super) fn bandit(
    key: &Key,
    node: &Node,
    path: &str,
    variants: &[Variant],
    goals: &[Goal],
    prometheus: Option<&PrometheusSource>,
) -> Result<Bandit> {
    let f = Fields::new(
        node,
        path,
        key.pos,
        &[
            "algorithm",
            "goal",
            "update_every",
            "burn_in",
            "min_share",
            "epsilon",
            "counts",
        ],
    )?;
    if variants.len() < 2 {
        return error(
            key.pos,
            path,
            "a bandit needs at least two variants to move traffic between",
        );
    }

    let (akey, anode) = f.required("algorithm")?;
    let apath = f.child_path(akey);
    let algorithm = match scalar(akey, anode, &apath)? {
        "thompson" => BanditAlgorithm::Thompson,
        "ucb1" => BanditAlgorithm::Ucb1,
        "epsilon_greedy" => BanditAlgorithm::EpsilonGreedy {
            epsilon: DEFAULT_EPSILON,
        },
        other => {
            return error(
                akey.pos,
                &apath,
                format!("`{other}` is not an algorithm (thompson, ucb1 or epsilon_greedy)"),
            )
        }
    };
    let algorithm = match (algorithm, f.get("epsilon")) {
        (_, None) => algorithm,
        (BanditAlgorithm::EpsilonGreedy { .. }, Some((ekey, enode))) => {
            let epath = f.child_path(ekey);
            let text = scalar(ekey, enode, &epath)?;
            match decimal(text) {
                Some(epsilon) if epsilon <= 1.0 => BanditAlgorithm::EpsilonGreedy { epsilon },
                _ => {
                    return error(
                        ekey.pos,
                        &epath,
                        format!("`{text}` is not a number from 0 to 1 (e.g. 0.1)"),
                    )
                }
            }
        }
        (_, Some((ekey, _))) => {
            return error(
                ekey.pos,
                &f.child_path(ekey),
                "`epsilon` is for `algorithm: epsilon_greedy` only",
            )
        }
    };

    let (gkey, gnode) = f.required("goal")?;
    let gpath = f.child_path(gkey);
    let goal = scalar(gkey, gnode, &gpath)?.to_string();
    if !goals.iter().any(|g| g.name == goal) {
        let known: Vec<&str> = goals.iter().map(|g| g.name.as_str()).collect();
        let experiment = path.trim_end_matches(".bandit");
        return error(
            gkey.pos,
            &gpath,
            if known.is_empty() {
                format!("`{goal}` is not a goal of the experiment (it has none: add it under `{experiment}.goals`)")
            } else {
                format!(
                    "`{goal}` is not a goal of the experiment (goals: {})",
                    known.join(", ")
                )
            },
        );
    }

    let update_every = f.duration("update_every", DEFAULT_UPDATE_EVERY, MIN_UPDATE_EVERY)?;
    let burn_in = f.whole("burn_in", DEFAULT_BURN_IN, 0, MAX_BURN_IN)?;
    let min_share = min_share(&f, variants.len())?;

    if burn_in > 0 {
        if let Some(idle) = variants.iter().find(|v| v.weight == 0) {
            // The first update waits for `burn_in` devices in every variant.
            let at = f.get("burn_in").map_or(key.pos, |(k, _)| k.pos);
            return error(
                at,
                path,
                format!(
                    "variant `{}` has weight 0, so it gets no devices in the burn-in and the bandit would never start (it waits for {burn_in} devices in every variant); give every variant a positive weight",
                    idle.name
                ),
            );
        }
    }

    let counts = counts(&f, "update_every", update_every, prometheus)?;

    Ok(Bandit {
        algorithm,
        goal,
        update_every,
        burn_in,
        min_share,
        counts,
        pos: key.pos,
    })
}

/// `min_share: 1%` or `0.01`, with `variants` × it under 100 % (the floor of every
/// variant must leave some share for the bandit to move).
fn min_share(f: &Fields, variants: usize) -> Result<f64> {
    let Some((key, node)) = f.get("min_share") else {
        return Ok(DEFAULT_MIN_SHARE);
    };
    let path = f.child_path(key);
    let text = scalar(key, node, &path)?;
    let share = match text.strip_suffix('%') {
        Some(percent) => decimal(percent.trim_end()).map(|p| p / 100.0),
        None => decimal(text),
    };
    let Some(share) = share.filter(|s| *s <= 1.0) else {
        return error(
            key.pos,
            &path,
            format!("`{text}` is not a share: write a percentage like `1%` or a fraction from 0 to 1 like `0.01`"),
        );
    };
    let floors = share * variants as f64;
    if floors >= 1.0 {
        return error(
            key.pos,
            &path,
            format!(
                "`{text}` × {variants} variants is {}%, which leaves nothing for the bandit to move; it must be under {}%",
                show_percent(floors),
                show_percent(1.0 / variants as f64)
            ),
        );
    }
    Ok(share)
}

/// A fraction as a percentage for a message: `1.02` → `102`, `1/3` → `33.3333`.
fn show_percent(fraction: f64) -> String {
    let text = format!("{:.4}", fraction * 100.0);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}
