//! The charts' axes: round value ticks (steps of 1, 2 or 5 × 10ⁿ) with labels that have
//! the decimals their step needs, and round time ticks (UTC). Pure.

use crate::util::time::rfc3339;

/// Round ticks covering `low..=high`: about `target` steps of 1, 2 or 5 × 10ⁿ (never
/// below `min_step`), from the step at or below `low` to the one at or above `high`.
pub fn ticks(low: f64, high: f64, target: usize, min_step: f64) -> Vec<f64> {
    let (low, high) = if high > low {
        (low, high)
    } else {
        (low, low + min_step.max(1e-9))
    };
    let raw = ((high - low) / target.max(1) as f64).max(min_step);
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude);
    let first = (low / step + 1e-9).floor() as i64;
    let last = (high / step - 1e-9).ceil() as i64;
    // i × step, not repeated additions: no 0.30000000000000004.
    (first..=last)
        .map(|i| round_to(i as f64 * step, step))
        .collect()
}

fn round_to(x: f64, step: f64) -> f64 {
    let decimals = decimals_for(step) as i32 + 2;
    let scale = 10f64.powi(decimals);
    let rounded = (x * scale).round() / scale;
    if rounded == 0.0 {
        0.0 // never "-0"
    } else {
        rounded
    }
}

/// Decimals a tick label needs for a step: 0 for 1, 2, 5, 10…; 1 for 0.5; 2 for 0.05.
fn decimals_for(step: f64) -> usize {
    if step >= 1.0 {
        0
    } else {
        (-step.log10() - 1e-9).ceil() as usize
    }
}

/// Tick labels of one axis, with the decimals its step needs and a unit (`%`, `+`…).
pub fn tick_label(v: f64, step: f64, unit: &str, signed: bool) -> String {
    if v == 0.0 {
        return format!("0{unit}");
    }
    let text = format!("{:.*}", decimals_for(step), v);
    let sign = if signed && v > 0.0 { "+" } else { "" };
    format!("{sign}{text}{unit}")
}

pub const SECOND: u64 = 1_000;
pub const MINUTE: u64 = 60 * SECOND;
pub const HOUR: u64 = 60 * MINUTE;
pub const DAY: u64 = 24 * HOUR;

/// Round times (UTC) within `t0..=t1`, at most `max` of them: multiples of 1, 2, 5, 10,
/// 15, 30 s, 1, 2, 5, 10, 15, 30 min, 1, 2, 3, 6, 12 h or 1, 2, 7, 14, 30 days; and
/// the step.
pub fn time_ticks(t0: u64, t1: u64, max: usize) -> (Vec<u64>, u64) {
    const STEPS: &[u64] = &[
        SECOND,
        2 * SECOND,
        5 * SECOND,
        10 * SECOND,
        15 * SECOND,
        30 * SECOND,
        MINUTE,
        2 * MINUTE,
        5 * MINUTE,
        10 * MINUTE,
        15 * MINUTE,
        30 * MINUTE,
        HOUR,
        2 * HOUR,
        3 * HOUR,
        6 * HOUR,
        12 * HOUR,
        DAY,
        2 * DAY,
        7 * DAY,
        14 * DAY,
        30 * DAY,
    ];
    let span = t1.saturating_sub(t0);
    let step = STEPS
        .iter()
        .copied()
        .find(|s| span / s < max as u64)
        // Beyond the list: whole days, still at most `max` ticks.
        .unwrap_or_else(|| span.div_ceil(max as u64 * DAY).max(1) * DAY);
    let first = t0.div_ceil(step) * step;
    ((first..=t1).step_by(step as usize).collect(), step)
}

/// A time tick's label: seconds only when the step needs them; the day when it does.
pub fn time_label(ms: u64, step: u64) -> String {
    let text = rfc3339(ms); // 2026-11-23T13:05:42Z
    if step < MINUTE {
        text[11..19].to_string()
    } else if step < DAY {
        text[11..16].to_string()
    } else {
        text[5..10].to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_step_by_one_two_or_five() {
        assert_eq!(ticks(0.0, 18.75, 5, 0.1), [0.0, 5.0, 10.0, 15.0, 20.0]);
        assert_eq!(ticks(0.0, 25.0, 5, 0.1), [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]);
        assert_eq!(ticks(0.0, 0.3, 5, 0.01), [0.0, 0.1, 0.2, 0.3]);
        assert_eq!(ticks(-3.2, 5.1, 5, 0.1), [-4.0, -2.0, 0.0, 2.0, 4.0, 6.0]);
        assert_eq!(ticks(0.0, 1.0, 5, 0.1), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        // Devices: whole numbers only, even for a tiny range.
        assert_eq!(ticks(0.0, 3.0, 5, 1.0), [0.0, 1.0, 2.0, 3.0]);
        assert_eq!(ticks(0.0, 1234.0, 5, 1.0), [0.0, 500.0, 1000.0, 1500.0]);
        // A flat range still gets an axis.
        assert_eq!(ticks(2.0, 2.0, 5, 1.0), [2.0, 3.0]);
        for (low, high) in [(0.0, 6.25), (0.0, 18.75), (-0.7, 0.33), (0.0, 77.0)] {
            let t = ticks(low, high, 5, 0.01);
            let step = t[1] - t[0];
            let mantissa = step / 10f64.powf(step.log10().floor());
            assert!(
                [1.0, 2.0, 5.0].iter().any(|m| (m - mantissa).abs() < 1e-6),
                "{low}..{high}: step {step}"
            );
            assert!(
                t[0] <= low && *t.last().unwrap() >= high,
                "{t:?} covers {low}..{high}"
            );
        }
    }

    #[test]
    fn tick_labels_have_the_decimals_of_their_step() {
        assert_eq!(tick_label(15.0, 5.0, "%", false), "15%");
        assert_eq!(tick_label(0.5, 0.5, "%", false), "0.5%");
        assert_eq!(tick_label(0.15, 0.05, "", true), "+0.15");
        assert_eq!(tick_label(-2.0, 2.0, "", true), "-2");
        assert_eq!(tick_label(0.0, 2.0, "", true), "0");
        assert_eq!(tick_label(0.0, 0.1, "%", false), "0%");
    }

    #[test]
    fn time_ticks_fall_on_round_times() {
        // 13:05:42 to 13:09:10 UTC on 2026-11-23.
        let t0 = 1_795_439_142_000;
        let t1 = t0 + 208_000;
        let (ticks, step) = time_ticks(t0, t1, 6);
        assert_eq!(step, MINUTE);
        assert_eq!(
            ticks
                .iter()
                .map(|t| time_label(*t, step))
                .collect::<Vec<_>>(),
            ["13:06", "13:07", "13:08", "13:09"]
        );
        let (short, step) = time_ticks(t0, t0 + 12_000, 6);
        assert_eq!(step, 5 * SECOND);
        assert_eq!(
            short
                .iter()
                .map(|t| time_label(*t, step))
                .collect::<Vec<_>>(),
            ["13:05:45", "13:05:50"]
        );
        let (_, step) = time_ticks(t0, t0 + 3 * DAY, 6);
        assert_eq!(step, DAY);
    }
}
