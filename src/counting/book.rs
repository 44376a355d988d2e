//! What abproxy counts, per experiment run: assignments and exposures per variant,
//! conversions and value sums per goal.
//!
//! The request path adds to atomics handed out by the [`CountBook`] (resolved once per
//! snapshot, so counting is one atomic add). [`crate::counting::store`] asks the book once
//! a second which totals changed and appends them to the log in the data directory.
//! Records carry *totals*, not increments: the last good record of a cell is its value,
//! so a lost or corrupt record costs nothing that a later one does not restore. A
//! record's text in the log is [`crate::counting::log_line`]'s job.
//!
//! No I/O here: the book is unit-tested without files.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Points kept per counter for the "over time" charts. A series keeps the latest point
/// of each time bucket; when it grows past this, the buckets double in width. A long
/// run thus keeps an even sketch of its whole history in bounded memory and log space.
pub const SERIES_POINTS: usize = 256;
/// The narrowest bucket: the flush interval.
const SERIES_FIRST_BUCKET_MS: u64 = 1_000;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VariantKey {
    pub experiment: String,
    pub run: u32,
    /// `None`: the run's counters. `Some(p)`: the devices assigned in period `p` of the
    /// run and their conversions (exposures are counted for the run only). Period
    /// counters keep no history, only their totals: a run may have many periods.
    pub period: Option<u32>,
    pub variant: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoalKey {
    pub variant: VariantKey,
    pub goal: String,
}

/// A variant's live counters in one run.
#[derive(Debug, Default)]
pub struct VariantCounters {
    assigned: AtomicU64,
    exposures: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VariantTotals {
    /// Devices newly assigned in the run (the analysis population).
    pub assigned: u64,
    /// Requests served under the experiment.
    pub exposures: u64,
}

impl VariantCounters {
    pub fn assign(&self) {
        self.assigned.fetch_add(1, Ordering::Relaxed);
    }

    pub fn expose(&self) {
        self.exposures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn totals(&self) -> VariantTotals {
        VariantTotals {
            assigned: self.assigned.load(Ordering::Relaxed),
            exposures: self.exposures.load(Ordering::Relaxed),
        }
    }
}

impl Live for VariantCounters {
    type Totals = VariantTotals;

    fn totals(&self) -> VariantTotals {
        VariantCounters::totals(self)
    }

    fn restore(&self, t: VariantTotals) {
        self.assigned.store(t.assigned, Ordering::Relaxed);
        self.exposures.store(t.exposures, Ordering::Relaxed);
    }

    fn max(a: VariantTotals, b: VariantTotals) -> VariantTotals {
        VariantTotals {
            assigned: a.assigned.max(b.assigned),
            exposures: a.exposures.max(b.exposures),
        }
    }
}

/// A goal's live counters for one variant in one run.
#[derive(Debug, Default)]
pub struct GoalCounters {
    conversions: AtomicU64,
    /// f64 bits.
    value_sum: AtomicU64,
    value_sum_sq: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GoalTotals {
    pub conversions: u64,
    /// Sum and sum of squares of the converting devices' values (value goals only).
    pub value_sum: f64,
    pub value_sum_sq: f64,
}

impl GoalCounters {
    /// One device converted, with its value for value goals. Counters only grow: a
    /// negative value counts as 0 (in both sums, consistently).
    pub fn convert(&self, value: Option<f64>) {
        self.conversions.fetch_add(1, Ordering::Relaxed);
        if let Some(v) = value {
            let v = v.max(0.0);
            add_f64(&self.value_sum, v);
            add_f64(&self.value_sum_sq, v * v);
        }
    }

    pub fn totals(&self) -> GoalTotals {
        GoalTotals {
            conversions: self.conversions.load(Ordering::Relaxed),
            value_sum: f64::from_bits(self.value_sum.load(Ordering::Relaxed)),
            value_sum_sq: f64::from_bits(self.value_sum_sq.load(Ordering::Relaxed)),
        }
    }
}

impl Live for GoalCounters {
    type Totals = GoalTotals;

    fn totals(&self) -> GoalTotals {
        GoalCounters::totals(self)
    }

    fn restore(&self, t: GoalTotals) {
        self.conversions.store(t.conversions, Ordering::Relaxed);
        self.value_sum
            .store(t.value_sum.to_bits(), Ordering::Relaxed);
        self.value_sum_sq
            .store(t.value_sum_sq.to_bits(), Ordering::Relaxed);
    }

    fn max(a: GoalTotals, b: GoalTotals) -> GoalTotals {
        GoalTotals {
            conversions: a.conversions.max(b.conversions),
            value_sum: a.value_sum.max(b.value_sum),
            value_sum_sq: a.value_sum_sq.max(b.value_sum_sq),
        }
    }
}

fn add_f64(cell: &AtomicU64, v: f64) {
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        Some((f64::from_bits(bits) + v).to_bits())
    });
}

/// Totals over time, at most [`SERIES_POINTS`], one per time bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Series<T> {
    bucket_ms: u64,
    points: Vec<(u64, T)>,
}

impl<T> Default for Series<T> {
    fn default() -> Self {
        Series {
            bucket_ms: SERIES_FIRST_BUCKET_MS,
            points: Vec::new(),
        }
    }
}

impl<T: Copy> Series<T> {
    /// Add the totals at `at_ms` (not earlier than any point before). They replace the
    /// last point when both fall in one bucket.
    pub fn push(&mut self, at_ms: u64, totals: T) {
        let bucket = self.bucket_ms;
        match self.points.last_mut() {
            Some(last) if last.0 / bucket >= at_ms / bucket => *last = (at_ms.max(last.0), totals),
            _ => self.points.push((at_ms, totals)),
        }
        if self.points.len() > SERIES_POINTS {
            self.bucket_ms *= 2;
            let bucket = self.bucket_ms;
            let mut merged: Vec<(u64, T)> = Vec::with_capacity(SERIES_POINTS);
            for point in self.points.drain(..) {
                match merged.last_mut() {
                    Some(last) if last.0 / bucket == point.0 / bucket => *last = point,
                    _ => merged.push(point),
                }
            }
            self.points = merged;
        }
    }

    /// `(unix ms, totals)`, oldest first.
    pub fn points(&self) -> &[(u64, T)] {
        &self.points
    }
}

/// What the book needs of each kind of live counter (a variant's, a goal's).
trait Live: Default {
    type Totals: Copy + Default + PartialEq;
    fn totals(&self) -> Self::Totals;
    fn restore(&self, totals: Self::Totals);
    /// Each field's larger value: counters only grow within a run.
    fn max(a: Self::Totals, b: Self::Totals) -> Self::Totals;
}

/// A counter's live value, what the log holds of it, and its history.
#[derive(Debug)]
struct Tracked<C: Live> {
    live: Arc<C>,
    flushed: C::Totals,
    /// When `flushed` was written (or read back).
    flushed_at_ms: u64,
    /// `None` for counters that keep no history (a period's).
    series: Option<Series<C::Totals>>,
}

impl<C: Live> Tracked<C> {
    fn new(keeps_history: bool) -> Self {
        Tracked {
            live: Arc::default(),
            flushed: C::Totals::default(),
            flushed_at_ms: 0,
            series: keeps_history.then(Series::default),
        }
    }

    /// Take totals read from the log; the larger of them and what it holds wins.
    fn restore(&mut self, at_ms: u64, totals: C::Totals) {
        let merged = C::max(self.flushed, totals);
        self.live.restore(merged);
        self.flushed = merged;
        self.flushed_at_ms = self.flushed_at_ms.max(at_ms);
        // History only moves forward; an older record read late only raises the totals.
        if let Some(series) = &mut self.series {
            if series.points().last().is_none_or(|last| last.0 <= at_ms) {
                series.push(at_ms, merged);
            }
        }
    }

    fn mark_flushed(&mut self, at_ms: u64, totals: C::Totals) {
        self.flushed = totals;
        self.flushed_at_ms = at_ms;
        if let Some(series) = &mut self.series {
            series.push(at_ms, totals);
        }
    }

    /// What the log must keep of this counter: its history, or its last totals.
    fn history(&self) -> Vec<(u64, C::Totals)> {
        match &self.series {
            Some(series) => series.points().to_vec(),
            None if self.flushed != C::Totals::default() => {
                vec![(self.flushed_at_ms, self.flushed)]
            }
            None => Vec::new(),
        }
    }

    /// The live totals, if the log does not hold them yet.
    fn unflushed(&self) -> Option<C::Totals> {
        let totals = self.live.totals();
        (totals != self.flushed).then_some(totals)
    }
}

/// How a record of one kind of counter is made (`Record::Variant` or `Record::Goal`).
type MakeRecord<K, T> = fn(u64, &K, T) -> Record;

/// Each counter of `map` whose totals the log does not hold, as a record at `at_ms`.
fn changes_of<'a, K, C: Live>(
    map: &'a BTreeMap<K, Tracked<C>>,
    at_ms: u64,
    make: MakeRecord<K, C::Totals>,
) -> impl Iterator<Item = Record> + 'a {
    map.iter()
        .filter_map(move |(key, t)| t.unflushed().map(|totals| make(at_ms, key, totals)))
}

