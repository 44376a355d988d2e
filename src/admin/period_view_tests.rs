//! The results section of a bandit experiment, rendered from hand-built results: the
//! shares chart, P(best) (Thompson's numbers), the bandit's status and its warning, the
//! stratified note; and what a run without periods or bandit keeps showing.

use std::collections::BTreeMap;
use std::time::Duration;

use super::bandit_view;
use super::frame::{RIGHT, WIDTH};
use super::results::ExperimentResults;
use super::results_view::{results_section, Outcome, View};
use crate::config::{Bandit, BanditAlgorithm, BanditCounts, State};
use crate::counting::book::RunCounts;
use crate::state::bandit::BanditStatus;
use crate::state::runs::{Period, Run};
use crate::stats::analysis::{
    indexmap_like::OrderedMap, ArmInputs, Counts, GoalCounts, PeriodCounts, Settings, VariantCounts,
};
use crate::stats::bandit::{thompson, ArmCounts};

const PALETTE: &[&str] = &["#4c6ef5", "#f76707", "#12b886"];
const HOUR: u64 = 3_600_000;
/// 2026-12-01T10:00:00Z, the run's start.
const T0: u64 = 1_796_119_200_000;
/// The left edge of the charts over time (`chart::LEFT`).
const LEFT: f64 = 70.0;

fn at(ms: u64) -> String {
    crate::util::time::rfc3339(ms)
}

/// `(users, click conversions, signup conversions)` of A, B, C in one period.
type PeriodDevices = [(u64, u64, u64); 3];

fn variant_counts((users, click, signup): (u64, u64, u64)) -> VariantCounts {
    let goal = |conversions| GoalCounts {
        conversions,
        value_sum: None,
        value_sum_sq: None,
    };
    VariantCounts {
        users,
        goals: [
            ("click".to_string(), goal(click)),
            ("signup".to_string(), goal(signup)),
        ]
        .into(),
    }
}

const NAMES: [&str; 3] = ["A", "B", "C"];

/// A run of three periods an hour each, ended at T0 + 3 h: burn-in at a third each,
/// then two bandit updates moving new devices to C.
fn periods() -> Vec<(PeriodDevices, [f64; 3])> {
    vec![
        (
            [(100, 10, 5), (100, 12, 4), (100, 20, 6)],
            [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0],
        ),
        ([(60, 5, 3), (80, 9, 2), (160, 33, 8)], [0.2, 0.25, 0.55]),
        ([(20, 2, 1), (30, 3, 1), (250, 50, 11)], [0.05, 0.1, 0.85]),
    ]
}

fn results(number_of_periods: usize, bandit: Option<BanditStatus>) -> ExperimentResults {
    let plan = &periods()[..number_of_periods];
    let mut totals = [(0, 0, 0); 3];
    for (devices, _) in plan {
        for (total, d) in totals.iter_mut().zip(devices) {
            *total = (total.0 + d.0, total.1 + d.1, total.2 + d.2);
        }
    }
    let mut variants = OrderedMap::default();
    for (name, total) in NAMES.iter().zip(totals) {
        variants.insert(name.to_string(), variant_counts(total));
    }
    // Each update read the run's devices so far and their signups (the bandit's goal).
    let mut so_far = [(0, 0); 3];
    let mut counted = Vec::new();
    let mut booked = Vec::new();
    for (p, (devices, shares)) in plan.iter().enumerate() {
        let number = p as u32 + 1;
        let inputs = (p > 0).then(|| {
            NAMES
                .iter()
                .zip(so_far)
                .map(|(n, (users, conversions))| (n.to_string(), ArmInputs { users, conversions }))
                .collect::<BTreeMap<_, _>>()
        });
        for (s, d) in so_far.iter_mut().zip(devices) {
            *s = (s.0 + d.0, s.1 + d.2);
        }
        let start = at(T0 + p as u64 * HOUR);
        counted.push(PeriodCounts {
            number,
            started_at: Some(start.clone()),
            shares: NAMES.iter().map(|n| n.to_string()).zip(*shares).collect(),
            inputs: inputs.clone(),
            counts: NAMES
                .iter()
                .map(|n| n.to_string())
                .zip(devices.iter().map(|d| variant_counts(*d)))
                .collect(),
        });
        booked.push(Period {
            number,
            started_at: start,
            weights: NAMES
                .iter()
                .zip(shares)
                .map(|(n, s)| (n.to_string(), (s * 1e9).round() as u32))
                .collect(),
            inputs,
        });
    }
    let run = Run {
        number: 1,
        started_at: at(T0),
        ended_at: Some(at(T0 + 3 * HOUR)),
        periods: booked,
    };
    ExperimentResults {
        run: Some(run.clone()),
        runs: vec![run],
        current_run: Some(1),
        counts: Counts {
            experiment: "headline".into(),
            control: Some("A".into()),
            variants,
            weights: None,
            periods: if number_of_periods > 1 {
                counted
            } else {
                Vec::new()
            },
        },
        history: RunCounts::default(),
        bandit: bandit.map(|status| (bandit_config(), status)),
        decisions: None,
    }
}

