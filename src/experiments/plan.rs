//! One experiment, prepared for the request path: which requests it applies to and
//! which variant a device gets. Pure: no I/O, no clocks.

use std::sync::Arc;

use crate::config::target::{DeviceClass, Target};
use crate::config::{Experiment, Match, State};
use crate::counting::book::{CountBook, GoalCounters, GoalKey, VariantCounters, VariantKey};
use crate::counting::metrics::VariantMetrics;
use crate::experiments::assign::{bucket, WeightTable};
use crate::experiments::targeting::RequestFacts;

/// Enrollment buckets: traffic is in basis points.
const TRAFFIC_BUCKETS: u64 = 10_000;

pub struct ExperimentPlan {
    pub key: String,
    pub title: String,
    pub state: State,
    /// The run devices are counted in (active experiments only).
    pub run: Option<u32>,
    /// The period of `counts_run` new devices are assigned in (1 and up).
    pub period: u32,
    /// The run the variants' counters belong to: the current one, else the last one (an
    /// experiment stopped a minute ago still shows what it counted). `None`: never ran.
    pub counts_run: Option<u32>,
    /// What the analysis compares the other variants with (config-order index).
    pub control: usize,
    pub matcher: Match,
    pub target: Target,
    pub variants: Vec<VariantPlan>,
    pub table: WeightTable,
    pub fallback: usize,
    pub rollout: Option<usize>,
    pub routing: bool,
    pub upstream_down: crate::config::UpstreamDown,
    /// `abproxy_fallback_served_total` per variant; empty unless `upstream_down: fallback`
    /// (set by the snapshot, which owns the metrics).
    pub fallback_served: Vec<prometheus::IntCounter>,
    /// `abproxy_variant_responses_total` and `abproxy_variant_duration_seconds` per
    /// variant; empty unless the experiment routes (set by the snapshot).
    pub upstream_metrics: Vec<VariantMetrics>,
    pub traffic_bp: u32,
    /// What counts as a conversion, in config order (counters are per variant).
    pub goals: Vec<crate::config::Goal>,
    /// `<key>:traffic`: enrollment hashes with its own salt, never the assignment's, or a
    /// 10 % enrollment would only ever reach the first 10 % of the variant range.
    traffic_salt: String,
}

pub struct VariantPlan {
    pub name: String,
    /// `<experiment>=<variant>`: the whole `X-AB-Assignments` value of a request only
    /// this experiment applies to (most requests), made once rather than per request.
    pub assignment: http::HeaderValue,
    /// Index into the snapshot's upstreams, for routing experiments.
    pub upstream: Option<usize>,
    /// This variant's counters in `counts_run` (detached, never written, if none).
    pub counts: Arc<VariantCounters>,
    /// One per goal of the experiment, in config order.
    pub goals: Vec<Arc<GoalCounters>>,
    /// Per period of `counts_run` (index = period − 1; the last is the current one):
    /// the devices assigned in it and their conversions.
    pub periods: Vec<PeriodCounters>,
}

/// A variant's counters in one period of a run.
pub struct PeriodCounters {
    /// Assignments only (exposures are the run's).
    pub counts: Arc<VariantCounters>,
    /// One per goal of the experiment, in config order.
    pub goals: Vec<Arc<GoalCounters>>,
}

/// What a plan needs of the experiment's latest run in the run book.
#[derive(Debug, Clone, Copy)]
pub struct LastRun<'a> {
    pub number: u32,
    /// The weights of the run's current period, by variant name.
    pub weights: Option<&'a std::collections::BTreeMap<String, u32>>,
    /// The run's periods so far.
    pub periods: u32,
}

impl LastRun<'_> {
    /// Run `number`, hashed by the config's weights (a run without periods).
    pub fn numbered(number: u32) -> Self {
        LastRun {
            number,
            weights: None,
            periods: 0,
        }
    }
}

/// What a device gets from one experiment on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Config-order index of the variant to serve.
    pub variant: usize,
    /// The device is in the experiment (active, targeted, enrolled or pinned, not a bot,
    /// not forced): the request counts as an exposure.
    pub exposed: bool,
    /// Newly assigned in this run: pin it in the cookie and count an assignment.
    pub newly_assigned_in_run: Option<u32>,
}

/// Why a device is where it is, for `/_ab/assignments`.
pub struct Inputs<'a> {
    pub device_id: &'a str,
    pub facts: &'a RequestFacts<'a>,
    /// The variant pinned in the device's assignment cookie, if any.
    pub pinned: Option<&'a str>,
    /// A QA override for this experiment, if any.
    pub forced: Option<&'a str>,
}

