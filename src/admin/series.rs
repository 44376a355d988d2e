//! The admin page's series over time, from a run's step series (`(unix ms, total)`, as
//! `counts::CountBook::run` gives them): the difference to the control with its interval
//! at each time the counts changed, and the two rules the charts draw them by — where a
//! line breaks (gaps) and which points set the axis. Pure: numbers in, numbers out.

use std::ops::Range;

use crate::stats::{self, Proportion};

/// A break in a line: consecutive points further apart than this many times the usual
/// spacing (the median), and at least [`MIN_GAP_MS`]. The counts are flushed every
/// second while anything changes, and the history keeps one point per time bucket (the
/// buckets widen as a run grows), so the median spacing is the bucket width while there
/// is traffic; a much longer silence is a stretch without traffic, drawn as a gap rather
/// than a straight line that would invent a steady change.
pub const GAP_FACTOR: u64 = 4;
/// The shortest gap: five flushes, so a flusher delayed on a busy machine breaks nothing.
pub const MIN_GAP_MS: u64 = 5_000;

/// Points where either arm has fewer devices than this are drawn but do not set the
/// axis: with a handful of devices the interval spans tens of points, and would squash
/// the rest of the run into a flat line.
pub const AXIS_MIN_DEVICES: u64 = 30;

/// The total of a step series at `t`: its last point at or before `t` (0 before the first).
pub fn value_at(series: &[(u64, u64)], t: u64) -> u64 {
    match series.partition_point(|(at, _)| *at <= t) {
        0 => 0,
        i => series[i - 1].1,
    }
}

/// One arm's step series: devices (new in the run) and one goal's conversions.
#[derive(Debug, Clone, Copy)]
pub struct Arm<'a> {
    pub devices: &'a [(u64, u64)],
    pub conversions: &'a [(u64, u64)],
}

/// The difference to the control at one time, with its interval (fractions, `b − a`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Banded {
    pub at_ms: u64,
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
    /// The smaller arm's devices: see [`AXIS_MIN_DEVICES`].
    pub fewest_devices: u64,
}

/// `variant − control` at every time either arm's counts changed, once both have
/// devices, with the interval of `stats::difference`. No point before the first data,
/// and none where the history is inconsistent (a time bucket of the conversions newer
/// than the devices' — more conversions than devices).
pub fn difference_over_time(control: Arm, variant: Arm, confidence: f64) -> Vec<Banded> {
    let mut times: Vec<u64> = [
        control.devices,
        control.conversions,
        variant.devices,
        variant.conversions,
    ]
    .iter()
    .flat_map(|s| s.iter().map(|(t, _)| *t))
    .collect();
    times.sort_unstable();
    times.dedup();
    let at = |arm: Arm, t: u64| Proportion {
        conversions: value_at(arm.conversions, t),
        users: value_at(arm.devices, t),
    };
    times
        .into_iter()
        .filter_map(|t| {
            let (a, b) = (at(control, t), at(variant, t));
            if a.users == 0 || b.users == 0 || a.conversions > a.users || b.conversions > b.users {
                return None;
            }
            let interval = stats::difference(a, b, confidence);
            [interval.estimate, interval.low, interval.high]
                .iter()
                .all(|x| x.is_finite())
                .then_some(Banded {
                    at_ms: t,
                    estimate: interval.estimate,
                    low: interval.low,
                    high: interval.high,
                    fewest_devices: a.users.min(b.users),
                })
        })
        .collect()
}

/// The spacing beyond which consecutive `times` (sorted) are a gap: [`GAP_FACTOR`] × the
/// median spacing, at least [`MIN_GAP_MS`].
pub fn gap_threshold(times: &[u64]) -> u64 {
    let mut spacings: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    spacings.sort_unstable();
    let median = spacings.get(spacings.len() / 2).copied().unwrap_or(0);
    (GAP_FACTOR * median).max(MIN_GAP_MS)
}

/// The runs of consecutive `times` (sorted) with no spacing over `threshold`, as index
/// ranges: each is drawn as one line; a single point is drawn as a dot.
pub fn split_at_gaps(times: &[u64], threshold: u64) -> Vec<Range<usize>> {
    let mut segments = Vec::new();
    let mut start = 0;
    for i in 1..times.len() {
        if times[i] - times[i - 1] > threshold {
            segments.push(start..i);
            start = i;
        }
    }
    if !times.is_empty() {
        segments.push(start..times.len());
    }
    segments
}