/// The bandit rewards `signup`, not the first goal (`click`), so the goal P(best) is
/// shown for is visibly the bandit's.
fn bandit_config() -> Bandit {
    Bandit {
        algorithm: BanditAlgorithm::Thompson,
        goal: "signup".into(),
        update_every: Duration::from_secs(3600),
        burn_in: 100,
        min_share: 0.01,
        counts: BanditCounts::Prometheus,
        pos: Default::default(),
    }
}

fn status(problem: Option<&str>) -> BanditStatus {
    BanditStatus {
        last_at: Some("2026-12-01T12:00:00Z".into()),
        last_outcome: Some("period 3 started".into()),
        problem: problem.map(str::to_string),
        next_at: Some("2026-12-01T13:00:00Z".into()),
    }
}

fn render(results: ExperimentResults, state: State) -> String {
    let report = crate::stats::analysis::analyze(&results.counts, Settings::default())
        .map_err(|e| e.to_string());
    let outcome = Outcome {
        title: "Headline".into(),
        state,
        results,
        report,
        confidence: 0.95,
        problem: None,
    };
    let selected = BTreeMap::new();
    results_section(
        &outcome,
        &View {
            can_write: true,
            // 12:30 on the run's day.
            now_ms: T0 + 2 * HOUR + HOUR / 2,
            selected: &selected,
            palette: PALETTE,
        },
    )
}

