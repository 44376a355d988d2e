//! The admin page's charts, drawn by the server as inline SVG (no scripts, no external
//! resources). Every chart has a title, a legend, labelled axes and round ticks (steps
//! of 1, 2 or 5 × 10ⁿ):
//!
//! - each variant's rate with its interval (now);
//! - the difference of each variant to the control with its interval, over the run;
//! - the devices of each variant, cumulative over the run;
//! - the step charts over a run's periods (shares of new devices, P(best)), in
//!   `period_chart` on this file's time axis.
//!
//! Pure: numbers in, markup out. The series and their rules (gaps, which points set the
//! axis) are in `series`, the ticks in `axis`, the title/legend/labels frame in `frame`.

use std::fmt::Write;

use super::axis::{tick_label, ticks, time_label, time_ticks, SECOND};
use super::frame::{Frame, Legend, Mark};
use super::series::{self, Banded};
use crate::util::html::escape;
use crate::util::time::rfc3339;
/// Left margin of the charts over time: tick labels and the rotated axis label.
pub(super) const LEFT: f64 = 70.0;
/// The rate chart puts variant names on the left.
const LEFT_NAMES: f64 = 96.0;
pub(super) const PLOT_HEIGHT: f64 = 150.0;
/// Colour of the "no difference" line and of texts that are not a variant's.
pub(super) const INK: &str = "#1f2430";

/// One variant's rate and interval (fractions, 0–1).
pub struct RateRow<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub rate: f64,
    pub low: f64,
    pub high: f64,
}

/// A variant's difference to the control over time.
pub struct DifferenceLine<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub points: Vec<Banded>,
}

/// A variant's cumulative devices over time: `(unix ms, devices)`, oldest first.
pub struct DevicesLine<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub points: &'a [(u64, u64)],
}

/// Dots with whiskers on a shared percentage axis, one row per variant.
pub fn rates_with_intervals(goal: &str, rows: &[RateRow], confidence: f64) -> String {
    let row_height = 26.0;
    let conf = confidence_label(confidence);
    let legend = [Legend {
        color: INK,
        label: format!("dot: conversion rate · line: its {conf} interval"),
        mark: Mark::DotAndWhisker,
    }];
    let mut frame = Frame::open(
        &format!("Conversion rate per variant (goal {goal})"),
        &legend,
        LEFT_NAMES,
        row_height * rows.len().max(1) as f64,
        &[],
    );
    let finite = |x: f64| if x.is_finite() { x } else { 0.0 };
    let max = rows
        .iter()
        .map(|r| 100.0 * finite(r.high).max(finite(r.rate)))
        .fold(0.0_f64, f64::max);
    let values = ticks(0.0, max.max(1.0), 5, 0.1);
    let (low, high) = (values[0], *values.last().expect("ticks"));
    let (left, right) = (frame.left, frame.right());
    let x = move |pct: f64| left + (right - left) * ((pct.clamp(low, high) - low) / (high - low));
    let step = values[1] - values[0];
    frame.x_ticks(&values, &x, &|v| tick_label(v, step, "%", false));
    for (i, r) in rows.iter().enumerate() {
        let y = frame.top + row_height * (i as f64 + 0.5);
        let _ = write!(
            frame.svg,
            r#"<text x="{tx}" y="{ty:.1}" text-anchor="end" class="label">{name}</text><line x1="{x1:.1}" y1="{y:.1}" x2="{x2:.1}" y2="{y:.1}" stroke="{color}" stroke-width="2"/><circle cx="{cx:.1}" cy="{y:.1}" r="4.5" fill="{color}"><title>{name}: {rate:.2}% [{lo:.2}%, {hi:.2}%]</title></circle>"#,
            tx = frame.left - 8.0,
            ty = y + 4.0,
            name = escape(r.name),
            color = r.color,
            x1 = x(100.0 * finite(r.low)),
            x2 = x(100.0 * finite(r.high)),
            cx = x(100.0 * finite(r.rate)),
            rate = 100.0 * finite(r.rate),
            lo = 100.0 * finite(r.low),
            hi = 100.0 * finite(r.high),
        );
    }
    frame.x_label("conversion rate (devices that converted ÷ devices)");
    frame.y_label("variant");
    frame.close()
}

/// `95%`, `99.5%`.
fn confidence_label(confidence: f64) -> String {
    let text = format!("{:.1}", 100.0 * confidence);
    format!("{}%", text.trim_end_matches(".0"))
}

