//! The admin page's charts, drawn by the server as inline SVG (no scripts, no external
//! resources): each variant's rate with its interval, and each variant's cumulative
//! conversion rate over the run. Pure: numbers in, markup out.

use std::fmt::Write;

use crate::util::html::escape;

const WIDTH: f64 = 560.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 20.0;

/// One variant's rate and interval (fractions, 0–1).
pub struct RateRow<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub rate: f64,
    pub low: f64,
    pub high: f64,
}

/// One variant's cumulative rate over time: `(unix ms, rate)`, oldest first.
pub struct Line<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub points: Vec<(u64, f64)>,
}

/// Dots with whiskers on a shared percentage axis, one row per variant.
pub fn rates_with_intervals(rows: &[RateRow], confidence: f64) -> String {
    let row_height = 26.0;
    let top = 8.0;
    let axis = top + row_height * rows.len() as f64;
    let height = axis + 24.0;
    let finite = |x: f64| if x.is_finite() { x } else { 0.0 };
    let max = rows
        .iter()
        .map(|r| finite(r.high).max(finite(r.rate)))
        .fold(0.0_f64, f64::max);
    let scale_max = nice_ceiling(max.max(0.01));
    let x = |v: f64| LEFT + (WIDTH - LEFT - RIGHT) * (finite(v).clamp(0.0, scale_max) / scale_max);
    let mut svg = open_svg(
        height,
        &format!(
            "Conversion rate per variant with its {:.0}% interval",
            confidence * 100.0
        ),
    );
    grid(&mut svg, top, axis, scale_max, &x);
    for (i, r) in rows.iter().enumerate() {
        let y = top + row_height * (i as f64 + 0.5);
        let _ = write!(
            svg,
            r#"<text x="{tx}" y="{ty:.1}" text-anchor="end" class="label">{name}</text><line x1="{x1:.1}" y1="{y:.1}" x2="{x2:.1}" y2="{y:.1}" stroke="{color}" stroke-width="2"/><circle cx="{cx:.1}" cy="{y:.1}" r="4.5" fill="{color}"><title>{name}: {rate:.2}% [{low:.2}%, {high:.2}%]</title></circle>"#,
            tx = LEFT - 8.0,
            ty = y + 4.0,
            name = escape(r.name),
            color = r.color,
            x1 = x(r.low),
            x2 = x(r.high),
            cx = x(r.rate),
            rate = 100.0 * finite(r.rate),
            low = 100.0 * finite(r.low),
            high = 100.0 * finite(r.high),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Cumulative rate lines over time on shared axes.
pub fn rates_over_time(lines: &[Line]) -> String {
    let top = 8.0;
    let axis = 150.0;
    let height = axis + 24.0;
    let all = lines.iter().flat_map(|l| l.points.iter());
    let (t0, t1) = all
        .clone()
        .fold((u64::MAX, 0), |(a, b), (t, _)| (a.min(*t), b.max(*t)));
    let mut svg = open_svg(height, "Cumulative conversion rate over the run");
    if t0 >= t1 {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" class="label">not enough history yet</text></svg>"#,
            LEFT,
            top + 40.0
        );
        return svg;
    }
    let max = all
        .map(|(_, r)| *r)
        .filter(|r| r.is_finite())
        .fold(0.0_f64, f64::max);
    let scale_max = nice_ceiling(max.max(0.01));
    let x = |t: u64| LEFT + (WIDTH - LEFT - RIGHT) * ((t - t0) as f64 / (t1 - t0) as f64);
    let y = |r: f64| axis - (axis - top) * (r.clamp(0.0, scale_max) / scale_max);
    // Horizontal grid lines with the rate on the left.
    for i in 0..=4 {
        let v = scale_max * i as f64 / 4.0;
        let _ = write!(
            svg,
            r#"<line x1="{LEFT}" y1="{y:.1}" x2="{x2}" y2="{y:.1}" class="grid"/><text x="{tx}" y="{ty:.1}" text-anchor="end" class="tick">{label}</text>"#,
            y = y(v),
            x2 = WIDTH - RIGHT,
            tx = LEFT - 6.0,
            ty = y(v) + 4.0,
            label = percent_label(v),
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="{ty}" class="tick">{start}</text><text x="{x1}" y="{ty}" text-anchor="end" class="tick">{end}</text>"#,
        ty = axis + 16.0,
        x1 = WIDTH - RIGHT,
        start = escape(&clock(t0, t1 - t0)),
        end = escape(&clock(t1, t1 - t0)),
    );
    for line in lines {
        let points: Vec<String> = line
            .points
            .iter()
            .filter(|(_, r)| r.is_finite())
            .map(|(t, r)| format!("{:.1},{:.1}", x(*t), y(*r)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"><title>{name}</title></polyline>"#,
            color = line.color,
            name = escape(line.name),
            points = points.join(" "),
        );
    }
    svg.push_str("</svg>");
    svg
}

fn open_svg(height: f64, title: &str) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" aria-label="{title}"><title>{title}</title>"#,
        title = escape(title)
    )
}

/// Vertical grid lines with percentage ticks under the axis.
fn grid(svg: &mut String, top: f64, axis: f64, scale_max: f64, x: &dyn Fn(f64) -> f64) {
    for i in 0..=4 {
        let v = scale_max * i as f64 / 4.0;
        let _ = write!(
            svg,
            r#"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{axis}" class="grid"/><text x="{x:.1}" y="{ty}" text-anchor="middle" class="tick">{label}</text>"#,
            x = x(v),
            ty = axis + 16.0,
            label = percent_label(v),
        );
    }
}

/// The smallest of 1, 2, 2.5, 5 × 10ⁿ at or above `x`, for a readable axis.
fn nice_ceiling(x: f64) -> f64 {
    let exponent = x.log10().floor() as i32;
    // Dividing by 10ⁿ rounds 0.15 to 0.15; multiplying by 0.1 would not.
    let scaled = |m: f64| {
        if exponent >= 0 {
            m * 10f64.powi(exponent)
        } else {
            m / 10f64.powi(-exponent)
        }
    };
    [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .into_iter()
        .map(scaled)
        .find(|v| *v >= x * (1.0 - 1e-12))
        .unwrap_or(scaled(10.0))
}

/// `25%`, `7.5%`, `18.75%`: as many decimals as the tick needs, up to two.
fn percent_label(v: f64) -> String {
    let text = format!("{:.2}", 100.0 * v);
    format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
}

/// An axis end (UTC): `2026-11-23 13:05`, or `13:05:42` for a span under a day.
fn clock(ms: u64, span_ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    let text = humantime::format_rfc3339_seconds(t).to_string(); // 2026-11-23T13:05:42Z
    if span_ms < 86_400_000 {
        text.get(11..19).unwrap_or(&text).to_string()
    } else {
        text.get(..16).unwrap_or(&text).replace('T', " ")
    }
}

/// Cumulative rate points from a goal's conversions and its variant's assignments, both
/// step series of `(unix ms, total)`: at every time either changes, conversions ÷
/// assigned as of then (skipping times with no one assigned).
pub fn cumulative_rate(assigned: &[(u64, u64)], conversions: &[(u64, u64)]) -> Vec<(u64, f64)> {
    let value_at = |series: &[(u64, u64)], t: u64| {
        series
            .iter()
            .take_while(|(at, _)| *at <= t)
            .last()
            .map_or(0, |(_, v)| *v)
    };
    let mut times: Vec<u64> = assigned
        .iter()
        .chain(conversions)
        .map(|(t, _)| *t)
        .collect();
    times.sort_unstable();
    times.dedup();
    times
        .into_iter()
        .filter_map(|t| {
            let users = value_at(assigned, t);
            (users > 0).then(|| (t, value_at(conversions, t) as f64 / users as f64))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice_ceiling(0.13), 0.15);
        assert_eq!(nice_ceiling(0.255), 0.3);
        assert_eq!(nice_ceiling(0.2), 0.2);
        assert_eq!(nice_ceiling(0.21), 0.25);
        assert_eq!(nice_ceiling(0.03), 0.03);
        assert_eq!(nice_ceiling(0.031), 0.04);
        assert_eq!(nice_ceiling(0.9), 1.0);
    }

    #[test]
    fn cumulative_rates_step_with_both_series() {
        let assigned = [(10, 2), (20, 4)];
        let conversions = [(15, 1), (20, 2), (30, 3)];
        assert_eq!(
            cumulative_rate(&assigned, &conversions),
            vec![(10, 0.0), (15, 0.5), (20, 0.5), (30, 0.75)]
        );
        assert!(cumulative_rate(&[], &conversions).is_empty());
    }

    #[test]
    fn charts_place_marks_by_value_and_escape_names() {
        let svg = rates_with_intervals(
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
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("95% interval"));
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
        // Axis 0–25 %: Moon's dot at 10 % of 25 %, i.e. 40 % of the plot width.
        let plot = WIDTH - LEFT - RIGHT;
        assert!(
            svg.contains(&format!(r#"cx="{:.1}""#, LEFT + 0.4 * plot)),
            "{svg}"
        );
        assert!(svg.contains("Moon: 10.00% [8.00%, 12.00%]"));

        let lines = rates_over_time(&[Line {
            name: "Mars",
            color: "#333",
            points: vec![(1_000, 0.0), (2_000, 0.5)],
        }]);
        assert!(
            lines.contains(&format!(
                r#"points="{LEFT:.1},150.0 {:.1},8.0""#,
                WIDTH - RIGHT
            )),
            "{lines}"
        );
        let empty = rates_over_time(&[Line {
            name: "Mars",
            color: "#333",
            points: vec![],
        }]);
        assert!(empty.contains("not enough history yet"));
    }
}
