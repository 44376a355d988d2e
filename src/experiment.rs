//! One experiment, prepared for the request path: which requests it applies to and
//! which variant a device gets in each state. Pure: no I/O, no clocks.

use crate::assign::WeightTable;
use crate::config::{Experiment, Match, State};
use crate::metrics::{Metrics, VariantCounters};

pub struct ExperimentPlan {
    pub key: String,
    pub state: State,
    pub matcher: Match,
    pub variants: Vec<VariantPlan>,
    pub table: WeightTable,
    pub fallback: usize,
    pub rollout: Option<usize>,
    pub routing: bool,
}

pub struct VariantPlan {
    pub name: String,
    /// Index into the snapshot's upstreams, for routing experiments.
    pub upstream: Option<usize>,
    pub counters: VariantCounters,
}

/// What a device gets from one experiment on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Config-order index of the variant to serve.
    pub variant: usize,
    /// Whether this request counts toward the experiment (active state only).
    pub counted: bool,
}

impl ExperimentPlan {
    /// `upstream_index` resolves an upstream name (validated to exist) to its index.
    pub fn new(
        e: &Experiment,
        metrics: &Metrics,
        upstream_index: impl Fn(&str) -> Option<usize>,
    ) -> ExperimentPlan {
        let index_of = |name: &str| {
            e.variants
                .iter()
                .position(|v| v.name == name)
                .expect("validated variant name")
        };
        ExperimentPlan {
            key: e.key.clone(),
            state: e.state,
            matcher: e.matcher.clone(),
            variants: e
                .variants
                .iter()
                .map(|v| VariantPlan {
                    name: v.name.clone(),
                    upstream: v.upstream.as_deref().and_then(&upstream_index),
                    counters: VariantCounters::new(metrics, &e.key, &v.name),
                })
                .collect(),
            table: WeightTable::new(e.variants.iter().map(|v| (v.name.as_str(), v.weight)))
                .expect("validated: weights sum above 0"),
            fallback: index_of(&e.fallback),
            rollout: e.rollout_variant.as_deref().map(index_of),
            routing: e.is_routing(),
        }
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

    /// The state rules of `PRODUCT.md`: inactive → fallback, uncounted; active → hash,
    /// counted; rollout → the rollout variant, uncounted.
    pub fn decide(&self, device_id: &[u8]) -> Decision {
        match self.state {
            State::Inactive => Decision {
                variant: self.fallback,
                counted: false,
            },
            State::Active => Decision {
                variant: self.table.assign(device_id, &self.key),
                counted: true,
            },
            State::Rollout => Decision {
                variant: self
                    .rollout
                    .expect("validated: rollout state has a rollout variant"),
                counted: false,
            },
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
            rollout_variant: Some("Mars".into()),
            matcher: Match::default(),
        }
    }

    fn plan(e: &Experiment) -> ExperimentPlan {
        ExperimentPlan::new(e, &Metrics::new(), |name| {
            ["moon", "mars"].iter().position(|u| *u == name)
        })
    }

    #[test]
    fn states_pick_and_count_as_specified() {
        let ids: Vec<String> = (0..200).map(|i| format!("dev{i}")).collect();
        let inactive = plan(&experiment(State::Inactive));
        let active = plan(&experiment(State::Active));
        let rollout = plan(&experiment(State::Rollout));
        let mut seen = [0; 2];
        for id in &ids {
            assert_eq!(
                inactive.decide(id.as_bytes()),
                Decision {
                    variant: 0,
                    counted: false
                }
            );
            assert_eq!(
                rollout.decide(id.as_bytes()),
                Decision {
                    variant: 1,
                    counted: false
                }
            );
            let d = active.decide(id.as_bytes());
            assert!(d.counted);
            assert_eq!(d, active.decide(id.as_bytes()), "deterministic");
            seen[d.variant] += 1;
        }
        assert!(
            seen[0] > 60 && seen[1] > 60,
            "both variants reachable: {seen:?}"
        );
    }

    #[test]
    fn routing_variants_resolve_their_upstreams() {
        let p = plan(&experiment(State::Active));
        assert!(p.routing);
        assert_eq!(p.variants[0].upstream, Some(0));
        assert_eq!(p.variants[1].upstream, Some(1));
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
