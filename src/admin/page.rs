//! The admin page (`GET /experiments`) and its login form: server-rendered HTML with a
//! little vanilla JS, no external resources. Changes go through the same PATCH API.

use serde_json::Value;

use super::chart;
use crate::admin::results::ExperimentResults;
use crate::stats::analysis::Report;
use crate::util::html::escape;

/// Everything the page shows, from `api::list`.
pub struct PageContext<'a> {
    pub experiments: &'a Value,
    /// The CSRF token for the page's PATCH requests (session logins only).
    pub csrf: Option<&'a str>,
    /// Whether changes are possible (a token is configured and the caller has a session).
    pub can_write: bool,
    /// Why changes are not possible, shown above the table.
    pub notice: Option<&'a str>,
    /// Whether to show "Log out".
    pub logged_in: bool,
    /// A per-response nonce for the Content-Security-Policy.
    pub nonce: &'a str,
    /// Each experiment's results, in config order.
    pub results: &'a [Outcome],
}

/// An experiment's last-run results and their analysis (or why there is none).
pub struct Outcome {
    pub title: String,
    pub results: ExperimentResults,
    pub report: Result<Report, String>,
    pub confidence: f64,
}

const PALETTE: &[&str] = &[
    "#4c6ef5", "#f76707", "#12b886", "#e64980", "#7950f2", "#fab005", "#15aabf", "#868e96",
];

fn s(v: &Value) -> String {
    escape(v.as_str().unwrap_or(""))
}