/// Each counter of `map`'s history, as records.
fn history_of<'a, K, C: Live>(
    map: &'a BTreeMap<K, Tracked<C>>,
    make: MakeRecord<K, C::Totals>,
) -> impl Iterator<Item = Record> + 'a {
    map.iter().flat_map(move |(key, t)| {
        t.history()
            .into_iter()
            .map(move |(at_ms, totals)| make(at_ms, key, totals))
    })
}

fn variant_record(at_ms: u64, key: &VariantKey, totals: VariantTotals) -> Record {
    Record::Variant {
        at_ms,
        key: key.clone(),
        totals,
    }
}

fn goal_record(at_ms: u64, key: &GoalKey, totals: GoalTotals) -> Record {
    Record::Goal {
        at_ms,
        key: key.clone(),
        totals,
    }
}

/// One line of the counts log: a counter's totals at a time (its text:
/// [`Record::encode`] and [`Record::parse`], in [`crate::counting::log_line`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Variant {
        at_ms: u64,
        key: VariantKey,
        totals: VariantTotals,
    },
    Goal {
        at_ms: u64,
        key: GoalKey,
        totals: GoalTotals,
    },
}

/// Every counter of every run, by name. The request path holds `Arc`s to the live
/// counters; the lock is taken only to hand them out (snapshot builds), to flush, and
/// to read results.
#[derive(Debug, Default)]
pub struct CountBook {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    variants: BTreeMap<VariantKey, Tracked<VariantCounters>>,
    goals: BTreeMap<GoalKey, Tracked<GoalCounters>>,
}