/// The x axis of a chart over time, `t0..t1` (unix ms), with round time ticks; the
/// position of a time on it (clamped to the axis). Every chart over a run uses it
/// (`period_chart` too), so their time axes line up.
pub(super) fn time_axis(frame: &mut Frame, t0: u64, t1: u64) -> impl Fn(u64) -> f64 {
    let t1 = t1.max(t0 + 10 * SECOND);
    let (left, right) = (frame.left, frame.right());
    let x = move |t: u64| left + (right - left) * (t.clamp(t0, t1) - t0) as f64 / (t1 - t0) as f64;
    let (values, step) = time_ticks(t0, t1, 6);
    let as_f64: Vec<f64> = values.iter().map(|t| *t as f64).collect();
    frame.x_ticks(&as_f64, &|t| x(t as u64), &|t| time_label(t as u64, step));
    let date = rfc3339(t0)[..10].to_string();
    let same_day = rfc3339(t1)[..10] == date;
    frame.x_label(&if same_day {
        format!("time (UTC, {date})")
    } else {
        "time (UTC, month-day)".to_string()
    });
    x
}

/// Each variant's difference to the control over the run, with its interval as a band.
/// `domain` is the run's span (start to end, or to now while it runs), unix ms.
pub fn difference_over_time(
    id: &str,
    goal: &str,
    control: &str,
    lines: &[DifferenceLine],
    domain: (u64, u64),
    confidence: f64,
) -> String {
    let conf = confidence_label(confidence);
    let mut legend: Vec<Legend> = lines
        .iter()
        .map(|l| Legend {
            color: l.color,
            label: format!("{} − {control}", l.name),
            mark: Mark::Line,
        })
        .collect();
    legend.push(Legend {
        color: INK,
        label: format!("shaded: {conf} interval"),
        mark: Mark::Band,
    });
    legend.push(Legend {
        color: INK,
        label: "dashed: no difference".to_string(),
        mark: Mark::Dashed,
    });
    let notes = [
        format!(
            "Points before each arm has {} devices are drawn but do not set the scale.",
            series::AXIS_MIN_DEVICES
        ),
        "A break in a line: no traffic for a while.".to_string(),
    ];
    let mut frame = Frame::open(
        &format!("Difference to {control} over the run (goal {goal})"),
        &legend,
        LEFT,
        PLOT_HEIGHT,
        &notes,
    );
    frame.y_label("difference (points)");
    let Some((low, high)) = series::difference_range(lines.iter().flat_map(|l| &l.points)) else {
        frame.message("no data yet: each arm needs a device");
        let _ = time_axis(&mut frame, domain.0, domain.1);
        return frame.close();
    };
    let values = ticks(100.0 * low, 100.0 * high, 5, 0.1);
    let (lo, hi) = (values[0], *values.last().expect("ticks"));
    let (top, bottom) = (frame.top, frame.bottom);
    // Not clamped: marks past the axis are cut off by the clip path.
    let y = move |pts: f64| bottom - (bottom - top) * (pts - lo) / (hi - lo);
    let step = values[1] - values[0];
    frame.y_ticks(&values, &y, &|v| tick_label(v, step, "", true));
    let x = time_axis(&mut frame, domain.0, domain.1);
    let clip = format!("clip-{id}");
    frame.clip(&clip);
    let _ = write!(
        frame.svg,
        r#"<line x1="{}" y1="{y0:.1}" x2="{}" y2="{y0:.1}" stroke="{INK}" stroke-width="1.5" stroke-dasharray="4 3"/><g clip-path="url(#{clip})">"#,
        frame.left,
        frame.right(),
        y0 = y(0.0),
    );
    for line in lines {
        let times: Vec<u64> = line.points.iter().map(|p| p.at_ms).collect();
        for range in series::split_at_gaps(&times, series::gap_threshold(&times)) {
            let points = &line.points[range];
            let color = line.color;
            let name = escape(line.name);
            let at = |p: &Banded, v: f64| format!("{:.1},{:.1}", x(p.at_ms), y(100.0 * v));
            if let [p] = points {
                let _ = write!(
                    frame.svg,
                    r#"<line x1="{cx:.1}" y1="{y1:.1}" x2="{cx:.1}" y2="{y2:.1}" stroke="{color}" stroke-opacity="0.4" stroke-width="6"/><circle cx="{cx:.1}" cy="{cy:.1}" r="3" fill="{color}"><title>{name}</title></circle>"#,
                    cx = x(p.at_ms),
                    y1 = y(100.0 * p.low),
                    y2 = y(100.0 * p.high),
                    cy = y(100.0 * p.estimate),
                );
                continue;
            }
            let band: Vec<String> = points
                .iter()
                .map(|p| at(p, p.high))
                .chain(points.iter().rev().map(|p| at(p, p.low)))
                .collect();
            let middle: Vec<String> = points.iter().map(|p| at(p, p.estimate)).collect();
            let _ = write!(
                frame.svg,
                r#"<polygon points="{band}" fill="{color}" fill-opacity="0.18" stroke="none"/><polyline fill="none" stroke="{color}" stroke-width="2" points="{middle}"><title>{name}</title></polyline>"#,
                band = band.join(" "),
                middle = middle.join(" "),
            );
        }
    }
    frame.svg.push_str("</g>");
    frame.close()
}