const STYLE: &str = r#"
  :root { --fg: #1f2430; --muted: #667085; --line: #e4e7ec; --bg: #f7f8fa; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
  header { display: flex; align-items: center; justify-content: space-between; padding: 14px 24px; background: #fff; border-bottom: 1px solid var(--line); }
  header h1 { font-size: 18px; margin: 0; }
  main { padding: 20px 24px; }
  .notice { background: #fff4e6; border: 1px solid #ffd8a8; padding: 8px 12px; border-radius: 6px; margin-bottom: 16px; }
  table.experiments { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid var(--line); border-radius: 8px; overflow: hidden; }
  table.experiments > thead th { text-align: left; font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; padding: 10px 12px; border-bottom: 1px solid var(--line); background: #fbfcfd; }
  table.experiments > tbody > tr > td { padding: 12px; border-bottom: 1px solid var(--line); vertical-align: top; }
  code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; color: var(--muted); }
  .muted { color: var(--muted); font-size: 12px; }
  .state { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
  .state.active { background: #d3f9d8; color: #2b8a3e; }
  .state.inactive { background: #f1f3f5; color: #495057; }
  .state.rollout { background: #d0ebff; color: #1864ab; }
  table.variants { border-collapse: collapse; }
  table.variants th, table.variants td { padding: 2px 10px 2px 0; text-align: right; font-size: 13px; white-space: nowrap; }
  table.variants th:first-child, table.variants td:first-child { text-align: left; }
  table.variants th { color: var(--muted); font-weight: 500; font-size: 12px; }
  .swatch { display: inline-block; width: 9px; height: 9px; border-radius: 2px; margin-right: 6px; }
  .bar { display: flex; width: 180px; height: 12px; border-radius: 6px; overflow: hidden; background: var(--line); margin-top: 6px; }
  .bar span { display: block; height: 100%; }
  form { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; margin: 0 0 8px; }
  [hidden] { display: none !important; }
  time { white-space: nowrap; }
  input[type=number] { width: 76px; padding: 3px 6px; border: 1px solid #cfd4dc; border-radius: 4px; }
  select { padding: 3px 6px; border: 1px solid #cfd4dc; border-radius: 4px; background: #fff; }
  button { padding: 4px 12px; border: 1px solid #4c6ef5; background: #4c6ef5; color: #fff; border-radius: 4px; cursor: pointer; }
  button.secondary { background: #fff; color: var(--fg); border-color: #cfd4dc; }
  button:disabled { opacity: .5; cursor: not-allowed; }
  .error { color: #c92a2a; font-size: 12px; margin: 4px 0 0; }
  .login { max-width: 360px; margin: 12vh auto; background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 24px; }
  .login form { flex-direction: column; align-items: stretch; }
  .login input { padding: 6px 8px; border: 1px solid #cfd4dc; border-radius: 4px; }
  h2 { font-size: 16px; margin: 28px 0 10px; }
  section.results { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; margin-bottom: 14px; }
  section.results h3 { font-size: 15px; margin: 0 0 6px; }
  .goal { border-top: 1px solid var(--line); padding-top: 10px; margin-top: 10px; }
  .goal h4 { margin: 0 0 4px; font-size: 14px; }
  .verdict { margin: 2px 0; font-weight: 600; }
  .verdict.significant { color: #2b8a3e; }
  .verdict.srm { color: #c92a2a; }
  table.report { border-collapse: collapse; margin: 8px 0; }
  table.report th, table.report td { padding: 3px 12px 3px 0; text-align: right; font-size: 13px; white-space: nowrap; }
  table.report th:first-child, table.report td:first-child { text-align: left; }
  table.report th { color: var(--muted); font-weight: 500; font-size: 12px; }
  .charts { display: flex; flex-wrap: wrap; gap: 12px; }
  svg.chart { background: #fbfcfd; border: 1px solid var(--line); border-radius: 6px; max-width: 100%; height: auto; }
  svg.chart .grid { stroke: #e4e7ec; stroke-width: 1; }
  svg.chart .tick, svg.chart .label { font: 11px system-ui, sans-serif; fill: #667085; }
  svg.chart .label { fill: #1f2430; font-size: 12px; }
"#;

const SCRIPT: &str = r#"
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  async function patch(key, body, errorBox) {
    errorBox.hidden = true;
    const response = await fetch('/api/experiments/' + encodeURIComponent(key), {
      method: 'PATCH',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify(body)
    });
    if (response.ok) { location.reload(); return; }
    let message = 'HTTP ' + response.status;
    try { message = (await response.json()).error || message; } catch (e) {}
    errorBox.textContent = message;
    errorBox.hidden = false;
  }
  for (const form of document.querySelectorAll('form.weights')) {
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const weights = {};
      for (const input of form.querySelectorAll('input[type=number]')) weights[input.name] = Number(input.value);
      patch(form.dataset.key, { weights }, form.parentElement.querySelector('.error'));
    });
  }
  for (const form of document.querySelectorAll('form.state')) {
    const state = form.querySelector('select[name=state]');
    const rollout = form.querySelector('select[name=rollout_variant]');
    const sync = () => { rollout.hidden = state.value !== 'rollout'; };
    state.addEventListener('change', sync);
    sync();
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const body = { state: state.value };
      if (state.value === 'rollout') body.rollout_variant = rollout.value;
      patch(form.dataset.key, body, form.parentElement.querySelector('.error'));
    });
  }
"#;

pub fn experiments_page(ctx: &PageContext) -> String {
    let mut rows = String::new();
    let list = ctx.experiments["experiments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for e in &list {
        rows.push_str(&experiment_row(e, ctx.can_write));
    }
    if list.is_empty() {
        rows.push_str(
            r#"<tr><td colspan="5" class="muted">No experiments in the config.</td></tr>"#,
        );
    }
    let notice = ctx
        .notice
        .map(|n| format!(r#"<p class="notice">{}</p>"#, escape(n)))
        .unwrap_or_default();
    let logout = if ctx.logged_in {
        r#"<form method="post" action="/logout"><button class="secondary" type="submit">Log out</button></form>"#
    } else {
        ""
    };
    let csrf_meta = format!(
        r#"<meta name="csrf-token" content="{}">"#,
        escape(ctx.csrf.unwrap_or(""))
    );
    let body = format!(
        r#"<header><h1>abproxy · experiments</h1>{logout}</header>
<main>
{notice}
<table class="experiments">
<thead><tr><th>Experiment</th><th>State and run</th><th>Variants</th><th>Split (assigned)</th><th>Change</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
<h2>Results</h2>
{results}
</main>
<script nonce="{nonce}">{SCRIPT}</script>"#,
        nonce = escape(ctx.nonce),
        results = ctx.results.iter().map(results_section).collect::<String>(),
    );
    document("abproxy · experiments", &csrf_meta, &body)
}

/// The page around `body`: the shared head (charset, viewport, the style sheet) with
/// `title` and any extra `head` elements.
fn document(title: &str, head: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{head}<title>{title}</title>
<style>{STYLE}</style>
</head>
<body>
{body}
</body>
</html>
"#
    )
}

fn experiment_row(e: &Value, can_write: bool) -> String {
    let key = s(&e["key"]);
    let state = s(&e["state"]);
    let variants = e["variants"].as_array().cloned().unwrap_or_default();
    let total_assigned: u64 = variants
        .iter()
        .map(|v| v["assigned"].as_u64().unwrap_or(0))
        .sum();
    let total_weight: u64 = variants
        .iter()
        .map(|v| v["weight"].as_u64().unwrap_or(0))
        .sum();

    let mut variant_rows = String::new();
    let mut bar = String::new();
    for (i, v) in variants.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let assigned = v["assigned"].as_u64().unwrap_or(0);
        let weight = v["weight"].as_u64().unwrap_or(0);
        let weight_share = if total_weight > 0 {
            100.0 * weight as f64 / total_weight as f64
        } else {
            0.0
        };
        variant_rows.push_str(&format!(
            r#"<tr><td><span class="swatch" style="background:{color}"></span>{name}</td><td>{weight} <span class="muted">({weight_share:.0}%)</span></td><td><code>{upstream}</code></td><td>{assigned}</td><td>{exposed}</td></tr>"#,
            name = s(&v["name"]),
            upstream = if v["upstream"].is_null() { "—".to_string() } else { s(&v["upstream"]) },
            exposed = v["exposed"].as_u64().unwrap_or(0),
        ));
        if total_assigned > 0 {
            let share = 100.0 * assigned as f64 / total_assigned as f64;
            bar.push_str(&format!(
                r#"<span style="width:{share:.2}%;background:{color}" title="{name}: {assigned} ({share:.1}%)"></span>"#,
                name = s(&v["name"]),
            ));
        }
    }
    let split = if total_assigned > 0 {
        let shares: Vec<String> = variants
            .iter()
            .map(|v| {
                format!(
                    "{} {:.1}%",
                    s(&v["name"]),
                    100.0 * v["assigned"].as_u64().unwrap_or(0) as f64 / total_assigned as f64
                )
            })
            .collect();
        format!(
            r#"<div class="bar">{bar}</div><div class="muted">{}</div>"#,
            shares.join(" · ")
        )
    } else {
        r#"<div class="bar"></div><div class="muted">no assignments yet</div>"#.to_string()
    };

    let run = match (&e["run"], &e["last_run"]) {
        (Value::Object(_), _) => format!(
            r#"run {} · since <time>{}</time>"#,
            e["run"]["number"],
            s(&e["run"]["started_at"])
        ),
        (_, Value::Object(last)) => format!(
            r#"last run {} · <time>{}</time> – <time>{}</time>"#,
            last["number"],
            s(&last["started_at"]),
            s(&last["ended_at"])
        ),
        _ => "never run".to_string(),
    };
    let disabled = if can_write { "" } else { " disabled" };
    let weight_inputs: String = variants
        .iter()
        .map(|v| {
            format!(
                r#"<label>{name} <input type="number" name="{name}" value="{weight}" min="0" max="1000000" step="1"{disabled}></label>"#,
                name = s(&v["name"]),
                weight = v["weight"].as_u64().unwrap_or(0)
            )
        })
        .collect();
    let state_options: String = e["allowed_states"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|st| {
            let st = s(st);
            let selected = if st == state { " selected" } else { "" };
            format!(r#"<option value="{st}"{selected}>{st}</option>"#)
        })
        .collect();
    let rollout_options: String = variants
        .iter()
        .map(|v| {
            let name = s(&v["name"]);
            let selected = if e["rollout_variant"].as_str() == v["name"].as_str() {
                " selected"
            } else {
                ""
            };
            format!(r#"<option value="{name}"{selected}>roll out {name}</option>"#)
        })
        .collect();
    format!(
        r#"<tr data-key="{key}">
<td><strong>{title}</strong><br><code>{key}</code><div class="muted">fallback {fallback} · traffic {traffic}%{routing}</div></td>
<td><span class="state {state}">{state}</span><div class="muted">{run}</div></td>
<td><table class="variants"><tr><th>variant</th><th>weight</th><th>upstream</th><th>assigned</th><th>exposed</th></tr>{variant_rows}</table></td>
<td>{split}</td>
<td>
<form class="weights" data-key="{key}">{weight_inputs}<button type="submit"{disabled}>Save weights</button></form>
<form class="state" data-key="{key}"><select name="state"{disabled}>{state_options}</select><select name="rollout_variant"{disabled}>{rollout_options}</select><button type="submit"{disabled}>Apply state</button></form>
<p class="error" hidden></p>
</td>
</tr>
"#,
        title = s(&e["title"]),
        fallback = s(&e["fallback"]),
        traffic = e["traffic"].as_f64().unwrap_or(100.0),
        routing = if e["routing"].as_bool() == Some(true) {
            " · routing"
        } else {
            " · tag-only"
        },
    )
}

/// One experiment's results: per goal the verdicts, the table and the two charts.
fn results_section(outcome: &Outcome) -> String {
    let counts = &outcome.results.counts;
    let key = escape(&counts.experiment);
    let run = match &outcome.results.run {
        Some(r) => match &r.ended_at {
            Some(end) => format!(
                "run {} · <time>{}</time> – <time>{}</time>",
                r.number,
                escape(&r.started_at),
                escape(end)
            ),
            None => format!(
                "run {} · since <time>{}</time>",
                r.number,
                escape(&r.started_at)
            ),
        },
        None => "never run".to_string(),
    };
    let mut out = format!(
        r#"<section class="results" data-key="{key}"><h3>{title} <code>{key}</code></h3><div class="muted">{run} · control {control}</div>"#,
        title = escape(&outcome.title),
        control = escape(counts.control.as_deref().unwrap_or("")),
    );
    let report = match &outcome.report {
        Err(why) => {
            out.push_str(&format!(
                r#"<p class="muted">{}</p></section>"#,
                escape(why)
            ));
            return out;
        }
        Ok(report) => report,
    };
    if report.goals.is_empty() {
        out.push_str(
            r#"<p class="muted">No goals configured: add <code>goals</code> to the experiment to measure conversions.</p></section>"#,
        );
        return out;
    }
    let srm = match report.srm_p_value {
        Some(p) if p < crate::stats::analysis::SRM_THRESHOLD => format!(
            r#"<p class="verdict srm">Sample-ratio mismatch (p = {p:.1e}): the split does not match the weights — do not trust these results.</p>"#
        ),
        Some(p) => format!(r#"<div class="muted">sample ratio ok (p = {p:.3})</div>"#),
        None => String::new(),
    };
    out.push_str(&srm);
    let color_of = |name: &str| {
        let index = counts.variants.keys().position(|k| k == name).unwrap_or(0);
        PALETTE[index % PALETTE.len()]
    };
    for (goal, g) in &report.goals {
        out.push_str(&format!(
            r#"<div class="goal"><h4>goal {}</h4>"#,
            escape(goal)
        ));
        for verdict in &g.verdicts {
            let class = if verdict.contains("do not trust") {
                " srm"
            } else if verdict.ends_with("; significant") {
                " significant"
            } else {
                ""
            };
            out.push_str(&format!(
                r#"<p class="verdict{class}">{}</p>"#,
                escape(verdict)
            ));
        }
        out.push_str(&format!(
            r#"<table class="report"><tr><th>variant</th><th>users</th><th>conversions</th><th>rate</th><th>diff [{conf:.0}% CI]</th><th>p</th><th>p holm</th><th>p seq</th><th>P(beat)</th></tr>"#,
            conf = outcome.confidence * 100.0
        ));
        let mut rate_rows = Vec::new();
        let mut lines = Vec::new();
        for (name, row) in g.variants.iter() {
            let cell = |x: Option<f64>, f: &dyn Fn(f64) -> String| {
                x.filter(|x| x.is_finite()).map_or(String::new(), f)
            };
            let pts = |x: f64| format!("{:+.1}", 100.0 * x);
            let diff = match (row.diff, row.ci_low, row.ci_high) {
                (Some(d), Some(l), Some(h)) if l.is_finite() && h.is_finite() => {
                    format!("{} [{}, {}]", pts(d), pts(l), pts(h))
                }
                _ if name == &report.control => "control".to_string(),
                _ => String::new(),
            };
            let p = |x: f64| escape(&crate::stats::analysis::format_p(x));
            out.push_str(&format!(
                r#"<tr><td><span class="swatch" style="background:{color}"></span>{name}</td><td>{users}</td><td>{conversions}</td><td>{rate:.2}%</td><td>{diff}</td><td>{pv}</td><td>{ph}</td><td>{ps}</td><td>{beat}</td></tr>"#,
                color = color_of(name),
                name = escape(name),
                users = row.users,
                conversions = row.conversions,
                rate = 100.0 * row.rate,
                pv = cell(row.p_value, &p),
                ph = cell(row.p_value_holm, &p),
                ps = cell(row.p_value_sequential, &p),
                beat = cell(row.chance_to_beat_control, &|x| format!("{:.1}%", 100.0 * x)),
            ));
            let interval = crate::stats::rate_interval(
                crate::stats::Proportion {
                    conversions: row.conversions,
                    users: row.users,
                },
                outcome.confidence,
            );
            // No users: nothing is known, the whisker spans every rate.
            let known = |x: f64, otherwise: f64| if x.is_finite() { x } else { otherwise };
            rate_rows.push((
                name.as_str(),
                row.rate,
                known(interval.low, 0.0),
                known(interval.high, 1.0),
            ));
            let history = outcome.results.history.variants.get(name.as_str());
            let assigned: Vec<(u64, u64)> = history
                .map(|h| h.series.iter().map(|(t, v)| (*t, v.assigned)).collect())
                .unwrap_or_default();
            let converted: Vec<(u64, u64)> = history
                .and_then(|h| h.goals.get(goal))
                .map(|g| g.series.iter().map(|(t, v)| (*t, v.conversions)).collect())
                .unwrap_or_default();
            lines.push((name.as_str(), chart::cumulative_rate(&assigned, &converted)));
        }
        out.push_str("</table>");
        let rows: Vec<chart::RateRow> = rate_rows
            .iter()
            .map(|&(name, rate, low, high)| chart::RateRow {
                name,
                color: color_of(name),
                rate,
                low,
                high,
            })
            .collect();
        let lines: Vec<chart::Line> = lines
            .into_iter()
            .map(|(name, points)| chart::Line {
                name,
                color: color_of(name),
                points,
            })
            .collect();
        out.push_str(&format!(
            r#"<div class="charts">{}{}</div></div>"#,
            chart::rates_with_intervals(&rows, outcome.confidence),
            chart::rates_over_time(&lines)
        ));
    }
    out.push_str("</section>");
    out
}

pub fn login_page(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!(r#"<p class="error">{}</p>"#, escape(e)))
        .unwrap_or_default();
    let body = format!(
        r#"<div class="login">
<h1>abproxy admin</h1>
<p class="muted">Enter the admin token (ABPROXY_ADMIN_TOKEN or admin.token_file).</p>
<form method="post" action="/login">
<input type="password" name="token" autocomplete="current-password" placeholder="admin token" required autofocus>
<button type="submit">Log in</button>
</form>
{error}
</div>"#
    );
    document("abproxy · log in", "", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_states_are_offered_and_titles_are_escaped() {
        let e = serde_json::json!({
            "key": "k", "title": "<script>alert(1)</script>", "state": "inactive",
            "allowed_states": ["inactive", "active"], "routing": false, "fallback": "A",
            "rollout_variant": null, "traffic": 100.0, "run": null, "last_run": null,
            "variants": [{"name": "A", "weight": 1, "upstream": null, "assigned": 3, "exposed": 5},
                         {"name": "B", "weight": 3, "upstream": null, "assigned": 1, "exposed": 1}]
        });
        let row = experiment_row(&e, true);
        assert!(!row.contains("<script>"));
        assert!(row.contains("&lt;script&gt;"));
        assert!(row.contains(r#"<option value="active">active</option>"#));
        assert!(
            !row.contains(r#"<option value="rollout""#),
            "inactive → rollout is not offered"
        );
        assert!(row.contains("A 75.0% · B 25.0%"));
        assert!(row.contains("never run"));
    }
}
