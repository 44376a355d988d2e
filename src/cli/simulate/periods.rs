//! The periods of an experiment's run, as `abproxy simulate` prints them at the end (with
//! `--admin`): per period its number, start, the shares new devices were hashed by, what
//! a bandit computed them from, the devices the proxy assigned in it and their
//! conversions, and this simulation's own visits and clicks in it. Pure: from the
//! results JSON (`GET /api/experiments/{key}/results`) the caller fetched, and the
//! visits.
//!
//! ```text
//! headline, run 1: 2 periods
//!   period  started               variant   share  inputs  devices  click  simulated
//!        1  2026-12-01T23:40:00Z  A        33.33%       -      100      5      100/5
//!                                 B        33.33%       -      100     30    100/30
//!        2  2026-12-01T23:40:05Z  A         1.00%   100/5        2      0        2/0
//!                                 B        99.00%  100/30      198     61    198/61
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use serde_json::Value;

use super::Visit;
use crate::stats::analysis::PeriodCounts;

/// What the results say of the run after the visits.
#[derive(Debug, Clone)]
pub struct RunResults {
    /// The run's number (the results show the last run).
    pub run: Option<u64>,
    /// Oldest first. Empty from a proxy that does not report periods.
    pub periods: Vec<PeriodCounts>,
    /// The proxy's own sample-ratio check (stratified by period when there are several).
    pub srm_p_value: Option<f64>,
}

impl RunResults {
    /// From the results JSON: its `periods`, else those of its `counts` (the same list,
    /// in the `--counts FILE` shape).
    pub fn from_json(results: &Value) -> Result<RunResults, String> {
        let parse = |periods: &Value| {
            serde_json::from_value::<Vec<PeriodCounts>>(periods.clone())
                .map_err(|e| format!("the results' periods are not readable: {e}"))
        };
        let top = results.get("periods").filter(|p| !p.is_null()).map(parse);
        let in_counts = results["counts"]
            .get("periods")
            .filter(|p| !p.is_null())
            .map(parse);
        let mut periods = match (top, in_counts) {
            (Some(Ok(periods)), _) | (_, Some(Ok(periods))) => periods,
            (Some(Err(e)), _) | (None, Some(Err(e))) => return Err(e),
            (None, None) => Vec::new(),
        };
        periods.sort_by_key(|p| p.number);
        Ok(RunResults {
            run: results["run"]["number"].as_u64(),
            periods,
            srm_p_value: results["srm_p_value"].as_f64(),
        })
    }

    /// Whether the shares of new devices changed during the run.
    pub fn shares_moved(&self) -> bool {
        self.periods.len() > 1
    }
}