/// A run's counts as read for results: totals now, and history.
#[derive(Debug, Clone, Default)]
pub struct RunCounts {
    /// By variant name.
    pub variants: BTreeMap<String, VariantCounts>,
}

#[derive(Debug, Clone, Default)]
pub struct VariantCounts {
    pub totals: VariantTotals,
    pub series: Vec<(u64, VariantTotals)>,
    /// By goal name.
    pub goals: BTreeMap<String, GoalCounts>,
}

#[derive(Debug, Clone, Default)]
pub struct GoalCounts {
    pub totals: GoalTotals,
    pub series: Vec<(u64, GoalTotals)>,
}

impl CountBook {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves plain data behind; keep counting.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live counters of a variant in a run (created at zero).
    pub fn variant(&self, key: VariantKey) -> Arc<VariantCounters> {
        let keeps_history = key.period.is_none();
        self.lock()
            .variants
            .entry(key)
            .or_insert_with(|| Tracked::new(keeps_history))
            .live
            .clone()
    }

    /// The live counters of a goal of a variant in a run (created at zero).
    pub fn goal(&self, key: GoalKey) -> Arc<GoalCounters> {
        let keeps_history = key.variant.period.is_none();
        self.lock()
            .goals
            .entry(key)
            .or_insert_with(|| Tracked::new(keeps_history))
            .live
            .clone()
    }

    /// Take a record read from the log. Counters only grow within a run, so a counter
    /// keeps the largest totals any record gives it: whatever order records are read in
    /// (a generation left behind by an interrupted compaction, say), none rolls it back.
    pub fn restore(&self, record: &Record) {
        let mut inner = self.lock();
        match record {
            Record::Variant { at_ms, key, totals } => inner
                .variants
                .entry(key.clone())
                .or_insert_with(|| Tracked::new(key.period.is_none()))
                .restore(*at_ms, *totals),
            Record::Goal { at_ms, key, totals } => inner
                .goals
                .entry(key.clone())
                .or_insert_with(|| Tracked::new(key.variant.period.is_none()))
                .restore(*at_ms, *totals),
        }
    }

    /// The counters whose totals differ from what the log holds, as records stamped
    /// `at_ms`. Nothing is marked written until [`CountBook::mark_flushed`].
    pub fn changes(&self, at_ms: u64) -> Vec<Record> {
        let inner = self.lock();
        changes_of(&inner.variants, at_ms, variant_record)
            .chain(changes_of(&inner.goals, at_ms, goal_record))
            .collect()
    }

    /// `records` are durable: remember them as what the log holds.
    pub fn mark_flushed(&self, records: &[Record]) {
        let mut inner = self.lock();
        for record in records {
            match record {
                Record::Variant { at_ms, key, totals } => {
                    if let Some(t) = inner.variants.get_mut(key) {
                        t.mark_flushed(*at_ms, *totals);
                    }
                }
                Record::Goal { at_ms, key, totals } => {
                    if let Some(t) = inner.goals.get_mut(key) {
                        t.mark_flushed(*at_ms, *totals);
                    }
                }
            }
        }
    }

