//! What `abproxy simulate` knows of the experiments before the first visit, from the
//! proxy's admin API (`GET /api/experiments`): titles, weights, states and which pages
//! they apply to. Pure: the JSON is fetched by the caller.

use serde_json::Value;

/// One experiment as the proxy runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Design {
    pub key: String,
    pub title: String,
    /// `inactive`, `active` or `rollout`.
    pub state: String,
    /// (name, weight), in config order.
    pub variants: Vec<(String, u32)>,
    pub fallback: String,
    pub control: String,
    pub rollout_variant: Option<String>,
    /// The enrolled share, 0 to 100 (%); the rest get the fallback.
    pub traffic: f64,
    pub path_prefix: Option<String>,
    pub host: Option<String>,
}

impl Design {
    pub fn has_variant(&self, name: &str) -> bool {
        self.variants.iter().any(|(v, _)| v == name)
    }

    /// The share of visits each variant (config order) should get, or why there is no
    /// designed split to check against: devices outside `traffic` get the fallback, so
    /// the fallback's expected share is its weighted part of the enrolled share plus all
    /// of the rest.
    pub fn expected_shares(&self) -> Result<Vec<f64>, String> {
        match self.state.as_str() {
            "active" => {}
            "rollout" => {
                return Err(format!(
                    "rollout: every device gets {}",
                    self.rollout_variant
                        .as_deref()
                        .unwrap_or("the rollout variant")
                ))
            }
            state => return Err(format!("{state}: every device gets {}", self.fallback)),
        }
        let total: f64 = self.variants.iter().map(|(_, w)| f64::from(*w)).sum();
        let enrolled = (self.traffic / 100.0).clamp(0.0, 1.0);
        Ok(self
            .variants
            .iter()
            .map(|(name, weight)| {
                let share = enrolled * f64::from(*weight) / total;
                if *name == self.fallback {
                    share + (1.0 - enrolled)
                } else {
                    share
                }
            })
            .collect())
    }
}

/// The experiments of an admin API answer (`{"experiments": [...]}`), in config order.
pub fn from_api(list: &Value) -> Result<Vec<Design>, String> {
    let text = |e: &Value, field: &str| -> Result<String, String> {
        e[field]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("an experiment in the admin API's list has no `{field}`"))
    };
    list["experiments"]
        .as_array()
        .ok_or("the admin API's experiment list has no `experiments`")?
        .iter()
        .map(|e| {
            let variants = e["variants"]
                .as_array()
                .ok_or("an experiment in the admin API's list has no `variants`")?
                .iter()
                .map(|v| {
                    let name = text(v, "name")?;
                    let weight = v["weight"]
                        .as_u64()
                        .and_then(|w| u32::try_from(w).ok())
                        .ok_or_else(|| format!("variant {name} has no whole `weight`"))?;
                    Ok((name, weight))
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok(Design {
                key: text(e, "key")?,
                title: text(e, "title")?,
                state: text(e, "state")?,
                variants,
                fallback: text(e, "fallback")?,
                control: text(e, "control")?,
                rollout_variant: e["rollout_variant"].as_str().map(str::to_string),
                traffic: e["traffic"].as_f64().unwrap_or(100.0),
                path_prefix: e["match"]["path_prefix"].as_str().map(str::to_string),
                host: e["match"]["host"].as_str().map(str::to_string),
            })
        })
        .collect()
}

/// Every name of `--click-probs` must be a variant of one of the experiments: a typo
/// would otherwise simulate a variant that never clicks.
pub fn check_click_probs(click_probs: &[(String, f64)], designs: &[Design]) -> Result<(), String> {
    let unknown: Vec<&str> = click_probs
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| !designs.iter().any(|d| d.has_variant(name)))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let known: Vec<String> = designs
        .iter()
        .map(|d| {
            let names: Vec<&str> = d.variants.iter().map(|(n, _)| n.as_str()).collect();
            format!("{}: {}", d.key, names.join(", "))
        })
        .collect();
    Err(format!(
        "--click-probs: {} {} not a variant of any experiment (the proxy's variants: {})",
        unknown.join(", "),
        if unknown.len() == 1 { "is" } else { "are" },
        if known.is_empty() {
            "none, it has no experiments".to_string()
        } else {
            known.join("; ")
        }
    ))
}

/// The experiments whose variants `--click-probs` names, in config order.
pub fn simulated<'d>(click_probs: &[(String, f64)], designs: &'d [Design]) -> Vec<&'d Design> {
    designs
        .iter()
        .filter(|d| click_probs.iter().any(|(name, _)| d.has_variant(name)))
        .collect()
}

