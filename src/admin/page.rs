//! The admin page (`GET /experiments`) and its login form: server-rendered HTML with a
//! little vanilla JS, no external resources. Changes go through the same PATCH API.
//! The experiments table is here; each experiment's results section is in
//! `results_view`.

use std::collections::BTreeMap;

use serde_json::Value;

use super::results_view::{self, Outcome, View};
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
    /// The runs chosen with `run.KEY=N`.
    pub selected: &'a BTreeMap<String, u32>,
    /// Unix ms, where the charts of a running run end.
    pub now_ms: u64,
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
  .charts { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; margin: 8px 0; }
  svg.chart { background: #fbfcfd; border: 1px solid var(--line); border-radius: 6px; max-width: 100%; height: auto; }
  svg.chart .grid { stroke: #e4e7ec; stroke-width: 1; }
  svg.chart .tick, svg.chart .label, svg.chart .legend, svg.chart .axis, svg.chart .note { font: 11px system-ui, sans-serif; fill: #667085; }
  svg.chart .label, svg.chart .legend { fill: #1f2430; font-size: 12px; }
  svg.chart .title { font: 600 13px system-ui, sans-serif; fill: #1f2430; }
  svg.chart .axis { fill: #1f2430; }
  svg.chart .empty { fill: #f1f3f5; }
  abbr[title] { text-decoration: underline dotted; cursor: help; }
  .run-shown { margin: 4px 0; }
  form.run { display: inline-flex; margin: 0 0 8px; }
  .verdict-line { display: flex; flex-wrap: wrap; align-items: center; gap: 8px; }
  .verdict-line .error { flex-basis: 100%; }
  button.rollout { background: #2b8a3e; border-color: #2b8a3e; }
  .rolled { font-size: 13px; margin-top: 4px; }
  .column-key { max-width: 900px; }
  td.off { color: var(--muted); }
  .bandit { margin: 6px 0 0; }
  .bandit-settings { margin: 0 0 6px; }
  .decisions tr.failed td { background: #fff5f5; color: #a61e1e; }
  .notice.bandit-problem { background: #fff5f5; border-color: #ffa8a8; color: #a61e1e; margin: 6px 0; }
  .stratified { margin: 0 0 8px; }
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
    errorBox.textContent = 'Not changed: ' + message;
    errorBox.hidden = false;
  }
  for (const button of document.querySelectorAll('button.rollout')) {
    button.addEventListener('click', () => patch(button.dataset.key,
      { state: 'rollout', rollout_variant: button.dataset.variant },
      button.parentElement.querySelector('.error')));
  }
  for (const select of document.querySelectorAll('form.run select')) {
    select.addEventListener('change', () => select.form.submit());
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

/// One word for devices everywhere, and why exposures outnumber them.
const DEVICES_AND_EXPOSURES: &str = "A device is one browser (its device_id cookie), counted once per run, when it is first assigned a variant in that run. An exposure is one request served under the experiment: a device makes many requests, so exposures exceed devices.";

pub fn experiments_page(ctx: &PageContext) -> String {
    let view = View {
        can_write: ctx.can_write,
        now_ms: ctx.now_ms,
        selected: ctx.selected,
        palette: PALETTE,
    };
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
<thead><tr><th>Experiment</th><th>State and run</th><th>Variants</th><th>Devices per variant</th><th>Change</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
<p class="muted">{DEVICES_AND_EXPOSURES}</p>
<h2>Results</h2>
{column_key}
{results}
</main>
<script nonce="{nonce}">{SCRIPT}</script>"#,
        nonce = escape(ctx.nonce),
        column_key = results_view::column_key(),
        results = ctx
            .results
            .iter()
            .map(|outcome| results_view::results_section(outcome, &view))
            .collect::<String>(),
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

    // What a new request gets now: the weights only apply while the experiment is
    // active; in rollout everyone gets the rolled-out variant, inactive the fallback.
    let serving = match state.as_str() {
        "rollout" => e["rollout_variant"].as_str(),
        "inactive" => e["fallback"].as_str(),
        _ => None,
    };
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
        // While active, the share of the weights in force (a bandit's or a period's).
        let serves_share = v["share"].as_f64().map_or(weight_share, |s| 100.0 * s);
        let (weight_cell, serves) = match serving {
            None => (
                format!(r#"<td>{weight}</td>"#),
                format!("{serves_share:.0}%"),
            ),
            Some(only) => (
                format!(
                    r#"<td class="off" title="applies when the experiment is active">{weight}</td>"#
                ),
                if v["name"].as_str() == Some(only) {
                    "100%".to_string()
                } else {
                    "0%".to_string()
                },
            ),
        };
        variant_rows.push_str(&format!(
            r#"<tr><td><span class="swatch" style="background:{color}"></span>{name}</td>{weight_cell}<td>{serves}</td><td><code>{upstream}</code></td><td>{assigned}</td><td>{exposed}</td></tr>"#,
            name = s(&v["name"]),
            upstream = if v["upstream"].is_null() { "—".to_string() } else { s(&v["upstream"]) },
            exposed = v["exposed"].as_u64().unwrap_or(0),
        ));
        if total_assigned > 0 {
            let share = 100.0 * assigned as f64 / total_assigned as f64;
            bar.push_str(&format!(
                r#"<span style="width:{share:.2}%;background:{color}" title="{name}: {assigned} devices ({share:.1}%)"></span>"#,
                name = s(&v["name"]),
            ));
        }
    }
    let run_number = e["last_run"]["number"].as_u64();
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
            r#"<div class="muted">{total_assigned} devices in run {}</div><div class="bar">{bar}</div><div class="muted">{}</div>"#,
            run_number.unwrap_or(0),
            shares.join(" · ")
        )
    } else {
        r#"<div class="bar"></div><div class="muted">no devices yet</div>"#.to_string()
    };
    let rolled = match (state.as_str(), serving) {
        ("rollout", Some(v)) => format!(
            r#"<div class="rolled">rolled out: everyone gets <strong>{}</strong></div>"#,
            escape(v)
        ),
        ("inactive", Some(v)) => format!(
            r#"<div class="rolled">stopped: everyone gets <strong>{}</strong> (the fallback)</div>"#,
            escape(v)
        ),
        _ => String::new(),
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
    let bandit = e["bandit"].as_bool() == Some(true);
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
<td><span class="state {state}">{state}</span>{rolled}<div class="muted">{run}</div></td>
<td><table class="variants"><tr><th>variant</th><th>weight</th><th title="share of new requests it gets now">serves now</th><th>upstream</th><th title="devices newly assigned in the last run">devices</th><th title="requests served under the experiment in the last run">exposures</th></tr>{variant_rows}</table></td>
<td>{split}</td>
<td>
{weights_form}
<form class="state" data-key="{key}"><select name="state"{disabled}>{state_options}</select><select name="rollout_variant"{disabled}>{rollout_options}</select><button type="submit"{disabled}>Apply state</button></form>
<p class="error" hidden></p>
</td>
</tr>
"#,
        weights_form = if bandit {
            r#"<p class="muted">weights set by the bandit (the file's are its burn-in weights)</p>"#
                .to_string()
        } else {
            format!(
                r#"<form class="weights" data-key="{key}">{weight_inputs}<button type="submit"{disabled}>Save weights</button></form>"#
            )
        },
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

    #[test]
    fn in_rollout_the_rolled_out_variant_is_shown_not_the_weights() {
        let e = serde_json::json!({
            "key": "k", "title": "t", "state": "rollout",
            "allowed_states": ["active", "rollout"], "routing": true, "fallback": "Moon",
            "rollout_variant": "Mars", "traffic": 100.0, "run": null,
            "last_run": {"number": 1, "started_at": "a", "ended_at": "b"},
            "variants": [{"name": "Moon", "weight": 50, "upstream": "moon", "assigned": 40, "exposed": 90},
                         {"name": "Mars", "weight": 50, "upstream": "mars", "assigned": 60, "exposed": 80}]
        });
        let row = experiment_row(&e, true);
        assert!(row.contains("everyone gets <strong>Mars</strong>"), "{row}");
        assert!(
            row.contains(r#"title="applies when the experiment is active">50</td><td>0%</td>"#),
            "{row}"
        );
        assert!(
            row.contains(r#"title="applies when the experiment is active">50</td><td>100%</td>"#),
            "{row}"
        );
        assert!(
            !row.contains("50%"),
            "the 50/50 weights are not what is served: {row}"
        );
        assert!(row.contains("100 devices in run 1"), "{row}");
        let mut active = e.clone();
        active["state"] = "active".into();
        let row = experiment_row(&active, true);
        assert!(
            row.contains("<td>50</td><td>50%</td>") && !row.contains("everyone gets"),
            "{row}"
        );
        assert!(row.contains(r#"<form class="weights""#));
    }

    #[test]
    fn a_bandit_shows_the_shares_in_force_and_offers_no_weights_form() {
        let e = serde_json::json!({
            "key": "k", "title": "t", "state": "active", "bandit": true,
            "allowed_states": ["inactive", "active", "rollout"], "routing": true,
            "fallback": "A", "rollout_variant": null, "traffic": 100.0,
            "run": {"number": 1, "started_at": "a", "ended_at": null},
            "last_run": {"number": 1, "started_at": "a", "ended_at": null},
            "variants": [{"name": "A", "weight": 1, "share": 0.1, "upstream": "a", "assigned": 40, "exposed": 90},
                         {"name": "B", "weight": 1, "share": 0.9, "upstream": "b", "assigned": 60, "exposed": 80}]
        });
        let row = experiment_row(&e, true);
        assert!(
            row.contains("<td>1</td><td>10%</td>") && row.contains("<td>1</td><td>90%</td>"),
            "{row}"
        );
        assert!(!row.contains(r#"<form class="weights""#), "{row}");
        assert!(row.contains("weights set by the bandit"), "{row}");
        assert!(
            row.contains(r#"<form class="state""#),
            "its state can still change"
        );
    }
}