    /// Everything the log holds, as the fewest records that keep each counter's
    /// history: what a compacted log is made of.
    pub fn flushed_history(&self) -> Vec<Record> {
        let inner = self.lock();
        history_of(&inner.variants, variant_record)
            .chain(history_of(&inner.goals, goal_record))
            .collect()
    }

    /// One run of one experiment, with the live totals (counted but perhaps not yet
    /// flushed) as the last point of each series, stamped `now_ms`.
    pub fn run(&self, experiment: &str, run: u32, now_ms: u64) -> RunCounts {
        let inner = self.lock();
        let mut counts = RunCounts::default();
        let in_run =
            |k: &VariantKey| k.experiment == experiment && k.run == run && k.period.is_none();
        for (key, t) in inner.variants.iter().filter(|(k, _)| in_run(k)) {
            let v = counts.variants.entry(key.variant.clone()).or_default();
            v.totals = t.live.totals();
            v.series = with_live_point(t.series.as_ref(), now_ms, v.totals);
        }
        for (key, t) in inner.goals.iter().filter(|(k, _)| in_run(&k.variant)) {
            let v = counts
                .variants
                .entry(key.variant.variant.clone())
                .or_default();
            let totals = t.live.totals();
            v.goals.insert(
                key.goal.clone(),
                GoalCounts {
                    totals,
                    series: with_live_point(t.series.as_ref(), now_ms, totals),
                },
            );
        }
        counts
    }

    /// The live totals of each period of one run: period number → variant → counts
    /// (devices assigned in the period and their conversions; no history).
    pub fn periods(
        &self,
        experiment: &str,
        run: u32,
    ) -> BTreeMap<u32, BTreeMap<String, PeriodTotals>> {
        let inner = self.lock();
        let mut periods: BTreeMap<u32, BTreeMap<String, PeriodTotals>> = BTreeMap::new();
        let period_of = |k: &VariantKey| {
            k.period
                .filter(|_| k.experiment == experiment && k.run == run)
        };
        for (key, t) in &inner.variants {
            if let Some(p) = period_of(key) {
                let v = periods
                    .entry(p)
                    .or_default()
                    .entry(key.variant.clone())
                    .or_default();
                v.assigned = t.live.totals().assigned;
            }
        }
        for (key, t) in &inner.goals {
            if let Some(p) = period_of(&key.variant) {
                periods
                    .entry(p)
                    .or_default()
                    .entry(key.variant.variant.clone())
                    .or_default()
                    .goals
                    .insert(key.goal.clone(), t.live.totals());
            }
        }
        periods
    }
}

/// A variant's counts in one period: devices assigned in it, and their conversions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeriodTotals {
    pub assigned: u64,
    /// By goal name.
    pub goals: BTreeMap<String, GoalTotals>,
}