/// The lowest and highest value the difference axis must show: every interval bound of
/// the points with at least [`AXIS_MIN_DEVICES`] in each arm (all points if none has
/// that many yet), and 0 — the line a reader compares with. `None` without points.
pub fn difference_range<'a>(
    points: impl IntoIterator<Item = &'a Banded> + Clone,
) -> Option<(f64, f64)> {
    let settled = points
        .clone()
        .into_iter()
        .any(|p| p.fewest_devices >= AXIS_MIN_DEVICES);
    points
        .into_iter()
        .filter(|p| !settled || p.fewest_devices >= AXIS_MIN_DEVICES)
        .fold(None, |range: Option<(f64, f64)>, p| {
            let (low, high) = range.unwrap_or((0.0, 0.0));
            Some((low.min(p.low), high.max(p.high)))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_series_holds_its_last_value() {
        let s = [(10, 2), (20, 5)];
        assert_eq!(
            [0, 9, 10, 15, 20, 99].map(|t| value_at(&s, t)),
            [0, 0, 2, 2, 5, 5]
        );
        assert_eq!(value_at(&[], 5), 0);
    }

    #[test]
    fn the_difference_starts_with_the_data_and_uses_stats_difference() {
        let control = Arm {
            devices: &[(1_000, 10), (3_000, 40)],
            conversions: &[(3_000, 4)],
        };
        let variant = Arm {
            devices: &[(2_000, 20), (3_000, 40)],
            conversions: &[(2_000, 2), (3_000, 8)],
        };
        let points = difference_over_time(control, variant, 0.95);
        // t=1000: the variant has no devices yet, so no point.
        assert_eq!(
            points.iter().map(|p| p.at_ms).collect::<Vec<_>>(),
            [2_000, 3_000]
        );
        let expected = stats::difference(
            Proportion {
                conversions: 4,
                users: 40,
            },
            Proportion {
                conversions: 8,
                users: 40,
            },
            0.95,
        );
        let last = points[1];
        assert_eq!(
            (last.estimate, last.low, last.high),
            (expected.estimate, expected.low, expected.high)
        );
        assert_eq!(last.fewest_devices, 40);
        assert_eq!(points[0].fewest_devices, 10);
        // More conversions than devices at a time (buckets of different widths): skipped.
        let odd = Arm {
            devices: &[(5_000, 1)],
            conversions: &[(5_000, 3)],
        };
        assert!(difference_over_time(odd, variant, 0.95).is_empty());
    }

    /// `(start, end)` pairs as ranges (clippy frowns on `ranges(&[(0, 6)])`).
    fn ranges(pairs: &[(usize, usize)]) -> Vec<Range<usize>> {
        pairs.iter().map(|&(a, b)| a..b).collect()
    }

    #[test]
    fn lines_break_where_the_traffic_stopped() {
        // A point a second, then 20 s of silence, then a point a second again.
        let times = [0, 1_000, 2_000, 3_000, 23_000, 24_000, 25_000];
        assert_eq!(
            gap_threshold(&times),
            MIN_GAP_MS,
            "4 × 1 s is under the floor"
        );
        assert_eq!(
            split_at_gaps(&times, gap_threshold(&times)),
            ranges(&[(0, 4), (4, 7)])
        );
        // Thinned history: 64 s buckets; 200 s apart is a gap, 64 s apart is not.
        let wide = [0, 64_000, 128_000, 192_000, 392_000, 456_000];
        assert_eq!(gap_threshold(&wide), 256_000);
        assert_eq!(
            split_at_gaps(&wide, gap_threshold(&wide)),
            ranges(&[(0, 6)])
        );
        let wider = [0, 64_000, 128_000, 192_000, 592_000, 656_000];
        assert_eq!(
            split_at_gaps(&wider, gap_threshold(&wider)),
            ranges(&[(0, 4), (4, 6)])
        );
        assert_eq!(
            split_at_gaps(&[7], 1),
            ranges(&[(0, 1)]),
            "one point is one segment"
        );
        assert!(split_at_gaps(&[], 1).is_empty());
    }

    #[test]
    fn early_points_do_not_stretch_the_axis() {
        let point = |fewest_devices, low, high| Banded {
            at_ms: 0,
            estimate: (low + high) / 2.0,
            low,
            high,
            fewest_devices,
        };
        let early = point(2, -0.9, 0.95);
        let settled = [point(30, 0.01, 0.05), point(400, 0.02, 0.04)];
        let all: Vec<Banded> = std::iter::once(early).chain(settled).collect();
        assert_eq!(
            difference_range(&all),
            Some((0.0, 0.05)),
            "0 is always on the axis"
        );
        assert_eq!(
            difference_range(&[early]),
            Some((-0.9, 0.95)),
            "with nothing settled, the early points are all there is"
        );
        assert_eq!(difference_range(&[]), None);
    }
}
