//! The admin page's step charts over a run's periods: the shares of new devices per
//! variant, and each variant's P(best) at each bandit update. A period's value holds
//! from its start to the next period's (the last one's to the chart's end), so each line
//! is drawn as steps: a slope between two periods would invent a gradual change that
//! never happened. Same frame, ticks and time axis as the other charts over a run
//! (`chart`). Pure: numbers in, markup out.

use std::fmt::Write;

use super::axis::{tick_label, ticks};
use super::chart::{time_axis, LEFT, PLOT_HEIGHT};
use super::frame::{Frame, Legend};
use crate::util::html::escape;
use crate::util::time::rfc3339;

/// A variant's line.
pub struct StepLine<'a> {
    pub name: &'a str,
    pub color: &'a str,
}

/// From `start_ms` (unix ms) until the next step: `values[i]` (a fraction, 0–1) for
/// line `i`. `number` is the period's.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub number: u32,
    pub start_ms: u64,
    pub values: Vec<f64>,
}

pub struct StepChart<'a> {
    pub title: &'a str,
    pub y_label: &'a str,
    /// What a step's hover text calls its values ("shares", "P(best)").
    pub values_are: &'a str,
    pub lines: &'a [StepLine<'a>],
    /// Oldest first.
    pub steps: &'a [Step],
    /// The run's span, unix ms (start to end, or to now while it runs).
    pub domain: (u64, u64),
    pub notes: &'a [String],
    /// What the plot says without steps.
    pub empty: &'a str,
}

/// The plot's y of a percentage (0–100) between `top` and `bottom`.
fn percent_axis(top: f64, bottom: f64) -> impl Fn(f64) -> f64 {
    move |pct: f64| bottom - (bottom - top) * pct.clamp(0.0, 100.0) / 100.0
}