fn with_live_point<T: Copy + PartialEq>(
    series: Option<&Series<T>>,
    now_ms: u64,
    live: T,
) -> Vec<(u64, T)> {
    let mut points = series.map(|s| s.points().to_vec()).unwrap_or_default();
    if points.last().map(|p| p.1) != Some(live) {
        points.push((now_ms, live));
    }
    points
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Keys for tests here and in `log_line`.
    pub(crate) fn vkey(variant: &str) -> VariantKey {
        VariantKey {
            experiment: "moon_mars".into(),
            run: 3,
            period: None,
            variant: variant.into(),
        }
    }

    pub(crate) fn gkey(variant: &str, goal: &str) -> GoalKey {
        GoalKey {
            variant: vkey(variant),
            goal: goal.into(),
        }
    }

    #[test]
    fn series_thin_to_a_bounded_even_sketch_ending_with_the_latest() {
        let mut series = Series::default();
        // A flush a second for 10 000 seconds.
        for t in 0..10_000u64 {
            series.push(t * 1_000, t);
        }
        let points = series.points();
        assert!(points.len() <= SERIES_POINTS && points.len() > SERIES_POINTS / 2);
        assert_eq!(points.last(), Some(&(9_999_000, 9_999)));
        assert!(
            points[0].0 < 64_000,
            "the start of the run is still sketched"
        );
        let gaps: Vec<u64> = points.windows(2).map(|w| w[1].0 - w[0].0).collect();
        let widest = *gaps.iter().max().unwrap();
        let narrowest = *gaps[..gaps.len() - 1].iter().min().unwrap();
        assert!(
            widest <= 2 * narrowest,
            "uneven sketch: {narrowest}..{widest}"
        );
        // Two flushes in one bucket keep one point, with the later totals.
        let mut s = Series::default();
        s.push(7, 1);
        s.push(9, 2);
        assert_eq!(s.points(), &[(9, 2)]);
    }

    #[test]
    fn only_changed_counters_are_flushed_and_restored_totals_are_live() {
        let book = CountBook::default();
        let mars = book.variant(vkey("Mars"));
        let moon = book.variant(vkey("Moon"));
        let click = book.goal(gkey("Mars", "click"));
        assert!(
            book.changes(1).is_empty(),
            "nothing counted, nothing to write"
        );
        mars.assign();
        mars.expose();
        click.convert(Some(2.5));
        let changes = book.changes(10);
        assert_eq!(changes.len(), 2);
        book.mark_flushed(&changes);
        assert!(book.changes(11).is_empty());
        moon.expose();
        assert_eq!(book.changes(12).len(), 1);

        // A second book restored from the records holds the same totals.
        let restored = CountBook::default();
        for r in book.flushed_history() {
            restored.restore(&r);
        }
        let run = restored.run("moon_mars", 3, 99);
        assert_eq!(
            run.variants["Mars"].totals,
            VariantTotals {
                assigned: 1,
                exposures: 1
            }
        );
        let click = &run.variants["Mars"].goals["click"].totals;
        assert_eq!(
            (click.conversions, click.value_sum, click.value_sum_sq),
            (1, 2.5, 6.25)
        );
        assert!(
            !run.variants.contains_key("Moon"),
            "Moon's exposure was never flushed"
        );
        assert!(
            restored.changes(100).is_empty(),
            "restored totals count as written"
        );
        assert_eq!(restored.variant(vkey("Mars")).totals().assigned, 1);
    }

    #[test]
    fn a_run_shows_unflushed_counts_as_its_last_point() {
        let book = CountBook::default();
        let mars = book.variant(vkey("Mars"));
        mars.assign();
        book.mark_flushed(&book.changes(10_000));
        mars.assign();
        let run = book.run("moon_mars", 3, 20_000);
        let series: Vec<(u64, u64)> = run.variants["Mars"]
            .series
            .iter()
            .map(|(t, v)| (*t, v.assigned))
            .collect();
        assert_eq!(series, [(10_000, 1), (20_000, 2)]);
        assert!(
            book.run("moon_mars", 2, 20).variants.is_empty(),
            "other runs apart"
        );
    }

    #[test]
    fn period_counters_keep_totals_without_history_and_read_apart_from_the_run() {
        let book = CountBook::default();
        let in_period = |p| VariantKey {
            period: Some(p),
            ..vkey("Mars")
        };
        let run_mars = book.variant(vkey("Mars"));
        let p2 = book.variant(in_period(2));
        let p2_click = book.goal(GoalKey {
            variant: in_period(2),
            goal: "click".into(),
        });
        for t in 0..5u64 {
            run_mars.assign();
            p2.assign();
            book.mark_flushed(&book.changes(t * 1_000));
        }
        p2_click.convert(None);
        book.mark_flushed(&book.changes(9_000));
        // Five points of the run's history; one record each for the period's counters.
        let history = book.flushed_history();
        let of = |period: Option<u32>| {
            history
                .iter()
                .filter(|r| match r {
                    Record::Variant { key, .. } => key.period == period,
                    Record::Goal { key, .. } => key.variant.period == period,
                })
                .count()
        };
        assert_eq!((of(None), of(Some(2))), (5, 2));
        let restored = CountBook::default();
        for r in &history {
            restored.restore(r);
        }
        let periods = restored.periods("moon_mars", 3);
        assert_eq!(periods.keys().collect::<Vec<_>>(), [&2]);
        assert_eq!(periods[&2]["Mars"].assigned, 5);
        assert_eq!(periods[&2]["Mars"].goals["click"].conversions, 1);
        assert_eq!(
            restored.run("moon_mars", 3, 0).variants["Mars"]
                .totals
                .assigned,
            5,
            "the run's totals are not the periods' sum counted twice"
        );
        assert!(restored.periods("moon_mars", 2).is_empty());
    }

    #[test]
    fn negative_values_count_as_zero_in_both_sums() {
        let goal = GoalCounters::default();
        goal.convert(Some(-4.0));
        goal.convert(Some(3.0));
        goal.convert(None);
        assert_eq!(
            goal.totals(),
            GoalTotals {
                conversions: 3,
                value_sum: 3.0,
                value_sum_sq: 9.0
            }
        );
    }
}
