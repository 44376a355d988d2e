//! The report as the table `abproxy analyze` prints.

use super::{format_p, p_is, points, Report, SRM_THRESHOLD};

/// The table a person reads: per goal, the verdicts, then a row per variant.
pub fn render_table(report: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "experiment {} (control {})\n",
        report.experiment, report.control
    ));
    if let Some(n) = report.stratified_periods {
        out.push_str(&format!(
            "stratified over {n} periods (the shares of new devices changed during the run): rates, differences and tests weigh each period by its devices; devices and conversions are the run's totals\n"
        ));
    }
    let against = if report.stratified {
        ", against each period's shares"
    } else {
        ""
    };
    match report.srm_p_value {
        Some(p) if p < SRM_THRESHOLD => out.push_str(&format!(
            "sample-ratio mismatch: {}{against} — the split is not what was configured; do not trust these results\n",
            p_is(p)
        )),
        Some(p) => out.push_str(&format!("sample ratio: ok ({}{against})\n", p_is(p))),
        None => {}
    }
    if report.goals.is_empty() {
        out.push_str("no goals: add `goals` to the experiment to measure conversions\n");
    }
    for (goal, g) in &report.goals {
        out.push_str(&format!("\ngoal {goal}\n"));
        let start = out.len();
        for v in &g.verdicts {
            out.push_str(&format!("  {v}\n"));
        }
        out.push_str(&format!(
            "  {:<12} {:>9} {:>11} {:>8} {:>20} {:>8} {:>8} {:>8} {:>9}\n",
            "variant",
            "devices",
            "conversions",
            "rate",
            "diff [95% CI]",
            "p",
            "p holm",
            "p seq",
            "P(beat)"
        ));
        for (name, r) in g.variants.iter() {
            let opt = |x: Option<f64>| x.map_or("".to_string(), format_p);
            let ci = match (r.diff, r.ci_low, r.ci_high) {
                (Some(d), Some(l), Some(h)) => {
                    format!("{} [{}, {}]", points(d), points(l), points(h))
                }
                _ if name == &report.control => "control".to_string(),
                _ => "not enough data".to_string(),
            };
            out.push_str(&format!(
                "  {:<12} {:>9} {:>11} {:>7.2}% {:>20} {:>8} {:>8} {:>8} {:>9}\n",
                name,
                r.users,
                r.conversions,
                100.0 * r.rate,
                ci,
                opt(r.p_value),
                opt(r.p_value_holm),
                opt(r.p_value_sequential),
                r.chance_to_beat_control
                    .map_or("".to_string(), |c| format!("{:.1}%", 100.0 * c)),
            ));
        }
        // Control rows leave columns empty: no trailing blanks.
        let rows: String = out[start..]
            .lines()
            .map(|l| format!("{}\n", l.trim_end()))
            .collect();
        out.truncate(start);
        out.push_str(&rows);
    }
    out
}