/// The periods of experiment `key`, or nothing when the proxy reports none.
pub fn render(key: &str, results: &RunResults, visits: &[Visit]) -> String {
    let run = results.run.map_or(String::new(), |n| format!(", run {n}"));
    let periods = &results.periods;
    match periods.as_slice() {
        [] => return String::new(),
        [only] => {
            return format!(
                "{key}{run}: 1 period (the shares did not move): {}\n",
                only.shares
                    .iter()
                    .map(|(v, s)| format!("{v} {}", percent(*s)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        _ => {}
    }
    let variants: BTreeSet<&str> = periods
        .iter()
        .flat_map(|p| p.shares.keys().chain(p.counts.keys()))
        .map(String::as_str)
        .collect();
    let goals: BTreeSet<&str> = periods
        .iter()
        .flat_map(|p| p.counts.values())
        .flat_map(|c| c.goals.keys())
        .map(String::as_str)
        .collect();
    let simulated = tally_by_period(key, periods, visits);

    let mut header = vec!["period", "started", "variant", "share", "inputs", "devices"];
    header.extend(goals.iter().copied());
    header.push("simulated");
    let mut rows = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    for (index, period) in periods.iter().enumerate() {
        for (line, variant) in variants.iter().enumerate() {
            let first = line == 0;
            let counts = period.counts.get(*variant);
            let mut row = vec![
                if first {
                    period.number.to_string()
                } else {
                    String::new()
                },
                match (first, &period.started_at) {
                    (true, Some(at)) => at.clone(),
                    (true, None) => "-".to_string(),
                    (false, _) => String::new(),
                },
                variant.to_string(),
                period
                    .shares
                    .get(*variant)
                    .map_or("-".to_string(), |s| percent(*s)),
                period
                    .inputs
                    .as_ref()
                    .and_then(|inputs| inputs.get(*variant))
                    .map_or("-".to_string(), |i| {
                        format!("{}/{}", i.users, i.conversions)
                    }),
                counts.map_or(0, |c| c.users).to_string(),
            ];
            for goal in &goals {
                let conversions = counts
                    .and_then(|c| c.goals.get(*goal))
                    .map_or(0, |g| g.conversions);
                row.push(conversions.to_string());
            }
            let (n, clicks) = simulated[index].get(*variant).copied().unwrap_or_default();
            row.push(format!("{n}/{clicks}"));
            rows.push(row);
        }
    }
    let left = [false, true, true, false, false, false];
    let mut out = format!("{key}{run}: {} periods\n", periods.len());
    out.push_str(&table(&rows, |column| {
        left.get(column).copied().unwrap_or(false)
    }));
    out.push_str(
        "  (share: of new devices in the period; inputs: the devices/conversions a bandit \
         computed it from; devices and goals: the proxy's, assigned in the period; \
         simulated: this run's visits/clicks that started in it, by the clock)\n",
    );
    out
}

/// (visits, clicks) per variant of `key` for each period: a visit belongs to the last
/// period that had started when it did (the first, if it came before every start or a
/// start is unknown).
fn tally_by_period<'v>(
    key: &str,
    periods: &[PeriodCounts],
    visits: &'v [Visit],
) -> Vec<BTreeMap<&'v str, (u64, u64)>> {
    let starts: Vec<Option<SystemTime>> = periods
        .iter()
        .map(|p| {
            p.started_at
                .as_deref()
                .and_then(|at| humantime::parse_rfc3339_weak(at).ok())
        })
        .collect();
    let mut tallies = vec![BTreeMap::new(); periods.len()];
    for visit in visits {
        let Some(group) = visit.groups.get(key) else {
            continue;
        };
        let index = period_at(&starts, visit.at);
        let entry = tallies[index].entry(group.as_str()).or_insert((0, 0));
        entry.0 += 1;
        entry.1 += u64::from(visit.clicked);
    }
    tallies
}

/// The index of the period in force at `at`, given the periods' starts (oldest first).
pub fn period_at(starts: &[Option<SystemTime>], at: SystemTime) -> usize {
    starts
        .iter()
        .rposition(|start| start.is_some_and(|s| s <= at))
        .unwrap_or(0)
}

fn percent(share: f64) -> String {
    format!("{:.2}%", 100.0 * share)
}

/// Rows as aligned columns, two spaces in, two between; numbers right-aligned, the
/// columns `left` names left-aligned.
fn table(rows: &[Vec<String>], left: impl Fn(usize) -> bool) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if left(c) {
                    format!("{cell:<w$}", w = widths[c])
                } else {
                    format!("{cell:>w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str("  ");
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A bandit run of two periods as the results JSON gives it.
    fn results() -> Value {
        serde_json::json!({
            "experiment": "headline",
            "srm_p_value": 0.5,
            "run": {"number": 1, "started_at": "2026-12-01T23:40:00Z", "ended_at": null},
            "periods": [
                {"number": 2, "started_at": "2026-12-01T23:40:05Z",
                 "shares": {"A": 0.01, "B": 0.99},
                 "inputs": {"A": {"users": 100, "conversions": 5},
                            "B": {"users": 100, "conversions": 30}},
                 "counts": {"A": {"users": 2, "goals": {"click": {"conversions": 0}}},
                            "B": {"users": 198, "goals": {"click": {"conversions": 61}}}}},
                {"number": 1, "started_at": "2026-12-01T23:40:00Z",
                 "shares": {"A": 0.5, "B": 0.5}, "inputs": null,
                 "counts": {"A": {"users": 100, "goals": {"click": {"conversions": 5}}},
                            "B": {"users": 100, "goals": {"click": {"conversions": 30}}}}}
            ]
        })
    }

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap()
    }

    fn visit(group: &str, clicked: bool, when: &str) -> Visit {
        Visit {
            groups: [("headline".to_string(), group.to_string())].into(),
            clicked,
            at: at(when),
        }
    }

    #[test]
    fn the_table_has_a_row_per_period_and_variant() {
        let results = RunResults::from_json(&results()).unwrap();
        assert_eq!(results.run, Some(1));
        assert!(results.shares_moved());
        let visits = [
            visit("A", true, "2026-12-01T23:40:01Z"),
            visit("B", false, "2026-12-01T23:40:04.999Z"),
            visit("B", true, "2026-12-01T23:40:05Z"),
            visit("B", true, "2026-12-01T23:40:09Z"),
        ];
        let text = render("headline", &results, &visits);
        let want = "\
headline, run 1: 2 periods
  period  started               variant   share  inputs  devices  click  simulated
       1  2026-12-01T23:40:00Z  A        50.00%       -      100      5        1/1
                                B        50.00%       -      100     30        1/0
       2  2026-12-01T23:40:05Z  A         1.00%   100/5        2      0        0/0
                                B        99.00%  100/30      198     61        2/2
";
        assert!(text.starts_with(want), "{text}");
        assert!(
            text.contains("(share: of new devices in the period;"),
            "{text}"
        );
    }

    #[test]
    fn one_period_or_none_says_little() {
        let mut one = results();
        one["periods"].as_array_mut().unwrap().remove(0);
        let results = RunResults::from_json(&one).unwrap();
        assert!(!results.shares_moved());
        assert_eq!(
            render("headline", &results, &[]),
            "headline, run 1: 1 period (the shares did not move): A 50.00%, B 50.00%\n"
        );
        // A proxy that reports no periods: nothing at all.
        let old = serde_json::json!({"run": {"number": 3}, "counts": {"experiment": "x"}});
        let results = RunResults::from_json(&old).unwrap();
        assert!(results.periods.is_empty());
        assert_eq!(render("headline", &results, &[]), "");
    }

    #[test]
    fn periods_are_read_from_the_counts_when_not_beside_them() {
        let periods = results()["periods"].clone();
        let in_counts = serde_json::json!({"counts": {"periods": periods}});
        let results = RunResults::from_json(&in_counts).unwrap();
        assert_eq!(
            results.periods.iter().map(|p| p.number).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(results.run, None);
        let broken = serde_json::json!({"periods": [{"number": "one"}]});
        assert!(RunResults::from_json(&broken)
            .unwrap_err()
            .contains("periods are not readable"));
    }

    #[test]
    fn a_visit_belongs_to_the_last_period_started_before_it() {
        let t0 = at("2026-12-01T23:40:00Z");
        let starts = [Some(t0), Some(t0 + Duration::from_secs(5)), None];
        assert_eq!(period_at(&starts, t0 - Duration::from_secs(1)), 0);
        assert_eq!(period_at(&starts, t0), 0);
        assert_eq!(period_at(&starts, t0 + Duration::from_millis(4999)), 0);
        assert_eq!(period_at(&starts, t0 + Duration::from_secs(5)), 1);
        assert_eq!(period_at(&starts, t0 + Duration::from_secs(60)), 1);
    }
}
