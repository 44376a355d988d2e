//! The admin page's results section of one experiment: which run it shows (and a
//! selector for the others), the verdicts with a one-click rollout of a significant
//! winner, the table with its columns explained, and the charts; a bandit's status and
//! the charts over a run's periods come from `bandit_view`. Pure: results in, markup out.

use std::collections::BTreeMap;

use super::bandit_view;
use super::chart;
use super::period_chart::StepLine;
use super::series::{self, Arm};
use crate::admin::results::ExperimentResults;
use crate::config::State;
use crate::state::runs::Run;
use crate::stats::analysis::{Report, VariantReport, SRM_THRESHOLD};
use crate::util::html::escape;

/// An experiment's results for the run shown, and their analysis (or why there is none).
pub struct Outcome {
    pub title: String,
    pub state: State,
    pub results: ExperimentResults,
    pub report: Result<Report, String>,
    pub confidence: f64,
    /// Why this is not the run that was asked for (`run.KEY=N` named no run).
    pub problem: Option<String>,
}

/// What every section needs from the page.
pub struct View<'a> {
    pub can_write: bool,
    /// Unix ms: where the charts of a running run end.
    pub now_ms: u64,
    /// The runs chosen on the page (`run.KEY=N`), kept when another one is chosen.
    pub selected: &'a BTreeMap<String, u32>,
    pub palette: &'static [&'static str],
}

/// The columns a newcomer does not know, explained where they are.
pub const COLUMN_HELP: &[(&str, &str)] = &[
    ("devices", "Devices (browsers, by their device_id cookie) newly assigned to the variant in this run: the population analysed."),
    ("conversions", "Devices of this run that reached the goal, each counted once."),
    ("rate", "conversions ÷ devices"),
    ("p", "Two-proportion z-test against the control. Valid for a single look planned in advance."),
    ("p holm", "p adjusted (Holm) for comparing several variants with the control."),
    ("p seq", "Always-valid (sequential) p: stays valid however often you look. The verdict uses it."),
    ("P(beat)", "Bayesian probability that the variant's rate is above the control's (uniform priors)."),
    ("P(best)", "Bayesian probability that the variant has the highest rate of all (uniform priors, the run's totals): what Thompson sampling gives it. Shown for the bandit's goal, or the first goal."),
];

/// A verdict worth acting on: the always-valid p-value under 1 − confidence and no
/// sample-ratio mismatch (the verdict's "significant").
pub fn is_significant(row: &VariantReport, srm_p_value: Option<f64>, confidence: f64) -> bool {
    let srm = srm_p_value.is_some_and(|p| p < SRM_THRESHOLD);
    !srm && row.p_value_sequential.is_some_and(|p| p < 1.0 - confidence)
}

/// Whether to offer "roll out NAME" next to a verdict: a significant lead, in the run
/// devices are counted in now (an active experiment, its current run shown).
pub fn offers_rollout(outcome: &Outcome, row: &VariantReport, srm_p_value: Option<f64>) -> bool {
    outcome.state == State::Active
        && outcome.results.shows_current_run()
        && is_significant(row, srm_p_value, outcome.confidence)
        && row.diff.is_some_and(|d| d > 0.0)
}

fn run_dates(r: &Run) -> String {
    match &r.ended_at {
        Some(end) => format!(
            "<time>{}</time> – <time>{}</time>",
            escape(&r.started_at),
            escape(end)
        ),
        None => format!("since <time>{}</time>", escape(&r.started_at)),
    }
}

/// "Showing run 1 of 2 (ended …); the latest is run 2", and the selector for the others.
fn run_line(outcome: &Outcome, view: &View, key: &str) -> String {
    let results = &outcome.results;
    let Some(shown) = &results.run else {
        return r#"<p class="run-shown">Never active yet: no run to show.</p>"#.to_string();
    };
    let latest = results.latest_run();
    let mut line = format!(
        r#"<p class="run-shown">Showing <strong>run {n}</strong> of {latest} · {dates}"#,
        n = shown.number,
        dates = run_dates(shown),
    );
    if results.shows_current_run() {
        line.push_str(" · devices are counted in it now");
    } else if shown.number != latest {
        line.push_str(&format!(" · the latest is run {latest}"));
    } else {
        line.push_str(" · ended");
    }
    line.push_str("</p>");
    if results.runs.len() > 1 {
        // A plain GET form (it works without scripts); the page's script submits it on
        // change. The other experiments' choices ride along.
        let kept: String = view
            .selected
            .iter()
            .filter(|(k, _)| k.as_str() != key)
            .map(|(k, n)| {
                format!(
                    r#"<input type="hidden" name="run.{}" value="{n}">"#,
                    escape(k)
                )
            })
            .collect();
        let options: String = results
            .runs
            .iter()
            .rev()
            .map(|r| {
                let selected = if r.number == shown.number {
                    " selected"
                } else {
                    ""
                };
                let latest = if r.number == latest { " (latest)" } else { "" };
                let dates = match &r.ended_at {
                    Some(end) => format!("{} – {}", r.started_at, end),
                    None => format!("since {}", r.started_at),
                };
                format!(
                    r#"<option value="{n}"{selected}>run {n}{latest} · {dates}</option>"#,
                    n = r.number,
                    dates = escape(&dates),
                )
            })
            .collect();
        line.push_str(&format!(
            r#"<form class="run" method="get" action="/experiments">{kept}<label>Run <select name="run.{key}">{options}</select></label><button type="submit" class="secondary">Show</button></form>"#
        ));
    }
    line
}