impl ExperimentPlan {
    /// `last` is the experiment's latest run in the run book (current when active): new
    /// devices are hashed by its current period's weights when they name the config's
    /// variants (else by the config's); `upstream_index` resolves an upstream name
    /// (validated to exist) to its index.
    pub fn new(
        e: &Experiment,
        last: Option<LastRun>,
        book: &CountBook,
        upstream_index: impl Fn(&str) -> Option<usize>,
    ) -> ExperimentPlan {
        let last_run = last.map(|r| r.number);
        let period = last.map_or(1, |r| r.periods.max(1));
        let key = |variant: &str, run, period| VariantKey {
            experiment: e.key.clone(),
            run,
            period,
            variant: variant.to_string(),
        };
        let variant_counts = |variant: &str, period| match last_run {
            Some(run) => book.variant(key(variant, run, period)),
            None => Arc::default(),
        };
        let goal_counts = |variant: &str, goal: &str, period| match last_run {
            Some(run) => book.goal(GoalKey {
                variant: key(variant, run, period),
                goal: goal.to_string(),
            }),
            None => Arc::default(),
        };
        let weight_of = |name: &str, config_weight: u32| {
            let period_weights = last
                .and_then(|r| r.weights)
                .filter(|w| w.len() == e.variants.len());
            match period_weights {
                Some(w) => w.get(name).copied().unwrap_or(config_weight),
                None => config_weight,
            }
        };
        let index_of = |name: &str| {
            e.variants
                .iter()
                .position(|v| v.name == name)
                .expect("validated variant name")
        };
        ExperimentPlan {
            goals: e.goals.clone(),
            key: e.key.clone(),
            title: e.title.clone(),
            state: e.state,
            run: if e.state == State::Active {
                last_run
            } else {
                None
            },
            counts_run: last_run,
            period,
            control: index_of(&e.control),
            matcher: e.matcher.clone(),
            target: e.target.clone(),
            variants: e
                .variants
                .iter()
                .map(|v| VariantPlan {
                    name: v.name.clone(),
                    assignment: http::HeaderValue::try_from(format!("{}={}", e.key, v.name))
                        .expect("validated names are header-safe"),
                    upstream: v.upstream.as_deref().and_then(&upstream_index),
                    counts: variant_counts(&v.name, None),
                    goals: e
                        .goals
                        .iter()
                        .map(|g| goal_counts(&v.name, &g.name, None))
                        .collect(),
                    periods: (1..=period)
                        .map(|p| PeriodCounters {
                            counts: variant_counts(&v.name, Some(p)),
                            goals: e
                                .goals
                                .iter()
                                .map(|g| goal_counts(&v.name, &g.name, Some(p)))
                                .collect(),
                        })
                        .collect(),
                })
                .collect(),
            table: WeightTable::new(
                e.variants
                    .iter()
                    .map(|v| (v.name.as_str(), weight_of(&v.name, v.weight))),
            )
            .or_else(|| WeightTable::new(e.variants.iter().map(|v| (v.name.as_str(), v.weight))))
            .expect("validated: weights sum above 0"),
            fallback: index_of(&e.fallback),
            rollout: e.rollout_variant.as_deref().map(index_of),
            routing: e.is_routing(),
            upstream_down: e.upstream_down,
            fallback_served: Vec::new(),
            upstream_metrics: Vec::new(),
            traffic_bp: e.traffic_bp,
            traffic_salt: format!("{}:traffic", e.key),
        }
    }

    /// Count a device newly assigned to `variant` (config-order index) in the run and
    /// in its current period.
    pub fn count_assignment(&self, variant: usize) {
        let v = &self.variants[variant];
        v.counts.assign();
        if let Some(current) = v.periods.last() {
            current.counts.assign();
        }
    }

    pub fn variant_index(&self, name: &str) -> Option<usize> {
        self.variants.iter().position(|v| v.name == name)
    }