/// One path per line (`M` to the first step, then `H` to each next start and `V` to its
/// value), and under them one invisible rectangle per step whose hover text gives the
/// period's number, start and every line's value.
pub fn step_chart(chart: &StepChart) -> String {
    let legend = Legend::lines(chart.lines.iter().map(|l| (l.color, l.name)));
    let mut frame = Frame::open(chart.title, &legend, LEFT, PLOT_HEIGHT, chart.notes);
    frame.y_label(chart.y_label);
    let values = ticks(0.0, 100.0, 5, 1.0);
    let y = percent_axis(frame.top, frame.bottom);
    let step = values[1] - values[0];
    frame.y_ticks(&values, &y, &|v| tick_label(v, step, "%", false));
    let (t0, t1) = chart.domain;
    let x = time_axis(&mut frame, t0, t1);
    if chart.steps.is_empty() {
        frame.message(chart.empty);
        return frame.close();
    }
    // Where each step ends: the next one's start, the last one at the chart's end (or
    // its own start, should a step lie past the end).
    let ends: Vec<u64> = chart
        .steps
        .iter()
        .skip(1)
        .map(|s| s.start_ms)
        .chain(std::iter::once(
            t1.max(chart.steps.last().expect("a step").start_ms),
        ))
        .collect();
    let (top, bottom) = (frame.top, frame.bottom);
    for (s, end) in chart.steps.iter().zip(&ends) {
        let values: Vec<String> = chart
            .lines
            .iter()
            .zip(&s.values)
            .map(|(l, v)| format!("{} {:.1}%", l.name, 100.0 * v))
            .collect();
        let _ = write!(
            frame.svg,
            r##"<rect class="step" x="{x0:.1}" y="{top}" width="{w:.1}" height="{h}" fill="#000" fill-opacity="0"><title>period {n} from {start} · {are} {values}</title></rect>"##,
            x0 = x(s.start_ms),
            w = x(*end) - x(s.start_ms),
            h = bottom - top,
            n = s.number,
            start = rfc3339(s.start_ms),
            are = escape(chart.values_are),
            values = escape(&values.join(" · ")),
        );
    }
    // Equal values are common (a burn-in at equal shares): earlier lines are drawn wider
    // underneath the later ones, so every colour still shows where they coincide.
    let width = |i: usize| (2.0 + 1.5 * (chart.lines.len() - 1 - i) as f64).min(7.0);
    for (i, line) in chart.lines.iter().enumerate() {
        let at = |s: &Step| y(100.0 * s.values.get(i).copied().unwrap_or(0.0));
        let first = &chart.steps[0];
        let mut d = format!("M{:.1},{:.1}", x(first.start_ms), at(first));
        for (s, end) in chart.steps.iter().zip(&ends) {
            if s != first {
                let _ = write!(d, " V{:.1}", at(s));
            }
            let _ = write!(d, " H{:.1}", x(*end));
        }
        let _ = write!(
            frame.svg,
            r#"<path class="steps" d="{d}" fill="none" stroke="{color}" stroke-width="{w}"><title>{name}</title></path>"#,
            color = line.color,
            w = width(i),
            name = escape(line.name),
        );
    }
    frame.close()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::frame::{RIGHT, WIDTH};

    const HOUR: u64 = 3_600_000;
    /// 2026-12-01T10:00:00Z.
    const T0: u64 = 1_796_119_200_000;

    fn three_periods() -> Vec<Step> {
        [(0.5, 0.5), (0.25, 0.75), (0.1, 0.9)]
            .iter()
            .enumerate()
            .map(|(i, (a, b))| Step {
                number: i as u32 + 1,
                start_ms: T0 + i as u64 * HOUR,
                values: vec![*a, *b],
            })
            .collect()
    }

    fn draw(steps: &[Step], domain: (u64, u64)) -> String {
        step_chart(&StepChart {
            title: "Shares of new devices",
            y_label: "share of new devices",
            values_are: "shares",
            lines: &[
                StepLine {
                    name: "A",
                    color: "#111",
                },
                StepLine {
                    name: "<B>",
                    color: "#222",
                },
            ],
            steps,
            domain,
            notes: &[],
            empty: "no periods yet",
        })
    }

    /// The `d` of each path, in order.
    fn paths(svg: &str) -> Vec<&str> {
        svg.split(r#"<path class="steps" d=""#)
            .skip(1)
            .map(|s| s.split('"').next().unwrap())
            .collect()
    }

    #[test]
    fn each_period_is_a_step_at_its_start() {
        // Three periods of an hour each, the run shown to the end of the third.
        let svg = draw(&three_periods(), (T0, T0 + 3 * HOUR));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        let plot = WIDTH - RIGHT - LEFT;
        let x = |hours: f64| format!("{:.1}", LEFT + plot * hours / 3.0);
        // Where 0 % and 100 % are, from the tick labels' grid lines.
        let grid_y = |label: &str| -> f64 {
            let before = svg
                .split(&format!(r#"class="tick">{label}</text>"#))
                .next()
                .unwrap();
            let line = before.rsplit("<line").next().unwrap();
            line.split(r#"y1=""#)
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        let (zero, hundred) = (grid_y("0%"), grid_y("100%"));
        let y = |share: f64| format!("{:.1}", zero - (zero - hundred) * share);
        let expected = |[a, b, c]: [f64; 3]| {
            format!(
                "M{},{} H{} V{} H{} V{} H{}",
                x(0.0),
                y(a),
                x(1.0),
                y(b),
                x(2.0),
                y(c),
                x(3.0)
            )
        };
        assert_eq!(
            paths(&svg),
            [expected([0.5, 0.25, 0.1]), expected([0.5, 0.75, 0.9])],
            "{svg}"
        );
        // Hover text per step: the period's number, start and shares.
        assert!(svg.contains(
            "<title>period 2 from 2026-12-01T11:00:00Z · shares A 25.0% · &lt;B&gt; 75.0%</title>"
        ));
        assert_eq!(svg.matches(r#"<rect class="step""#).count(), 3);
        assert!(svg.contains(&format!(r#"<rect class="step" x="{}" y="#, x(2.0))));
        assert!(svg.contains("<title>&lt;B&gt;</title>") && !svg.contains("<B>"));
    }

    #[test]
    fn the_last_period_lasts_until_now() {
        // A running run, now two hours into its third period.
        let svg = draw(&three_periods(), (T0, T0 + 4 * HOUR));
        let plot = WIDTH - RIGHT - LEFT;
        for d in paths(&svg) {
            assert!(
                d.ends_with(&format!(" H{:.1}", LEFT + plot)),
                "to the end of the axis: {d}"
            );
        }
        let empty = draw(&[], (T0, T0 + HOUR));
        assert!(empty.contains("no periods yet") && !empty.contains("<path"));
    }
}
