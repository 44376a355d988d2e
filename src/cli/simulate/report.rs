//! The text `abproxy simulate` prints. Pure: from the visits and what the proxy said of
//! its experiments.
//!
//! First, per experiment, the two blocks the original demo printed, in its format:
//!
//! ```text
//! Moon/Mars Exp Split:
//! Mars: 520 visits (52.00%)
//! Moon: 480 visits (48.00%)
//! Moon/Mars Exp events:
//! Mars: 520 visits, 104 clicks, Conv=20.00 +- 3.51%, Exact: 20.00%
//! Moon: 480 visits, 48 clicks, Conv=10.00 +- 2.74%, Exact: 10.00%
//! ```
//!
//! (variants in name order in both; `+-` is two standard errors, √(p(1−p)/n), as the
//! demo had it; `Exact` is the click probability given). Then the checks the demo did
//! not have: the z-test of each variant against the control, the sample-ratio check
//! against the designed split, and the independence of every pair of experiments.
//! Last, with the admin listener, each experiment's periods (`periods`): the shares per
//! period when a bandit or a weight change moved them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::design::Design;
use super::periods::{self, RunResults};
use super::{Options, Visit};
use crate::stats::{self, Proportion};

/// (visits, clicks) per variant of one experiment, in name order.
type Tally<'v> = BTreeMap<&'v str, (u64, u64)>;

/// What is known once the visits are over.
#[derive(Debug, Clone, Default)]
pub struct After {
    /// From the first visit's start to the last one's end.
    pub elapsed: Duration,
    /// Per experiment, its run as the results tell it after the visits (with `admin`).
    pub results: BTreeMap<String, Result<RunResults, String>>,
}