/// Each variant's devices (new in the run), cumulative, over the run.
pub fn devices_over_time(id: &str, lines: &[DevicesLine], domain: (u64, u64)) -> String {
    let legend = Legend::lines(lines.iter().map(|l| (l.color, l.name)));
    let notes = ["A break in a line: no new devices for a while.".to_string()];
    let mut frame = Frame::open(
        "Devices per variant over the run",
        &legend,
        LEFT,
        PLOT_HEIGHT,
        &notes,
    );
    frame.y_label("devices (cumulative)");
    let max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|(_, v)| *v))
        .max();
    let Some(max) = max else {
        frame.message("no devices yet");
        let _ = time_axis(&mut frame, domain.0, domain.1);
        return frame.close();
    };
    let values = ticks(0.0, (max as f64).max(1.0), 5, 1.0);
    let hi = *values.last().expect("ticks");
    let (top, bottom) = (frame.top, frame.bottom);
    let y = move |v: f64| bottom - (bottom - top) * v / hi;
    frame.y_ticks(&values, &y, &|v| format!("{v:.0}"));
    let x = time_axis(&mut frame, domain.0, domain.1);
    let clip = format!("clip-{id}");
    frame.clip(&clip);
    let _ = write!(frame.svg, r#"<g clip-path="url(#{clip})">"#);
    let mut times: Vec<u64> = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|(t, _)| *t))
        .collect();
    times.sort_unstable();
    times.dedup();
    let threshold = series::gap_threshold(&times);
    for line in lines {
        let own: Vec<u64> = line.points.iter().map(|(t, _)| *t).collect();
        for range in series::split_at_gaps(&own, threshold) {
            let points = &line.points[range];
            let coords: Vec<String> = points
                .iter()
                .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v as f64)))
                .collect();
            let name = escape(line.name);
            let color = line.color;
            if let [(t, v)] = points {
                let _ = write!(
                    frame.svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"><title>{name}: {v}</title></circle>"#,
                    x(*t),
                    y(*v as f64)
                );
            } else {
                let _ = write!(
                    frame.svg,
                    r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"><title>{name}</title></polyline>"#,
                    coords.join(" ")
                );
            }
        }
    }
    frame.svg.push_str("</g>");
    frame.close()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::frame::{RIGHT, WIDTH};

    fn banded(at_ms: u64, estimate: f64, fewest_devices: u64) -> Banded {
        Banded {
            at_ms,
            estimate,
            low: estimate - 0.02,
            high: estimate + 0.02,
            fewest_devices,
        }
    }

    #[test]
    fn every_chart_has_a_title_axis_labels_and_a_legend() {
        let rates = rates_with_intervals(
            "click",
            &[
                RateRow {
                    name: "Moon",
                    color: "#111",
                    rate: 0.10,
                    low: 0.08,
                    high: 0.12,
                },
                RateRow {
                    name: "<b>",
                    color: "#222",
                    rate: 0.20,
                    low: 0.15,
                    high: 0.25,
                },
            ],
            0.95,
        );
        let points = vec![banded(0, 0.01, 40), banded(60_000, 0.02, 80)];
        let difference = difference_over_time(
            "k-click",
            "click",
            "Moon",
            &[DifferenceLine {
                name: "Mars",
                color: "#333",
                points,
            }],
            (0, 60_000),
            0.95,
        );
        let devices = devices_over_time(
            "k",
            &[DevicesLine {
                name: "Mars",
                color: "#333",
                points: &[(0, 5), (60_000, 9)],
            }],
            (0, 60_000),
        );
        for (svg, title) in [
            (&rates, "Conversion rate per variant (goal click)"),
            (&difference, "Difference to Moon over the run (goal click)"),
            (&devices, "Devices per variant over the run"),
        ] {
            assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
            assert!(
                svg.contains(&format!(r#"class="title">{title}</text>"#)),
                "{svg}"
            );
            assert!(
                svg.matches(r#"class="axis""#).count() >= 2,
                "two axis labels: {svg}"
            );
            assert!(svg.contains(r#"class="legend""#), "{svg}");
        }
        assert!(rates.contains("&lt;b&gt;") && !rates.contains("<b>"));
        assert!(rates.contains("Moon: 10.00% [8.00%, 12.00%]"));
        // Axis 0–25 %: Moon's dot at 10 of 25, i.e. 40 % of the plot width.
        let plot = WIDTH - LEFT_NAMES - RIGHT;
        assert!(
            rates.contains(&format!(r#"cx="{:.1}""#, LEFT_NAMES + 0.4 * plot)),
            "{rates}"
        );
        assert!(difference.contains("Mars − Moon") && difference.contains("95% interval"));
        assert!(
            devices.contains(">Mars</text>"),
            "the legend names the variant"
        );
    }

    #[test]
    fn a_gap_in_the_traffic_is_a_gap_in_the_line() {
        let steady = |from: u64| (0..5).map(move |i| from + i * 1_000);
        let points: Vec<(u64, u64)> = steady(0)
            .chain(steady(60_000))
            .enumerate()
            .map(|(i, t)| (t, i as u64 + 1))
            .collect();
        let svg = devices_over_time(
            "k",
            &[DevicesLine {
                name: "Mars",
                color: "#333",
                points: &points,
            }],
            (0, 64_000),
        );
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        let diff: Vec<Banded> = points
            .iter()
            .map(|(t, n)| banded(*t, 0.01, *n * 10))
            .collect();
        let svg = difference_over_time(
            "k-click",
            "click",
            "Moon",
            &[DifferenceLine {
                name: "Mars",
                color: "#333",
                points: diff,
            }],
            (0, 64_000),
            0.95,
        );
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert_eq!(svg.matches("<polygon").count(), 2, "one band per stretch");
    }

    #[test]
    fn no_line_before_the_first_data() {
        let empty = difference_over_time("k-click", "click", "Moon", &[], (0, 60_000), 0.95);
        assert!(empty.contains("no data yet") && !empty.contains("<polyline"));
        let none = devices_over_time(
            "k",
            &[DevicesLine {
                name: "Mars",
                color: "#333",
                points: &[],
            }],
            (0, 60_000),
        );
        assert!(none.contains("no devices yet") && !none.contains("<polyline"));
        // The run started at 0; the first devices came at 30 s: the line starts there.
        let late = devices_over_time(
            "k",
            &[DevicesLine {
                name: "Mars",
                color: "#333",
                points: &[(30_000, 3), (31_000, 4)],
            }],
            (0, 60_000),
        );
        let middle = LEFT + (WIDTH - RIGHT - LEFT) / 2.0;
        assert!(late.contains(&format!(r#"points="{middle:.1},"#)), "{late}");
    }

    #[test]
    fn two_early_devices_do_not_stretch_the_difference_axis() {
        // One device each at first (a ±100-point interval), then hundreds.
        let mut points = vec![Banded {
            at_ms: 0,
            estimate: 1.0,
            low: -0.5,
            high: 1.0,
            fewest_devices: 1,
        }];
        points.extend((1..10).map(|i| banded(i * 1_000, 0.03, 100 * i)));
        let svg = difference_over_time(
            "k-click",
            "click",
            "Moon",
            &[DifferenceLine {
                name: "Mars",
                color: "#333",
                points,
            }],
            (0, 10_000),
            0.95,
        );
        let labels: Vec<&str> = svg
            .split(r#"class="tick">"#)
            .skip(1)
            .map(|s| s.split('<').next().unwrap())
            .filter(|l| !l.contains(':'))
            .collect();
        assert_eq!(labels, ["0", "+1", "+2", "+3", "+4", "+5"], "{svg}");
    }
}