/// The page every visit loads and the Host it sends: one the simulated experiments all
/// apply to. Path prefixes nest or the experiments never share a page.
pub fn page_for(simulated: &[&Design]) -> Result<(String, Option<String>), String> {
    let mut path: Option<&str> = None;
    for d in simulated {
        let Some(prefix) = d.path_prefix.as_deref() else {
            continue;
        };
        path = match path {
            None => Some(prefix),
            Some(p) if p.starts_with(prefix) => Some(p),
            Some(p) if prefix.starts_with(p) => Some(prefix),
            Some(p) => {
                return Err(format!(
                    "the experiments of --click-probs apply to different pages ({p} and {prefix}): \
                     give --path, or click probabilities for one of them"
                ))
            }
        };
    }
    let mut host: Option<&str> = None;
    for d in simulated {
        if let Some(h) = d.host.as_deref() {
            match host {
                Some(other) if !other.eq_ignore_ascii_case(h) => {
                    return Err(format!(
                    "the experiments of --click-probs apply to different hosts ({other} and {h})"
                ))
                }
                _ => host = Some(h),
            }
        }
    }
    Ok((path.unwrap_or("/").to_string(), host.map(str::to_string)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api() -> Value {
        serde_json::json!({"experiments": [
            {"key": "moon_mars", "title": "Moon/Mars", "state": "active", "fallback": "Moon",
             "control": "Moon", "rollout_variant": null, "traffic": 50.0,
             "match": {"path_prefix": "/shop", "host": null},
             "variants": [{"name": "Moon", "weight": 20}, {"name": "Mars", "weight": 30},
                          {"name": "Venus", "weight": 50}]},
            {"key": "btn", "title": "Button", "state": "rollout", "fallback": "White",
             "control": "White", "rollout_variant": "Gold", "traffic": 100.0,
             "match": {"path_prefix": "/shop/cart", "host": "Shop.Example"},
             "variants": [{"name": "White", "weight": 1}, {"name": "Gold", "weight": 1}]}
        ]})
    }

    fn pairs(names: &[&str]) -> Vec<(String, f64)> {
        names.iter().map(|n| (n.to_string(), 0.1)).collect()
    }

    #[test]
    fn reads_the_admin_list() {
        let designs = from_api(&api()).unwrap();
        assert_eq!(designs.len(), 2);
        assert_eq!(designs[0].title, "Moon/Mars");
        assert_eq!(
            designs[0].variants,
            vec![
                ("Moon".into(), 20),
                ("Mars".into(), 30),
                ("Venus".into(), 50)
            ]
        );
        assert_eq!(designs[0].path_prefix.as_deref(), Some("/shop"));
        assert_eq!(designs[1].rollout_variant.as_deref(), Some("Gold"));
        assert!(from_api(&serde_json::json!({"error": "x"})).is_err());
    }

    #[test]
    fn expected_shares_follow_weights_traffic_and_state() {
        let designs = from_api(&api()).unwrap();
        // Half enrolled by 20/30/50, the other half all on the fallback Moon.
        let shares = designs[0].expected_shares().unwrap();
        for (got, want) in shares.iter().zip([0.6, 0.15, 0.25]) {
            assert!((got - want).abs() < 1e-12, "{shares:?}");
        }
        assert_eq!(
            designs[1].expected_shares().unwrap_err(),
            "rollout: every device gets Gold"
        );
    }

    #[test]
    fn unknown_click_prob_names_are_refused_with_the_known_ones() {
        let designs = from_api(&api()).unwrap();
        assert!(check_click_probs(&pairs(&["Moon", "Gold"]), &designs).is_ok());
        let err = check_click_probs(&pairs(&["Moon", "mars"]), &designs).unwrap_err();
        assert_eq!(
            err,
            "--click-probs: mars is not a variant of any experiment \
             (the proxy's variants: moon_mars: Moon, Mars, Venus; btn: White, Gold)"
        );
    }

    #[test]
    fn the_page_is_under_every_simulated_prefix() {
        let designs = from_api(&api()).unwrap();
        let one = simulated(&pairs(&["Moon"]), &designs);
        assert_eq!(page_for(&one).unwrap(), ("/shop".to_string(), None));
        let both = simulated(&pairs(&["Moon", "Gold"]), &designs);
        assert_eq!(
            page_for(&both).unwrap(),
            ("/shop/cart".to_string(), Some("Shop.Example".to_string()))
        );
        assert_eq!(page_for(&[]).unwrap(), ("/".to_string(), None));
        let mut apart = designs.clone();
        apart[1].path_prefix = Some("/blog".into());
        let both = simulated(&pairs(&["Moon", "Gold"]), &apart);
        assert!(page_for(&both).unwrap_err().contains("(/shop and /blog)"));
    }
}