    /// Does the experiment apply to a request for `host` (no port, any case) and `path`?
    pub fn applies_to(&self, host: Option<&str>, path: &str) -> bool {
        if let Some(prefix) = &self.matcher.path_prefix {
            if !path.starts_with(prefix.as_str()) {
                return false;
            }
        }
        match (&self.matcher.host, host) {
            (None, _) => true,
            (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
            (Some(_), None) => false,
        }
    }

    /// Is this device in the enrolled share (`traffic`)?
    pub fn enrolled(&self, device_id: &str) -> bool {
        self.traffic_bp >= TRAFFIC_BUCKETS as u32
            || bucket(device_id.as_bytes(), &self.traffic_salt, TRAFFIC_BUCKETS)
                < self.traffic_bp as u64
    }

    /// The rules, in order:
    /// 1. a QA override for a variant of this experiment wins, uncounted;
    /// 2. inactive → the fallback, rollout → the rollout variant, uncounted (a pinned
    ///    assignment is ignored, and kept for later);
    /// 3. active: bots and devices outside `target` get the fallback, uncounted;
    /// 4. a device pinned to a variant that still exists keeps it, even at weight 0;
    /// 5. otherwise a device outside the enrolled `traffic` share gets the fallback,
    ///    uncounted; an enrolled one is hashed by the current weights and pinned.
    pub fn decide(&self, inputs: &Inputs) -> Decision {
        let uncounted = |variant| Decision {
            variant,
            exposed: false,
            newly_assigned_in_run: None,
        };
        if let Some(v) = inputs.forced.and_then(|name| self.variant_index(name)) {
            return uncounted(v);
        }
        let run = match self.state {
            State::Inactive => return uncounted(self.fallback),
            State::Rollout => {
                return uncounted(self.rollout.expect("validated: rollout has a variant"))
            }
            State::Active => self.run.unwrap_or(1),
        };
        if inputs.facts.device_class() == DeviceClass::Bot || !self.target.matches(inputs.facts) {
            return uncounted(self.fallback);
        }
        if let Some(v) = inputs.pinned.and_then(|name| self.variant_index(name)) {
            return Decision {
                variant: v,
                exposed: true,
                newly_assigned_in_run: None,
            };
        }
        if !self.enrolled(inputs.device_id) {
            return uncounted(self.fallback);
        }
        let variant = self.table.assign(inputs.device_id.as_bytes(), &self.key);
        Decision {
            variant,
            exposed: true,
            newly_assigned_in_run: Some(run),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Variant;

    fn experiment(state: State) -> Experiment {
        Experiment {
            key: "moon_mars".into(),
            title: "t".into(),
            state,
            state_pos: Default::default(),
            variants: vec![
                Variant {
                    name: "Moon".into(),
                    weight: 50,
                    upstream: Some("moon".into()),
                },
                Variant {
                    name: "Mars".into(),
                    weight: 50,
                    upstream: Some("mars".into()),
                },
            ],
            fallback: "Moon".into(),
            control: "Moon".into(),
            rollout_variant: Some("Mars".into()),
            upstream_down: Default::default(),
            matcher: Match::default(),
            traffic_bp: 10_000,
            target: Target::default(),
            goals: Vec::new(),
            bandit: None,
            decide: None,
        }
    }

    fn plan(e: &Experiment) -> ExperimentPlan {
        ExperimentPlan::new(
            e,
            Some(LastRun::numbered(3)),
            &CountBook::default(),
            |name| ["moon", "mars"].iter().position(|u| *u == name),
        )
    }

    fn decide(
        p: &ExperimentPlan,
        id: &str,
        headers: &http::HeaderMap,
        pinned: Option<&str>,
        forced: Option<&str>,
    ) -> Decision {
        let facts = RequestFacts::new(headers, None);
        p.decide(&Inputs {
            device_id: id,
            facts: &facts,
            pinned,
            forced,
        })
    }

    const NONE: Option<&str> = None;

    #[test]
    fn states_pick_and_count_as_specified() {
        let h = http::HeaderMap::new();
        let inactive = plan(&experiment(State::Inactive));
        let active = plan(&experiment(State::Active));
        let rollout = plan(&experiment(State::Rollout));
        let uncounted = |variant| Decision {
            variant,
            exposed: false,
            newly_assigned_in_run: None,
        };
        let mut seen = [0; 2];
        for i in 0..200 {
            let id = format!("dev{i}");
            assert_eq!(decide(&inactive, &id, &h, NONE, NONE), uncounted(0));
            assert_eq!(
                decide(&inactive, &id, &h, Some("Mars"), NONE),
                uncounted(0),
                "pinned ignored when inactive"
            );
            assert_eq!(
                decide(&rollout, &id, &h, Some("Moon"), NONE),
                uncounted(1),
                "pinned ignored in rollout"
            );
            let d = decide(&active, &id, &h, NONE, NONE);
            assert!(d.exposed);
            assert_eq!(
                d.newly_assigned_in_run,
                Some(3),
                "assigned in the current run"
            );
            assert_eq!(d, decide(&active, &id, &h, NONE, NONE), "deterministic");
            seen[d.variant] += 1;
        }
        assert!(
            seen[0] > 60 && seen[1] > 60,
            "both variants reachable: {seen:?}"
        );
    }

    #[test]
    fn pinned_devices_keep_their_variant_even_at_weight_zero() {
        let mut e = experiment(State::Active);
        e.variants[1].weight = 0;
        let p = plan(&e);
        let h = http::HeaderMap::new();
        let d = decide(&p, "dev", &h, Some("Mars"), NONE);
        assert_eq!(
            d,
            Decision {
                variant: 1,
                exposed: true,
                newly_assigned_in_run: None
            }
        );
        // New devices never get the zero-weight variant.
        assert!((0..300).all(|i| decide(&p, &format!("n{i}"), &h, NONE, NONE).variant == 0));
        // A pinned variant that no longer exists: a fresh assignment.
        let d = decide(&p, "dev", &h, Some("Venus"), NONE);
        assert_eq!((d.variant, d.newly_assigned_in_run), (0, Some(3)));
    }

    #[test]
    fn bots_and_untargeted_devices_get_the_fallback_uncounted() {
        let mut e = experiment(State::Active);
        e.target.devices = vec![crate::config::target::DeviceClass::Mobile];
        let p = plan(&e);
        let mut h = http::HeaderMap::new();
        let uncounted = Decision {
            variant: 0,
            exposed: false,
            newly_assigned_in_run: None,
        };
        assert_eq!(
            decide(&p, "d", &h, Some("Mars"), NONE),
            uncounted,
            "desktop is not targeted"
        );
        h.insert("user-agent", "Mozilla/5.0 (iPhone) Mobile".parse().unwrap());
        assert!(decide(&p, "d", &h, NONE, NONE).exposed, "mobile is");
        h.insert("user-agent", "Googlebot/2.1 Mobile".parse().unwrap());
        assert_eq!(
            decide(&p, "d", &h, Some("Mars"), NONE),
            uncounted,
            "bots never count"
        );
    }

    #[test]
    fn overrides_win_and_are_never_counted() {
        let h = http::HeaderMap::new();
        for state in [State::Inactive, State::Active, State::Rollout] {
            let p = plan(&experiment(state));
            assert_eq!(
                decide(&p, "d", &h, NONE, Some("Mars")),
                Decision {
                    variant: 1,
                    exposed: false,
                    newly_assigned_in_run: None
                }
            );
            assert_eq!(
                decide(&p, "d", &h, NONE, Some("Venus")),
                decide(&p, "d", &h, NONE, NONE),
                "unknown variants ignored"
            );
        }
    }

    #[test]
    fn traffic_enrolls_its_share_with_an_unbiased_split() {
        let mut e = experiment(State::Active);
        e.traffic_bp = 1_000;
        let p = plan(&e);
        let h = http::HeaderMap::new();
        let (mut enrolled, mut mars) = (0, 0);
        const N: usize = 50_000;
        for i in 0..N {
            let d = decide(&p, &format!("device-{i}"), &h, NONE, NONE);
            if d.exposed {
                enrolled += 1;
                mars += d.variant;
            } else {
                assert_eq!(d.variant, 0, "the rest get the fallback");
            }
        }
        let share = enrolled as f64 / N as f64;
        assert!((share - 0.10).abs() < 0.01, "enrolled {share}");
        let mars_share = mars as f64 / enrolled as f64;
        assert!(
            (mars_share - 0.5).abs() < 0.02,
            "split among the enrolled {mars_share}"
        );
        // Pinned devices stay pinned whatever the traffic.
        e.traffic_bp = 0;
        assert!(decide(&plan(&e), "x", &h, Some("Mars"), NONE).exposed);
    }

    #[test]
    fn routing_variants_resolve_their_upstreams() {
        let p = plan(&experiment(State::Active));
        assert!(p.routing);
        assert_eq!(p.variants[0].upstream, Some(0));
        assert_eq!(p.variants[1].upstream, Some(1));
    }

    #[test]
    fn each_variant_carries_its_one_experiment_assignments_value() {
        // The one-entry form of `proxy::headers::assignments_value`'s dictionary.
        let p = plan(&experiment(State::Active));
        assert_eq!(p.variants[0].assignment, "moon_mars=Moon");
        assert_eq!(p.variants[1].assignment, "moon_mars=Mars");
    }

    #[test]
    fn match_by_path_prefix_and_host() {
        let mut e = experiment(State::Active);
        e.matcher = Match {
            path_prefix: Some("/shop".into()),
            host: Some("example.com".into()),
        };
        let p = plan(&e);
        assert!(p.applies_to(Some("example.com"), "/shop/cart"));
        assert!(p.applies_to(Some("EXAMPLE.com"), "/shop"));
        assert!(!p.applies_to(Some("example.com"), "/about"));
        assert!(!p.applies_to(Some("other.com"), "/shop"));
        assert!(!p.applies_to(None, "/shop"));
        assert!(plan(&experiment(State::Active)).applies_to(None, "/anything"));
    }
}