pub fn report(
    options: &Options,
    designs: Option<&[Design]>,
    page: &str,
    visits: &[Visit],
    after: &After,
) -> String {
    let seen: BTreeSet<&str> = visits
        .iter()
        .flat_map(|v| v.groups.keys().map(String::as_str))
        .collect();
    // The config's order when the proxy told it, else the keys'.
    let mut experiments: Vec<&str> = designs
        .unwrap_or_default()
        .iter()
        .map(|d| d.key.as_str())
        .filter(|k| seen.contains(k))
        .collect();
    let undesigned: Vec<&str> = seen
        .iter()
        .filter(|k| !experiments.contains(k))
        .copied()
        .collect();
    experiments.extend(undesigned);
    let design_of = |key: &str| designs.unwrap_or_default().iter().find(|d| d.key == key);
    let prob_of = |variant: &str| {
        options
            .click_probs
            .iter()
            .find(|(name, _)| name == variant)
            .map(|(_, p)| *p)
    };

    let mut out = String::new();
    let mut tallies = Vec::new();
    for &key in &experiments {
        let design = design_of(key);
        let tally = tally(visits, key, design);
        let title = design.map_or(key, |d| d.title.as_str());
        let total: u64 = tally.values().map(|(n, _)| n).sum();
        out.push_str(&format!("{title} Exp Split:\n"));
        for (variant, (n, _)) in &tally {
            out.push_str(&format!(
                "{variant}: {n} visits ({:.2}%)\n",
                percent(*n, total)
            ));
        }
        if tally.keys().any(|v| prob_of(v).is_some()) {
            out.push_str(&format!("{title} Exp events:\n"));
            for (variant, (n, clicks)) in &tally {
                let exact = prob_of(variant)
                    .map_or("not given".to_string(), |p| format!("{:.2}%", 100.0 * p));
                out.push_str(&format!(
                    "{variant}: {n} visits, {clicks} clicks, Conv={}, Exact: {exact}\n",
                    conversion(*n, *clicks)
                ));
            }
        }
        tallies.push((key, design, tally));
    }

    out.push_str(&format!(
        "\n{} visits to {}{page}, seed {}, click probabilities {}\n",
        visits.len(),
        options.target.trim_end_matches('/'),
        options.seed,
        options
            .click_probs
            .iter()
            .map(|(v, p)| format!("{v}={p}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if let Some(pace) = options.pacing.describe() {
        out.push_str(&pacing_line(
            &pace,
            visits.len(),
            options.pacing.planned(),
            after.elapsed,
        ));
    }
    let results_of = |key: &str| after.results.get(key).and_then(|r| r.as_ref().ok());
    for (key, design, tally) in &tallies {
        out.push_str(&format!("{key}:\n"));
        z_tests(&mut out, options, *design, tally);
        let line = match results_of(key).filter(|r| r.shares_moved()) {
            Some(moved) => moved_sample_ratio(moved),
            None => sample_ratio(options, *design, tally),
        };
        out.push_str(&format!("  {line}\n"));
    }
    independence(&mut out, visits, &experiments);
    for &key in &experiments {
        match after.results.get(key) {
            Some(Ok(results)) => out.push_str(&periods::render(key, results, visits)),
            Some(Err(why)) => out.push_str(&format!("{key}: the periods were not read: {why}\n")),
            None => {}
        }
    }
    out
}

/// `paced at 50/s for 2s: 100 of 100 planned visits in 2.0 s`, and what to do when the
/// proxy did not keep up.
fn pacing_line(pace: &str, made: usize, planned: usize, elapsed: Duration) -> String {
    let behind = if made < planned {
        " (the visits fell behind the pace: give more --concurrency or a lower --rate)"
    } else {
        ""
    };
    format!(
        "paced at {pace}: {made} of {planned} planned visits in {:.1} s{behind}\n",
        elapsed.as_secs_f64()
    )
}

/// The SRM line of a run whose shares moved: the weights read before the visits are no
/// longer the split to expect, so the proxy's own check over its periods stands in.
fn moved_sample_ratio(results: &RunResults) -> String {
    let periods = results.periods.len();
    match results.srm_p_value {
        Some(p) => {
            let flag = if p < crate::stats::analysis::SRM_THRESHOLD {
                "MISMATCH"
            } else {
                "ok"
            };
            format!(
                "SRM: the shares moved ({periods} periods); the proxy's check against each \
                 period's shares: p = {p:.4} ({flag})"
            )
        }
        None => format!(
            "SRM: not checked (the shares moved, {periods} periods, and the proxy gave no check)"
        ),
    }
}

fn tally<'v>(visits: &'v [Visit], key: &str, design: Option<&'v Design>) -> Tally<'v> {
    let mut tally: Tally = BTreeMap::new();
    // A variant no visit got (weight 0, or just unlucky) still has its line.
    for (name, _) in design.map(|d| d.variants.as_slice()).unwrap_or_default() {
        tally.insert(name.as_str(), (0, 0));
    }
    for v in visits {
        if let Some(g) = v.groups.get(key) {
            let e = tally.entry(g.as_str()).or_default();
            e.0 += 1;
            e.1 += u64::from(v.clicked);
        }
    }
    tally
}

fn percent(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        100.0 * part as f64 / total as f64
    }
}

/// `20.00 +- 3.51%`: the rate and two standard errors, √(p(1−p)/n), in percent.
pub fn conversion(visits: u64, clicks: u64) -> String {
    if visits == 0 {
        return "n/a (no visits)".to_string();
    }
    let rate = clicks as f64 / visits as f64;
    let two_se = 2.0 * (rate * (1.0 - rate) / visits as f64).sqrt();
    format!("{:.2} +- {:.2}%", 100.0 * rate, 100.0 * two_se)
}

/// Each variant with a click probability against the control: the experiment's own when
/// it has one, else the first of `--click-probs` in this experiment.
fn z_tests(out: &mut String, options: &Options, design: Option<&Design>, tally: &Tally) {
    let given: Vec<&str> = options
        .click_probs
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| tally.contains_key(name))
        .collect();
    let control = design
        .map(|d| d.control.as_str())
        .filter(|c| given.contains(c))
        .or_else(|| given.first().copied());
    let Some(control) = control else { return };
    let (na, ca) = tally[control];
    for variant in given.iter().filter(|v| **v != control) {
        let (nb, cb) = tally[variant];
        let a = Proportion {
            conversions: ca,
            users: na,
        };
        let b = Proportion {
            conversions: cb,
            users: nb,
        };
        match stats::two_proportion_z(a, b) {
            Some((z, p)) => out.push_str(&format!(
                "  z-test {variant} vs {control}: z = {z:.2}, p = {p:.4}\n"
            )),
            None => out.push_str(&format!("  z-test {variant} vs {control}: no variance\n")),
        }
    }
}

/// The SRM line: the split against the proxy's weights (and traffic share), or the
/// `--weights` given, or why it is not checked. Never against a guess: equal weights for
/// a 20/30/50 experiment would read as a mismatch.
fn sample_ratio(options: &Options, design: Option<&Design>, tally: &Tally) -> String {
    let names: Vec<&str> = tally.keys().copied().collect();
    let observed: Vec<u64> = tally.values().map(|(n, _)| *n).collect();
    let weight_list = |pairs: &mut dyn Iterator<Item = (&str, String)>| {
        pairs
            .map(|(n, w)| format!("{n}={w}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (against, expected) = match design {
        Some(d) => match d.expected_shares() {
            Ok(shares) => {
                let mut label = format!(
                    "the proxy's weights {}",
                    weight_list(&mut d.variants.iter().map(|(n, w)| (n.as_str(), w.to_string())))
                );
                if d.traffic < 100.0 {
                    label.push_str(&format!(
                        ", traffic {}% (the rest get {})",
                        d.traffic, d.fallback
                    ));
                }
                let share_of = |name: &str| {
                    d.variants
                        .iter()
                        .zip(&shares)
                        .find(|((n, _), _)| n == name)
                        .map_or(0.0, |(_, s)| *s)
                };
                (label, names.iter().map(|n| share_of(n)).collect::<Vec<_>>())
            }
            Err(why) => return format!("SRM: not checked ({why})"),
        },
        None if !options.weights.is_empty() => {
            let weight_of = |name: &str| {
                options
                    .weights
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(0.0, |(_, w)| *w)
            };
            (
                format!(
                    "the given weights {}",
                    weight_list(
                        &mut options
                            .weights
                            .iter()
                            .map(|(n, w)| (n.as_str(), w.to_string()))
                    )
                ),
                names.iter().map(|n| weight_of(n)).collect(),
            )
        }
        None => {
            return "SRM: not checked (the designed weights are unknown: give --admin URL to \
                    read them from the proxy, or --weights)"
                .to_string()
        }
    };
    match stats::sample_ratio_mismatch(&observed, &expected) {
        Some((_, p)) => {
            let flag = if p < crate::stats::analysis::SRM_THRESHOLD {
                "MISMATCH"
            } else {
                "ok"
            };
            format!("SRM against {against}: p = {p:.4} ({flag})")
        }
        None => {
            format!("SRM against {against}: nothing to test (fewer than two variants or no visits)")
        }
    }
}

/// A contingency table and χ² test for every pair of experiments: assignments to one
/// must not depend on the other.
fn independence(out: &mut String, visits: &[Visit], experiments: &[&str]) {
    for (i, a) in experiments.iter().enumerate() {
        for b in &experiments[i + 1..] {
            let rows = variants_of(visits, a);
            let cols = variants_of(visits, b);
            let table: Vec<Vec<u64>> = rows
                .iter()
                .map(|r| {
                    cols.iter()
                        .map(|c| {
                            visits
                                .iter()
                                .filter(|v| {
                                    v.groups.get(*a).map(String::as_str) == Some(*r)
                                        && v.groups.get(*b).map(String::as_str) == Some(*c)
                                })
                                .count() as u64
                        })
                        .collect()
                })
                .collect();
            out.push_str(&format!(
                "independence of {a} and {b}\n  {:<10}{}\n",
                "",
                cols.iter().map(|c| format!("{c:>10}")).collect::<String>()
            ));
            for (r, row) in rows.iter().zip(&table) {
                out.push_str(&format!(
                    "  {r:<10}{}\n",
                    row.iter().map(|n| format!("{n:>10}")).collect::<String>()
                ));
            }
            match stats::independence(&table) {
                Some((chi2, p)) => out.push_str(&format!("  chi2 = {chi2:.2}, p = {p:.4}\n")),
                None => out.push_str("  (one of them has a single group: nothing to test)\n"),
            }
        }
    }
}

fn variants_of<'v>(visits: &'v [Visit], experiment: &str) -> Vec<&'v str> {
    visits
        .iter()
        .filter_map(|v| v.groups.get(experiment).map(String::as_str))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(click_probs: &[(&str, f64)]) -> Options {
        Options {
            target: "http://x".into(),
            pacing: crate::cli::simulate::pacing::Pacing::new(Some(0), None, None).unwrap(),
            click_probs: click_probs
                .iter()
                .map(|(n, p)| (n.to_string(), *p))
                .collect(),
            event: "button_click".into(),
            params: serde_json::json!({}),
            concurrency: 1,
            seed: 1,
            weights: vec![],
            admin: None,
            token: None,
            path: None,
        }
    }

    fn visit(groups: &[(&str, &str)], clicked: bool) -> Visit {
        Visit {
            groups: groups
                .iter()
                .map(|(e, g)| (e.to_string(), g.to_string()))
                .collect(),
            clicked,
            at: std::time::SystemTime::UNIX_EPOCH,
        }
    }

    fn design(weights: &[(&str, u32)]) -> Design {
        Design {
            key: "moon_mars".into(),
            title: "Moon/Mars".into(),
            state: "active".into(),
            variants: weights.iter().map(|(n, w)| (n.to_string(), *w)).collect(),
            fallback: weights[0].0.into(),
            control: weights[0].0.into(),
            rollout_variant: None,
            traffic: 100.0,
            path_prefix: None,
            host: None,
        }
    }

    /// The issue's example: 520 Mars visits with 104 clicks, 480 Moon visits.
    fn demo_visits() -> Vec<Visit> {
        let mut visits = Vec::new();
        for i in 0..520 {
            visits.push(visit(&[("moon_mars", "Mars")], i < 104));
        }
        for i in 0..480 {
            visits.push(visit(&[("moon_mars", "Moon")], i < 48));
        }
        visits
    }

    #[test]
    fn prints_the_demo_blocks_in_its_format_and_order() {
        let designs = [design(&[("Moon", 50), ("Mars", 50)])];
        let text = report(
            &options(&[("Moon", 0.1), ("Mars", 0.2)]),
            Some(&designs),
            "/",
            &demo_visits(),
            &After::default(),
        );
        // python3 -c "print(200*(0.2*0.8/520)**0.5, 200*(0.1*0.9/480)**0.5)"
        //   → 3.5082320772281164 2.7386127875258306
        let head = "Moon/Mars Exp Split:\n\
                    Mars: 520 visits (52.00%)\n\
                    Moon: 480 visits (48.00%)\n\
                    Moon/Mars Exp events:\n\
                    Mars: 520 visits, 104 clicks, Conv=20.00 +- 3.51%, Exact: 20.00%\n\
                    Moon: 480 visits, 48 clicks, Conv=10.00 +- 2.74%, Exact: 10.00%\n";
        assert!(text.starts_with(head), "{text}");
        // python3 -c "from statsmodels.stats.proportion import proportions_ztest as t;
        //   print(t([104, 48], [520, 480]))"  → (4.4005055, 1.08e-05)
        assert!(
            text.contains("  z-test Mars vs Moon: z = 4.40, p = 0.0000"),
            "{text}"
        );
        // python3 -c "from scipy.stats import chisquare; print(chisquare([480, 520]))"
        //   → pvalue=0.2059032107320684
        assert!(
            text.contains("  SRM against the proxy's weights Moon=50 Mars=50: p = 0.2059 (ok)"),
            "{text}"
        );
    }

    #[test]
    fn the_split_is_checked_against_the_designed_weights_never_a_guess() {
        let mut visits = Vec::new();
        for (variant, n) in [("A", 200), ("B", 300), ("C", 500)] {
            for _ in 0..n {
                visits.push(visit(&[("moon_mars", variant)], false));
            }
        }
        let probs = [("A", 0.1)];
        let designs = [design(&[("A", 20), ("B", 30), ("C", 50)])];
        let text = report(
            &options(&probs),
            Some(&designs),
            "/",
            &visits,
            &After::default(),
        );
        assert!(
            text.contains("SRM against the proxy's weights A=20 B=30 C=50: p = 1.0000 (ok)"),
            "{text}"
        );
        let text = report(&options(&probs), None, "/", &visits, &After::default());
        assert!(
            text.contains("SRM: not checked (the designed weights are unknown"),
            "{text}"
        );
        assert!(!text.contains("MISMATCH"), "{text}");
        let mut equal = options(&probs);
        equal.weights = vec![("A".into(), 1.0), ("B".into(), 1.0), ("C".into(), 1.0)];
        // python3 -c "from scipy.stats import chisquare; print(chisquare([200, 300, 500]))"
        //   → statistic=140.0, pvalue=3.98e-31
        let text = report(&equal, None, "/", &visits, &After::default());
        assert!(
            text.contains("SRM against the given weights A=1 B=1 C=1: p = 0.0000 (MISMATCH)"),
            "{text}"
        );
    }

    #[test]
    fn a_variant_nobody_got_keeps_its_line_and_states_without_a_split_say_so() {
        let mut designs = [design(&[("Moon", 50), ("Mars", 50), ("Venus", 0)])];
        let text = report(
            &options(&[("Moon", 0.1)]),
            Some(&designs),
            "/",
            &demo_visits(),
            &After::default(),
        );
        assert!(text.contains("Venus: 0 visits (0.00%)\n"), "{text}");
        assert!(
            text.contains("Venus: 0 visits, 0 clicks, Conv=n/a (no visits), Exact: not given\n"),
            "{text}"
        );
        designs[0].state = "rollout".into();
        designs[0].rollout_variant = Some("Mars".into());
        let text = report(
            &options(&[("Moon", 0.1)]),
            Some(&designs),
            "/",
            &demo_visits(),
            &After::default(),
        );
        assert!(
            text.contains("SRM: not checked (rollout: every device gets Mars)"),
            "{text}"
        );
    }

    #[test]
    fn pairs_of_experiments_are_tested_for_independence() {
        let mut visits = Vec::new();
        for i in 0..100 {
            let btn = if i % 2 == 0 { "A" } else { "B" };
            visits.push(visit(&[("moon_mars", "Moon"), ("btn", btn)], false));
            visits.push(visit(&[("moon_mars", "Mars"), ("btn", btn)], false));
        }
        let text = report(
            &options(&[("Moon", 0.1), ("Mars", 0.2)]),
            None,
            "/",
            &visits,
            &After::default(),
        );
        // No design: the keys' order, and the key stands in for the title.
        assert!(
            text.starts_with("btn Exp Split:\nA: 100 visits (50.00%)\n"),
            "{text}"
        );
        assert!(text.contains("moon_mars Exp events:\n"), "{text}");
        assert!(
            !text.contains("btn Exp events:"),
            "no click probability for btn: {text}"
        );
        assert!(text.contains("independence of btn and moon_mars"), "{text}");
        assert!(text.contains("chi2 = 0.00, p = 1.0000"), "{text}");
    }

    /// A bandit moved the shares: the weights read before the visits are not the split
    /// to expect, so the proxy's check over its periods is shown; the periods follow.
    #[test]
    fn a_run_whose_shares_moved_shows_the_proxys_split_check_and_its_periods() {
        let designs = [design(&[("Moon", 50), ("Mars", 50)])];
        let results = serde_json::json!({
            "srm_p_value": 0.0004,
            "run": {"number": 2},
            "periods": [
                {"number": 1, "started_at": "2026-12-01T23:40:00Z",
                 "shares": {"Mars": 0.5, "Moon": 0.5}, "inputs": null,
                 "counts": {"Mars": {"users": 300}, "Moon": {"users": 300}}},
                {"number": 2, "started_at": "2026-12-01T23:40:05Z",
                 "shares": {"Mars": 0.9, "Moon": 0.1},
                 "inputs": {"Mars": {"users": 300, "conversions": 60},
                            "Moon": {"users": 300, "conversions": 30}},
                 "counts": {"Mars": {"users": 220}, "Moon": {"users": 180}}}
            ]
        });
        let mut options = options(&[("Moon", 0.1), ("Mars", 0.2)]);
        options.pacing = crate::cli::simulate::pacing::Pacing::new(
            None,
            Some(Duration::from_secs(20)),
            Some(50.0),
        )
        .unwrap();
        let after = After {
            elapsed: Duration::from_millis(20_040),
            results: [("moon_mars".to_string(), RunResults::from_json(&results))].into(),
        };
        let text = report(&options, Some(&designs), "/", &demo_visits(), &after);
        assert!(
            text.contains("paced at 50/s for 20s: 1000 of 1000 planned visits in 20.0 s\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "  SRM: the shares moved (2 periods); the proxy's check against each \
                 period's shares: p = 0.0004 (MISMATCH)\n"
            ),
            "{text}"
        );
        assert!(!text.contains("SRM against the proxy's weights"), "{text}");
        assert!(
            text.contains("moon_mars, run 2: 2 periods\n  period  started "),
            "{text}"
        );
        // Every visit is at the epoch, before both periods: all in the first one.
        assert!(
            text.contains(
                "     1  2026-12-01T23:40:00Z  Mars     50.00%       -      300    520/104\n"
            ),
            "{text}"
        );

        // Fewer visits than planned: the line says what to change.
        let mut slow = after.clone();
        slow.elapsed = Duration::from_secs(25);
        let visits = &demo_visits()[..900];
        let text = report(&options, Some(&designs), "/", visits, &slow);
        assert!(
            text.contains("900 of 1000 planned visits in 25.0 s (the visits fell behind"),
            "{text}"
        );
        // Results that could not be read are said, and the weights' check stays.
        slow.results
            .insert("moon_mars".to_string(), Err("no answer".to_string()));
        let text = report(&options, Some(&designs), "/", visits, &slow);
        assert!(
            text.contains("moon_mars: the periods were not read: no answer\n"),
            "{text}"
        );
        assert!(text.contains("SRM against the proxy's weights"), "{text}");
    }
}