/// One experiment's results: the run shown, the devices chart, and per goal the
/// verdicts, the table and two charts.
pub fn results_section(outcome: &Outcome, view: &View) -> String {
    let counts = &outcome.results.counts;
    let key = escape(&counts.experiment);
    let mut out = format!(
        r#"<section class="results" data-key="{key}"><h3>{title} <code>{key}</code> <span class="muted">control {control}</span></h3>{run_line}"#,
        title = escape(&outcome.title),
        control = escape(counts.control.as_deref().unwrap_or("")),
        run_line = run_line(outcome, view, &counts.experiment),
    );
    if let Some(problem) = &outcome.problem {
        out.push_str(&format!(r#"<p class="notice">{}</p>"#, escape(problem)));
    }
    out.push_str(&bandit_view::status(
        &outcome.results,
        outcome.state,
        view.now_ms,
    ));
    out.push_str(&super::decision_view::section(&outcome.results));
    let report = match &outcome.report {
        Err(why) => {
            out.push_str(&format!(
                r#"<p class="muted">{}</p></section>"#,
                escape(why)
            ));
            return out;
        }
        Ok(report) => report,
    };
    let color_of = |name: &str| {
        let index = counts.variants.keys().position(|k| k == name).unwrap_or(0);
        view.palette[index % view.palette.len()]
    };
    let domain = chart_domain(&outcome.results, view.now_ms);
    let history = &outcome.results.history;
    let devices_series: Vec<(String, Vec<(u64, u64)>)> = counts
        .variants
        .keys()
        .map(|name| {
            let points = history
                .variants
                .get(name)
                .map(|h| h.series.iter().map(|(t, v)| (*t, v.assigned)).collect())
                .unwrap_or_default();
            (name.clone(), points)
        })
        .collect();
    let device_lines: Vec<chart::DevicesLine> = devices_series
        .iter()
        .map(|(name, points)| chart::DevicesLine {
            name,
            color: color_of(name),
            points,
        })
        .collect();
    let step_lines: Vec<StepLine> = counts
        .variants
        .keys()
        .map(|name| StepLine {
            name,
            color: color_of(name),
        })
        .collect();
    out.push_str(&format!(
        r#"<div class="charts">{}{}</div>"#,
        chart::devices_over_time(&counts.experiment, &device_lines, domain),
        bandit_view::period_charts(&outcome.results, &step_lines, domain),
    ));
    if report.goals.is_empty() {
        out.push_str(
            r#"<p class="muted">No goals configured: add <code>goals</code> to the experiment to measure conversions.</p></section>"#,
        );
        return out;
    }
    match report.srm_p_value {
        Some(p) if p < SRM_THRESHOLD => out.push_str(&format!(
            r#"<p class="verdict srm">Sample-ratio mismatch (p = {p:.1e}): the split does not match the weights — do not trust these results.</p>"#
        )),
        Some(p) => out.push_str(&format!(
            r#"<div class="muted">sample ratio ok (p = {p:.3}): the devices split as the weights say</div>"#
        )),
        None => {}
    }
    let best_goal = bandit_view::p_best_goal(&outcome.results, report);
    for (goal, g) in &report.goals {
        out.push_str(&format!(
            r#"<div class="goal"><h4>goal {}</h4>"#,
            escape(goal)
        ));
        let challengers = g
            .variants
            .iter()
            .filter(|(name, _)| **name != report.control);
        for ((name, row), verdict) in challengers.zip(&g.verdicts) {
            let srm = report.srm_p_value.is_some_and(|p| p < SRM_THRESHOLD);
            let class = if srm {
                " srm"
            } else if is_significant(row, report.srm_p_value, outcome.confidence) {
                " significant"
            } else {
                ""
            };
            let action = if offers_rollout(outcome, row, report.srm_p_value) {
                let disabled = if view.can_write {
                    String::new()
                } else {
                    r#" disabled title="log in to make changes""#.to_string()
                };
                format!(
                    r#"<button type="button" class="rollout" data-key="{key}" data-variant="{v}"{disabled}>Roll out {v}</button><span class="muted">everyone gets {v}; the run ends</span>"#,
                    v = escape(name),
                )
            } else {
                String::new()
            };
            out.push_str(&format!(
                r#"<div class="verdict-line"><p class="verdict{class}">{}</p>{action}<p class="error" hidden></p></div>"#,
                escape(verdict)
            ));
        }
        let p_best =
            (best_goal == Some(goal.as_str())).then(|| bandit_view::p_best(&outcome.results, goal));
        out.push_str(&results_table(
            report,
            goal,
            g,
            outcome.confidence,
            p_best.as_ref(),
            &color_of,
        ));
        out.push_str(&bandit_view::stratified_note(&outcome.results));
        let rate_rows: Vec<chart::RateRow> = g
            .variants
            .iter()
            .map(|(name, row)| {
                let interval = crate::stats::rate_interval(
                    crate::stats::Proportion {
                        conversions: row.conversions,
                        users: row.users,
                    },
                    outcome.confidence,
                );
                // No devices: nothing is known, the whisker spans every rate.
                let known = |x: f64, otherwise: f64| if x.is_finite() { x } else { otherwise };
                chart::RateRow {
                    name,
                    color: color_of(name),
                    rate: row.rate,
                    low: known(interval.low, 0.0),
                    high: known(interval.high, 1.0),
                }
            })
            .collect();
        let devices_of = |name: &str| {
            devices_series
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| p.as_slice())
                .unwrap_or_default()
        };
        let conversions_of = |name: &str| -> Vec<(u64, u64)> {
            history
                .variants
                .get(name)
                .and_then(|h| h.goals.get(goal))
                .map(|g| g.series.iter().map(|(t, v)| (*t, v.conversions)).collect())
                .unwrap_or_default()
        };
        let control_conversions = conversions_of(&report.control);
        let control = Arm {
            devices: devices_of(&report.control),
            conversions: &control_conversions,
        };
        let difference_lines: Vec<chart::DifferenceLine> = g
            .variants
            .keys()
            .filter(|name| **name != report.control)
            .map(|name| {
                let conversions = conversions_of(name);
                let variant = Arm {
                    devices: devices_of(name),
                    conversions: &conversions,
                };
                chart::DifferenceLine {
                    name,
                    color: color_of(name),
                    points: series::difference_over_time(control, variant, outcome.confidence),
                }
            })
            .collect();
        out.push_str(&format!(
            r#"<div class="charts">{}{}</div></div>"#,
            chart::difference_over_time(
                &format!("{}-{goal}", counts.experiment),
                goal,
                &report.control,
                &difference_lines,
                domain,
                outcome.confidence,
            ),
            chart::rates_with_intervals(goal, &rate_rows, outcome.confidence),
        ));
    }
    out.push_str("</section>");
    out
}

/// The span the charts over time show: the run's start to its end (or now while it
/// runs), widened to any data outside it; the data's own span without a run.
fn chart_domain(results: &ExperimentResults, now_ms: u64) -> (u64, u64) {
    let ms = crate::util::time::parse_rfc3339;
    let times = results
        .history
        .variants
        .values()
        .flat_map(|v| v.series.iter().map(|(t, _)| *t));
    let (first, last) = times.fold((u64::MAX, 0), |(a, b), t| (a.min(t), b.max(t)));
    let data = (first <= last).then_some((first, last));
    let (start, end) = match (&results.run, data) {
        (Some(run), _) => (
            ms(&run.started_at).or(data.map(|d| d.0)).unwrap_or(now_ms),
            run.ended_at.as_deref().and_then(ms).unwrap_or(now_ms),
        ),
        (None, Some(span)) => span,
        (None, None) => (now_ms.saturating_sub(60_000), now_ms),
    };
    let (start, end) = match data {
        Some((first, last)) => (start.min(first), end.max(last)),
        None => (start, end),
    };
    (start.min(end), end)
}

fn results_table(
    report: &Report,
    goal: &str,
    g: &crate::stats::analysis::GoalReport,
    confidence: f64,
    p_best: Option<&BTreeMap<String, f64>>,
    color_of: &dyn Fn(&str) -> &'static str,
) -> String {
    let help = |name: &str| {
        COLUMN_HELP
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(String::new(), |(_, h)| escape(h))
    };
    let th = |name: &str| format!(r#"<th><abbr title="{}">{name}</abbr></th>"#, help(name));
    let mut out = format!(
        r#"<table class="report" data-goal="{goal}"><tr><th>variant</th>{}{}{}<th><abbr title="The variant's rate minus the control's, in percentage points, with its {conf:.0}% interval">diff [{conf:.0}% CI]</abbr></th>{}{}{}{}{}</tr>"#,
        th("devices"),
        th("conversions"),
        th("rate"),
        th("p"),
        th("p holm"),
        th("p seq"),
        th("P(beat)"),
        if p_best.is_some() {
            th("P(best)")
        } else {
            String::new()
        },
        goal = escape(goal),
        conf = confidence * 100.0
    );
    for (name, row) in g.variants.iter() {
        let cell = |x: Option<f64>, f: &dyn Fn(f64) -> String| {
            x.filter(|x| x.is_finite()).map_or(String::new(), f)
        };
        let pts = |x: f64| format!("{:+.1}", 100.0 * x);
        let diff = match (row.diff, row.ci_low, row.ci_high) {
            (Some(d), Some(l), Some(h)) if l.is_finite() && h.is_finite() => {
                format!("{} [{}, {}]", pts(d), pts(l), pts(h))
            }
            _ if name == &report.control => "control".to_string(),
            _ => String::new(),
        };
        let p = |x: f64| escape(&crate::stats::analysis::format_p(x));
        let best = p_best.map_or(String::new(), |by_variant| {
            let value = by_variant.get(name.as_str()).copied();
            format!(
                r#"<td class="p-best">{}</td>"#,
                cell(value, &|x| format!("{:.1}%", 100.0 * x))
            )
        });
        out.push_str(&format!(
            r#"<tr><td><span class="swatch" style="background:{color}"></span>{name}</td><td>{devices}</td><td>{conversions}</td><td>{rate:.2}%</td><td>{diff}</td><td>{pv}</td><td>{ph}</td><td>{ps}</td><td>{beat}</td>{best}</tr>"#,
            color = color_of(name),
            name = escape(name),
            devices = row.users,
            conversions = row.conversions,
            rate = 100.0 * row.rate,
            pv = cell(row.p_value, &p),
            ph = cell(row.p_value_holm, &p),
            ps = cell(row.p_value_sequential, &p),
            beat = cell(row.chance_to_beat_control, &|x| format!("{:.1}%", 100.0 * x)),
        ));
    }
    out.push_str("</table>");
    out
}

/// The legend of the results tables, once above them (each header also has it as a
/// tooltip).
pub fn column_key() -> String {
    let key: Vec<String> = ["p", "p holm", "p seq", "P(beat)", "P(best)"]
        .iter()
        .filter_map(|name| COLUMN_HELP.iter().find(|(n, _)| n == name))
        .map(|(name, help)| format!("<strong>{}</strong>: {}", escape(name), escape(help)))
        .collect();
    format!(r#"<p class="muted column-key">{}</p>"#, key.join(" · "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counting::book::RunCounts;
    use crate::stats::analysis::{
        indexmap_like::OrderedMap, Counts, GoalCounts, Settings, VariantCounts,
    };

    const PALETTE: &[&str] = &["#111", "#222"];

    fn run(number: u32, ended: bool) -> Run {
        Run {
            number,
            started_at: format!("2026-11-23T1{number}:00:00Z"),
            ended_at: ended.then(|| format!("2026-11-23T1{number}:30:00Z")),
            periods: Vec::new(),
        }
    }

    /// Moon 1000 devices / 100 conversions against Mars 1000 / `mars`.
    fn outcome(state: State, runs: Vec<Run>, shown: u32, mars: u64) -> Outcome {
        let mut variants = OrderedMap::default();
        for (name, conversions) in [("Moon", 100), ("Mars", mars)] {
            variants.insert(
                name.to_string(),
                VariantCounts {
                    users: 1000,
                    goals: [(
                        "click".to_string(),
                        GoalCounts {
                            conversions,
                            value_sum: None,
                            value_sum_sq: None,
                        },
                    )]
                    .into(),
                },
            );
        }
        let counts = Counts {
            experiment: "moon_mars".into(),
            control: Some("Moon".into()),
            variants,
            weights: None,
            periods: Vec::new(),
        };
        let report = crate::stats::analysis::analyze(&counts, Settings::default())
            .map_err(|e| e.to_string());
        let current = runs
            .last()
            .filter(|r| r.ended_at.is_none())
            .map(|r| r.number);
        Outcome {
            title: "Moon/Mars".into(),
            state,
            results: ExperimentResults {
                run: runs.iter().find(|r| r.number == shown).cloned(),
                runs,
                current_run: if state == State::Active {
                    current
                } else {
                    None
                },
                counts,
                history: RunCounts::default(),
                bandit: None,
                decisions: None,
            },
            report,
            confidence: 0.95,
            problem: None,
        }
    }

    fn render(outcome: &Outcome, can_write: bool) -> String {
        let selected = BTreeMap::from([("other".to_string(), 3)]);
        results_section(
            outcome,
            &View {
                can_write,
                now_ms: 1_795_440_000_000,
                selected: &selected,
                palette: PALETTE,
            },
        )
    }

    #[test]
    fn a_significant_lead_in_the_current_run_offers_its_rollout() {
        // 10 % against 20 % of 1000 devices each: significant by any test.
        let live = outcome(State::Active, vec![run(1, false)], 1, 200);
        let html = render(&live, true);
        assert!(
            html.contains(r#"<button type="button" class="rollout" data-key="moon_mars" data-variant="Mars">Roll out Mars</button>"#),
            "{html}"
        );
        assert!(html.contains(r#"class="verdict significant""#));
        assert!(render(&live, false).contains(r#"data-variant="Mars" disabled title="log in"#));
        // Not significant; or an earlier run; or no longer active: no button.
        let close = outcome(State::Active, vec![run(1, false)], 1, 105);
        assert!(!render(&close, true).contains("Roll out"));
        let old = outcome(State::Active, vec![run(1, true), run(2, false)], 1, 200);
        assert!(!render(&old, true).contains("Roll out"));
        let stopped = outcome(State::Inactive, vec![run(1, true)], 1, 200);
        assert!(!render(&stopped, true).contains("Roll out"));
        // A significant loss is not a winner to roll out.
        let worse = outcome(State::Active, vec![run(1, false)], 1, 40);
        let html = render(&worse, true);
        assert!(html.contains(r#"class="verdict significant""#) && !html.contains("Roll out"));
    }

    #[test]
    fn the_page_says_which_run_it_shows_and_offers_the_others() {
        let runs = vec![run(1, true), run(2, true)];
        let html = render(&outcome(State::Rollout, runs.clone(), 1, 120), true);
        assert!(
            html.contains("Showing <strong>run 1</strong> of 2 · <time>2026-11-23T11:00:00Z</time> – <time>2026-11-23T11:30:00Z</time> · the latest is run 2"),
            "{html}"
        );
        assert!(html.contains(r#"<select name="run.moon_mars"><option value="2">run 2 (latest)"#));
        assert!(html.contains(r#"<option value="1" selected>run 1 · "#));
        assert!(
            html.contains(r#"<input type="hidden" name="run.other" value="3">"#),
            "another experiment's choice is kept"
        );
        let live = outcome(State::Active, vec![run(1, false)], 1, 120);
        let html = render(&live, true);
        assert!(html.contains("devices are counted in it now"));
        assert!(!html.contains("<select"), "one run: nothing to choose");
        let mut never = outcome(State::Inactive, vec![], 1, 120);
        never.results.run = None;
        assert!(render(&never, true).contains("Never active yet"));
    }

    #[test]
    fn the_columns_are_explained_in_place() {
        let html = render(&outcome(State::Active, vec![run(1, false)], 1, 120), true);
        for name in ["p holm", "p seq", "P(beat)", "devices"] {
            assert!(
                html.contains(&format!(
                    r#"<th><abbr title="{}">{name}</abbr></th>"#,
                    escape(COLUMN_HELP.iter().find(|(n, _)| *n == name).unwrap().1)
                )),
                "{name}: {html}"
            );
        }
        assert!(column_key()
            .starts_with(r#"<p class="muted column-key"><strong>p</strong>: Two-proportion"#));
        assert!(column_key().contains("<strong>p seq</strong>: Always-valid"));
        assert!(!html.contains(">users<"), "one word for devices");
    }

    #[test]
    fn the_chart_domain_is_the_run() {
        let mut o = outcome(State::Active, vec![run(1, false)], 1, 120);
        let start =
            crate::util::time::unix_ms(humantime::parse_rfc3339("2026-11-23T11:00:00Z").unwrap());
        assert_eq!(
            chart_domain(&o.results, start + 60_000),
            (start, start + 60_000)
        );
        o.results.run = Some(run(1, true));
        assert_eq!(
            chart_domain(&o.results, start + 7_200_000),
            (start, start + 1_800_000),
            "an ended run ends at its end"
        );
    }
}
