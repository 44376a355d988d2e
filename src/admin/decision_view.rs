//! The admin page's "Automated decisions" part of an experiment's results: the settings
//! in one line, then the records of the run shown, newest first, a change that could not
//! be applied marked as such. Pure: results in, markup out.

use crate::admin::results::ExperimentResults;
use crate::config::{show_duration, Decide, Mode, OnTimeout};
use crate::state::decision_log::DecisionRecord;
use crate::util::html::escape;

/// The decisions part, or nothing for an experiment without `decide` and without records.
pub fn section(results: &ExperimentResults) -> String {
    let Some((decide, records)) = &results.decisions else {
        return String::new();
    };
    let run = results.run.as_ref().map(|r| r.number);
    let shown: Vec<&DecisionRecord> = records
        .iter()
        .rev()
        .filter(|r| Some(r.run) == run)
        .collect();
    let mut out = String::from(r#"<div class="decisions"><h4>Automated decisions</h4>"#);
    out.push_str(&format!(
        r#"<p class="muted">{}</p>"#,
        escape(&match decide {
            Some(d) => settings_line(d),
            None => "No decide block in the config now; the records of earlier settings stay."
                .to_string(),
        })
    ));
    if shown.is_empty() {
        out.push_str(r#"<p class="muted">No decision in this run yet.</p></div>"#);
        return out;
    }
    out.push_str(
        "<table><thead><tr><th>at</th><th>kind</th><th>variant</th><th>action</th><th>outcome</th><th>reason</th></tr></thead><tbody>",
    );
    for r in shown {
        let (class, outcome) = match (&r.error, r.applied, r.mode.as_str()) {
            (Some(e), _, _) => (" class=\"failed\"", format!("not applied: {e}")),
            (None, true, _) => ("", "applied".to_string()),
            (None, false, "notify") if r.kind != "no_decision" => {
                ("", "would have (notify mode)".to_string())
            }
            _ => ("", "—".to_string()),
        };
        let action = match &r.rollout_variant {
            Some(to) => format!("{} → {to}", r.action),
            None => r.action.clone(),
        };
        out.push_str(&format!(
            "<tr{class}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.at),
            escape(&r.kind),
            escape(r.variant.as_deref().unwrap_or("")),
            escape(&action),
            escape(&outcome),
            escape(&r.reason),
        ));
    }
    out.push_str("</tbody></table></div>");
    out
}

/// `act mode · every 1h · promote on click at 95% after 7d and 1000 devices per variant ·
/// guardrails: rollback on errors ×2, p95 latency ×1.5, SRM freeze · after 28d: stop`.
fn settings_line(d: &Decide) -> String {
    let mode = match d.mode {
        Mode::Notify => "notify mode (records and notifies, changes nothing)",
        Mode::Act => "act mode (applies what it decides)",
    };
    let mut guards = Vec::new();
    if let Some(g) = d.guardrails.errors {
        guards.push(format!("errors ×{}", g.max_ratio));
    }
    if let Some(g) = d.guardrails.latency_p95 {
        guards.push(format!("p95 latency ×{}", g.max_ratio));
    }
    if d.guardrails.srm {
        guards.push("SRM freeze".to_string());
    }
    let action = d.guardrails.action.as_str();
    let timeout = match (d.max_duration, d.on_timeout) {
        (None, _) => String::new(),
        (Some(max), on) => format!(
            " · after {}: {}",
            show_duration(max),
            match on {
                OnTimeout::Stop => "stop",
                OnTimeout::RolloutBest => "roll out the best",
                OnTimeout::Keep => "keep",
            }
        ),
    };
    format!(
        "{mode} · every {} · promote on {} at {}% after {} and {} devices per variant · guardrails: {action} on {}{timeout}",
        show_duration(d.every),
        d.promote.goal,
        d.promote.confidence * 100.0,
        show_duration(d.min_duration),
        d.min_devices,
        if guards.is_empty() { "nothing".to_string() } else { guards.join(", ") },
    )
}