/// The chart titled `title`, whole.
fn chart<'a>(html: &'a str, title: &str) -> Option<&'a str> {
    let end = html.find(&format!(r#"class="title">{title}</text>"#))?;
    let start = html[..end].rfind("<svg")?;
    let len = html[start..].find("</svg>")? + "</svg>".len();
    Some(&html[start..start + len])
}

fn paths(svg: &str) -> Vec<(&str, &str)> {
    svg.split(r#"<path class="steps" d=""#)
        .skip(1)
        .map(|s| {
            let d = s.split('"').next().unwrap();
            let color = s
                .split(r#"stroke=""#)
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            (d, color)
        })
        .collect()
}

/// The P(best) cells of the table of `goal`, in row order.
fn p_best_cells(html: &str, goal: &str) -> Vec<String> {
    let table = html
        .split(&format!(r#"<table class="report" data-goal="{goal}">"#))
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    table
        .split(r#"<td class="p-best">"#)
        .skip(1)
        .map(|s| s.split('<').next().unwrap().to_string())
        .collect()
}

#[test]
fn the_shares_chart_draws_one_step_line_per_variant() {
    let html = render(results(3, Some(status(None))), State::Active);
    let svg = chart(&html, "Shares of new devices").expect("a shares chart");
    let lines = paths(svg);
    assert_eq!(
        lines.iter().map(|(_, c)| *c).collect::<Vec<_>>(),
        PALETTE,
        "one path per variant, in the page's colours"
    );
    // The run is 3 h long: the steps at 0, 1 and 2 h are at 0, ⅓ and ⅔ of the plot.
    let plot = WIDTH - RIGHT - LEFT;
    let x = |hours: f64| format!("{:.1}", LEFT + plot * hours / 3.0);
    for (d, _) in &lines {
        let corners: Vec<&str> = d
            .split(' ')
            .filter(|c| c.starts_with('H') || c.starts_with('M'))
            .map(|c| c.trim_start_matches(['H', 'M']).split(',').next().unwrap())
            .collect();
        assert_eq!(corners, [x(0.0), x(1.0), x(2.0), x(3.0)], "{d}");
    }
    // C's line climbs: 33.3 % → 55 % → 85 % (y grows downwards).
    let ys: Vec<f64> = lines[2]
        .0
        .split(' ')
        .filter_map(|c| match c.as_bytes()[0] {
            b'M' => c.split(',').nth(1),
            b'V' => Some(&c[1..]),
            _ => None,
        })
        .map(|y| y.parse().unwrap())
        .collect();
    assert!(ys.len() == 3 && ys[0] > ys[1] && ys[1] > ys[2], "{ys:?}");
    assert!(svg.contains(
        "<title>period 2 from 2026-12-01T11:00:00Z · shares A 20.0% · B 25.0% · C 55.0%</title>"
    ));
    assert_eq!(
        bandit_view::share_steps(&results(3, None), &NAMES)
            .iter()
            .map(|s| (s.number, s.start_ms - T0, s.values[1]))
            .collect::<Vec<_>>(),
        [(1, 0, 1.0 / 3.0), (2, HOUR, 0.25), (3, 2 * HOUR, 0.1)]
    );
}

#[test]
fn the_run_books_periods_stand_in_for_missing_period_counts() {
    let mut r = results(3, None);
    r.counts.periods.clear();
    let steps = bandit_view::share_steps(&r, &NAMES);
    assert_eq!(steps.len(), 3);
    assert!((steps[2].values[2] - 0.85).abs() < 1e-8, "{steps:?}");
    assert_eq!(
        bandit_view::p_best_steps(&r, &NAMES),
        bandit_view::p_best_steps(&results(3, None), &NAMES),
        "the same updates, from the run book's inputs"
    );
    assert_eq!(bandit_view::p_best_steps(&r, &NAMES).len(), 2);
    assert!(render(r, State::Active).contains(r#"class="title">Shares of new devices</text>"#));
}

#[test]
fn p_best_is_thompsons_on_the_bandits_goal() {
    let r = results(3, Some(status(None)));
    // The run's signup totals: A 180 devices / 9, B 210 / 7, C 510 / 25.
    let expected = thompson(&[
        ArmCounts {
            conversions: 9,
            users: 180,
        },
        ArmCounts {
            conversions: 7,
            users: 210,
        },
        ArmCounts {
            conversions: 25,
            users: 510,
        },
    ]);
    let shown: Vec<String> = expected
        .iter()
        .map(|p| format!("{:.1}%", 100.0 * p))
        .collect();
    let html = render(r, State::Active);
    assert_eq!(p_best_cells(&html, "signup"), shown, "{html}");
    assert!(
        p_best_cells(&html, "click").is_empty(),
        "only the bandit's goal"
    );
    assert!(
        html.contains(r#"<abbr title="Bayesian probability that the variant has the highest rate"#)
    );
    // Without a bandit, the first goal.
    let html = render(results(3, None), State::Active);
    assert_eq!(p_best_cells(&html, "click").len(), 3);
    assert!(p_best_cells(&html, "signup").is_empty());
}

#[test]
fn p_best_over_time_is_thompsons_on_each_updates_inputs() {
    let html = render(results(3, Some(status(None))), State::Active);
    let svg = chart(&html, "P(best) at each bandit update (goal signup)").expect("the chart");
    assert_eq!(paths(svg).len(), 3);
    // Period 3's update read periods 1 and 2: A 160 / 8, B 180 / 6, C 260 / 14 signups.
    let p = thompson(&[
        ArmCounts {
            conversions: 8,
            users: 160,
        },
        ArmCounts {
            conversions: 6,
            users: 180,
        },
        ArmCounts {
            conversions: 14,
            users: 260,
        },
    ]);
    let title = format!(
        "<title>period 3 from 2026-12-01T12:00:00Z · P(best) A {:.1}% · B {:.1}% · C {:.1}%</title>",
        100.0 * p[0],
        100.0 * p[1],
        100.0 * p[2]
    );
    assert!(svg.contains(&title), "{title}\n{svg}");
    assert_eq!(
        svg.matches(r#"<rect class="step""#).count(),
        2,
        "period 1 was the burn-in: no update"
    );
}

#[test]
fn the_status_line_says_what_the_bandit_did_and_does_next() {
    let html = render(results(3, Some(status(None))), State::Active);
    assert!(
        html.contains(r#"<p class="bandit">Thompson sampling on <code>signup</code>, updated every 1h; last update <time datetime="2026-12-01T12:00:00Z">12:00:00 UTC</time>: period 3 started; next <time datetime="2026-12-01T13:00:00Z">13:00:00 UTC</time></p>"#),
        "{html}"
    );
    assert!(html.contains("every variant keeps at least 1% of new devices"));
    assert!(html.contains("reads every replica's counts, from Prometheus"));
    assert!(!html.contains("bandit-problem"), "no problem, no warning");
    let mut earlier = results(3, Some(status(None)));
    earlier.current_run = Some(2);
    let html = render(earlier, State::Active);
    assert!(html.contains("13:00:00 UTC</time> (in run 2, the current one)</p>"));
    let stopped = render(results(3, Some(status(None))), State::Inactive);
    assert!(stopped.contains("; not updating while the experiment is inactive</p>"));
    let plain = render(results(3, None), State::Active);
    assert!(!plain.contains(r#"class="bandit""#));
}

#[test]
fn a_problem_reading_the_counts_shows_a_warning() {
    let problem =
        "Prometheus unreachable at 2026-12-01T12:00:05Z (connection refused): shares kept";
    let html = render(results(3, Some(status(Some(problem)))), State::Active);
    assert!(
        html.contains(&format!(
            r#"<p class="notice bandit-problem" role="alert"><strong>The bandit could not update:</strong> {problem}</p>"#
        )),
        "{html}"
    );
}

#[test]
fn a_stratified_analysis_says_so_under_each_table() {
    let note = "Stratified over 3 periods (the shares moved during the run; pooled rates would be biased).";
    let html = render(results(3, None), State::Active);
    assert_eq!(html.matches(note).count(), 2, "one per goal's table");
    assert!(html.contains(&format!("</table><p class=\"muted stratified\">{note}</p>")));
    let single = render(results(1, None), State::Active);
    assert!(!single.contains("Stratified over"));
}

#[test]
fn one_period_without_a_bandit_draws_no_shares() {
    let html = render(results(1, None), State::Active);
    assert!(!html.contains("Shares of new devices") && !html.contains("P(best) at each"));
    // A bandit still in its burn-in: its one period is drawn, and no update yet.
    let html = render(results(1, Some(BanditStatus::default())), State::Active);
    assert!(html.contains(r#"class="title">Shares of new devices</text>"#));
    assert!(!html.contains("P(best) at each"));
    assert!(
        html.contains("updated every 1h; no update yet</p>"),
        "{html}"
    );
}
