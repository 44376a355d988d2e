//! When `abproxy simulate` starts each visit: `-n` visits, or `--duration` of wall-clock
//! time, at `--rate` new devices per second. Pure arithmetic, no clock: the run asks for
//! visit i's offset from its start and sleeps until then, so the visits are spread
//! evenly and a run that fell behind (a slow proxy) catches up as fast as
//! `--concurrency` allows rather than drifting; a timed run still ends on time
//! ([`Pacing::in_time`]), with fewer visits than planned.

use std::time::Duration;

/// Visits when neither `-n` nor `--duration` is given (what `-n` defaulted to before
/// `--duration` existed).
pub const DEFAULT_VISITS: usize = 1000;

/// New devices per second with `--duration` and no `--rate`. A bandit of 3 variants with
/// the default burn-in (100 devices each) gets its first update after 15 s; a 5-minute
/// run is 6 000 devices, gentle on a proxy that also serves real traffic.
pub const DEFAULT_RATE: f64 = 20.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    visits: Option<usize>,
    duration: Option<Duration>,
    rate: Option<f64>,
}

impl Pacing {
    /// From `-n`, `--duration` and `--rate` as given. `-n` with `--duration` is a cap:
    /// the run ends at whichever is reached first.
    pub fn new(
        visits: Option<usize>,
        duration: Option<Duration>,
        rate: Option<f64>,
    ) -> Result<Pacing, String> {
        if let Some(rate) = rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(format!(
                    "--rate `{rate}` must be a number of new devices per second above 0"
                ));
            }
        }
        if duration.is_some_and(|d| d.is_zero()) {
            return Err("--duration must be longer than 0s".to_string());
        }
        Ok(Pacing {
            visits: match (visits, duration) {
                (None, None) => Some(DEFAULT_VISITS),
                (visits, _) => visits,
            },
            duration,
            // A run bounded by time alone needs a pace, or it would be a flood of devices.
            rate: match (rate, duration) {
                (None, Some(_)) => Some(DEFAULT_RATE),
                (rate, _) => rate,
            },
        })
    }

    /// The most visits (`-n`, or the default when there is no `--duration`).
    pub fn visits(&self) -> Option<usize> {
        self.visits
    }

    pub fn duration(&self) -> Option<Duration> {
        self.duration
    }

    /// New devices per second; `None`: as fast as `--concurrency` allows.
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// When visit `index` (from 0) starts, after the run's start: `index / rate`, or at
    /// once without a rate. `None` once the run is over: past `-n`, or due at or after
    /// `--duration` (visits started before it finish).
    pub fn due(&self, index: usize) -> Option<Duration> {
        if self.visits.is_some_and(|n| index >= n) {
            return None;
        }
        let offset = match self.rate {
            Some(rate) => Duration::from_secs_f64(index as f64 / rate),
            None => Duration::ZERO,
        };
        match self.duration {
            Some(duration) if offset >= duration => None,
            _ => Some(offset),
        }
    }

    /// Whether a visit may still start this long after the run's start: always without
    /// `--duration`, else only before its end.
    pub fn in_time(&self, elapsed: Duration) -> bool {
        self.duration.is_none_or(|d| elapsed < d)
    }

    /// The visits the run makes when the proxy keeps up: the number of indexes with a
    /// [`Pacing::due`] time.
    pub fn planned(&self) -> usize {
        let (Some(duration), Some(rate)) = (self.duration, self.rate) else {
            // No duration: the count alone ends the run (`new` gives it one).
            return self.visits.unwrap_or(0);
        };
        // duration × rate, then settled exactly by `due` (the float product may be a
        // hair off a whole number either way).
        let estimate = (duration.as_secs_f64() * rate).ceil() as usize;
        let mut planned = estimate.min(self.visits.unwrap_or(usize::MAX));
        while planned > 0 && self.due(planned - 1).is_none() {
            planned -= 1;
        }
        while self.due(planned).is_some() {
            planned += 1;
        }
        planned
    }

    /// How the run is paced, for the report: `50/s for 2s`, `50/s`, or `None` unpaced.
    pub fn describe(&self) -> Option<String> {
        let rate = self.rate?;
        Some(match self.duration {
            Some(d) => format!("{rate}/s for {}", humantime::format_duration(d)),
            None => format!("{rate}/s"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn visits_are_spread_evenly_at_the_rate() {
        let p = Pacing::new(None, Some(secs(2.0)), Some(50.0)).unwrap();
        assert_eq!(p.due(0), Some(Duration::ZERO));
        assert_eq!(p.due(1), Some(Duration::from_millis(20)));
        assert_eq!(p.due(25), Some(Duration::from_millis(500)));
        assert_eq!(p.due(99), Some(Duration::from_millis(1980)));
        // Due exactly at the end: not started.
        assert_eq!(p.due(100), None);
        assert_eq!(p.planned(), 100);
        // A late visit (the proxy was slow) starts only while the run lasts.
        assert!(p.in_time(Duration::from_millis(1999)));
        assert!(!p.in_time(Duration::from_secs(2)));
        assert!(Pacing::new(Some(5), None, Some(50.0))
            .unwrap()
            .in_time(secs(1e6)));
    }

    #[test]
    fn a_duration_that_is_not_a_whole_number_of_gaps_rounds_up() {
        // 0, 1/3, 2/3, 1, 4/3 s are before 1.5 s: 5 visits (1.5 × 3 = 4.5, rounded up).
        let p = Pacing::new(None, Some(secs(1.5)), Some(3.0)).unwrap();
        assert_eq!(p.planned(), 5);
        assert!(p.due(4).is_some() && p.due(5).is_none());
        // A product that is whole on paper but not in floats (0.3 s × 10/s): visits
        // 0, 1, 2 (at 0, 0.1, 0.2 s) are the ones before 0.3 s.
        let p = Pacing::new(None, Some(secs(0.3)), Some(10.0)).unwrap();
        assert_eq!(p.planned(), 3);
    }

    #[test]
    fn a_count_with_a_duration_ends_at_whichever_comes_first() {
        let count_first = Pacing::new(Some(30), Some(secs(2.0)), Some(50.0)).unwrap();
        assert_eq!(count_first.planned(), 30);
        assert_eq!(count_first.due(30), None);
        let time_first = Pacing::new(Some(1000), Some(secs(2.0)), Some(50.0)).unwrap();
        assert_eq!(time_first.planned(), 100);
    }

    #[test]
    fn defaults_keep_the_old_count_and_pace_a_timed_run() {
        // Neither: 1000 visits as fast as they go, as before --duration existed.
        let p = Pacing::new(None, None, None).unwrap();
        assert_eq!((p.visits(), p.rate()), (Some(DEFAULT_VISITS), None));
        assert_eq!(p.due(999), Some(Duration::ZERO));
        assert_eq!(p.due(1000), None);
        assert_eq!(p.describe(), None);
        // A duration alone: the default rate, no count.
        let p = Pacing::new(None, Some(secs(60.0)), None).unwrap();
        assert_eq!((p.visits(), p.rate()), (None, Some(DEFAULT_RATE)));
        assert_eq!(p.planned(), 1200);
        assert_eq!(p.describe().as_deref(), Some("20/s for 1m"));
        // A count at a rate: paced, ends at the count.
        let p = Pacing::new(Some(10), None, Some(4.0)).unwrap();
        assert_eq!(p.due(9), Some(Duration::from_millis(2250)));
        assert_eq!(p.planned(), 10);
        assert_eq!(p.describe().as_deref(), Some("4/s"));
    }

    #[test]
    fn a_rate_or_duration_that_cannot_pace_is_refused() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = Pacing::new(None, Some(secs(1.0)), Some(rate)).unwrap_err();
            assert!(err.starts_with("--rate"), "{rate}: {err}");
        }
        assert!(Pacing::new(None, Some(Duration::ZERO), None).is_err());
    }
}
