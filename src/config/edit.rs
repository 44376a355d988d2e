//! Changing an experiment's state, weights or rollout variant in the config *text*.
//!
//! The admin API writes the YAML file so that it stays the one source of truth. Only the
//! changed values are replaced, in place; comments, order, quoting style and layout of
//! everything else are kept byte for byte. (Re-serialising the parsed config would drop
//! every comment.) The result is validated by the caller like any other config.

use super::yaml::{self, Key, Node, Pos, Value};
use super::State;

/// The fields an API call may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    pub state: Option<State>,
    /// (variant, new weight)
    pub weights: Vec<(String, u32)>,
    pub rollout_variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("the config file does not parse: {0}")]
    Syntax(String),
    #[error("no experiment `{0}`")]
    UnknownExperiment(String),
    #[error("experiment `{experiment}` has no variant `{variant}`")]
    UnknownVariant { experiment: String, variant: String },
    #[error("{0}")]
    Unsupported(String),
}

/// The text with `change` applied to experiment `key`.
pub fn apply(text: &str, key: &str, change: &Change) -> Result<String, EditError> {
    let root = yaml::parse(text)
        .map_err(|e| EditError::Syntax(format!("{}:{}: {}", e.pos.line, e.pos.col, e.message)))?;
    let experiment = entry(&root, "experiments")
        .and_then(|(_, experiments)| entry(experiments, key))
        .map(|(_, e)| e)
        .ok_or_else(|| EditError::UnknownExperiment(key.to_string()))?;
    let lines = LineIndex::new(text);
    let mut edits: Vec<(usize, usize, String)> = Vec::new();

    if let Some(state) = change.state {
        let (_, value) = entry(experiment, "state")
            .ok_or_else(|| EditError::Unsupported(format!("experiment `{key}` has no state")))?;
        edits.push((
            lines.offset(value.pos),
            lines.offset(value.end),
            state.as_str().to_string(),
        ));
    }
    if !change.weights.is_empty() {
        let (_, variants) = entry(experiment, "variants")
            .ok_or_else(|| EditError::Unsupported(format!("experiment `{key}` has no variants")))?;
        for (name, weight) in &change.weights {
            let (_, variant) = entry(variants, name).ok_or_else(|| EditError::UnknownVariant {
                experiment: key.to_string(),
                variant: name.clone(),
            })?;
            let (_, value) = entry(variant, "weight").ok_or_else(|| {
                EditError::Unsupported(format!("variant `{name}` has no weight to change"))
            })?;
            edits.push((
                lines.offset(value.pos),
                lines.offset(value.end),
                weight.to_string(),
            ));
        }
    }
    if let Some(variant) = &change.rollout_variant {
        // Only an existing variant's name: validated text is all that may reach the file
        // (a name with a newline would write any key it liked).
        let (_, variants) = entry(experiment, "variants")
            .ok_or_else(|| EditError::Unsupported(format!("experiment `{key}` has no variants")))?;
        if crate::config::names::check_name(variant, crate::config::names::NameKind::Variant)
            .is_err()
            || entry(variants, variant).is_none()
        {
            return Err(EditError::UnknownVariant {
                experiment: key.to_string(),
                variant: variant.clone(),
            });
        }
        let value = scalar_text(variant);
        match entry(experiment, "rollout_variant") {
            Some((_, node)) => edits.push((lines.offset(node.pos), lines.offset(node.end), value)),
            None => {
                // Add `rollout_variant:` on its own line after `state:`, indented alike.
                let (state_key, state_value) = entry(experiment, "state").ok_or_else(|| {
                    EditError::Unsupported(format!("experiment `{key}` has no state"))
                })?;
                let line = lines.line(state_key.pos.line);
                let indent = &line[..line.len() - line.trim_start().len()];
                if indent.chars().count() + 1 != state_key.pos.col {
                    return Err(EditError::Unsupported(format!(
                        "experiment `{key}` is written in flow style ({{ … }}); add `rollout_variant` to the file by hand"
                    )));
                }
                let at = lines.line_end(state_value.end.line.max(state_key.pos.line));
                let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
                edits.push((at, at, format!("{newline}{indent}rollout_variant: {value}")));
            }
        }
    }
    // Apply back to front so earlier offsets stay valid.
    edits.sort_by_key(|(start, _, _)| std::cmp::Reverse(*start));
    let mut out = text.to_string();
    for (start, end, replacement) in edits {
        out.replace_range(start..end, &replacement);
    }
    Ok(out)
}

fn entry<'a>(node: &'a Node, name: &str) -> Option<(&'a Key, &'a Node)> {
    match &node.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(k, v)| (k, v)),
        _ => None,
    }
}

/// A name as a YAML scalar: plain, unless plain would read as null.
fn scalar_text(name: &str) -> String {
    if matches!(name, "null" | "Null" | "NULL") {
        format!("'{name}'")
    } else {
        name.to_string()
    }
}

/// Byte offsets of lines, to turn a (line, column-in-characters) into a byte offset.
struct LineIndex<'t> {
    text: &'t str,
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    fn new(text: &'t str) -> LineIndex<'t> {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    fn line(&self, line: usize) -> &'t str {
        let start = self.starts[line - 1];
        let end = self
            .starts
            .get(line)
            .map_or(self.text.len(), |next| next - 1);
        self.text[start..end].trim_end_matches('\r')
    }

    fn line_end(&self, line: usize) -> usize {
        self.starts[line - 1] + self.line(line).len()
    }

    fn offset(&self, pos: Pos) -> usize {
        let start = self.starts[pos.line - 1];
        let rest = &self.text[start..];
        start
            + rest
                .char_indices()
                .nth(pos.col - 1)
                .map_or(rest.len(), |(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# Our experiments (this comment stays)
upstreams:
  moon: http://127.0.0.1:9001   # the Moon app
  mars: http://127.0.0.1:9002
experiments:
  moon_mars:
    title: \"Moon/Mars — the big one\"
    state: active        # flipped by the admin page
    variants:
      Moon: { weight: 50, upstream: moon }   # control
      Mars:
        weight: 50
        upstream: mars
    fallback: Moon
  flow: { state: active, variants: { A: { weight: 1 } }, fallback: A }
";

    #[test]
    fn only_the_changed_values_change() {
        let change = Change {
            state: Some(State::Rollout),
            weights: vec![("Moon".into(), 10), ("Mars".into(), 90)],
            rollout_variant: Some("Mars".into()),
        };
        let out = apply(TEXT, "moon_mars", &change).unwrap();
        let expected = TEXT
            .replace(
                "    state: active        # flipped",
                "    state: rollout        # flipped",
            )
            .replace(
                "# flipped by the admin page\n",
                "# flipped by the admin page\n    rollout_variant: Mars\n",
            )
            .replace(
                "{ weight: 50, upstream: moon }",
                "{ weight: 10, upstream: moon }",
            )
            .replace("        weight: 50\n", "        weight: 90\n");
        assert_eq!(out, expected);
        // And the result is a valid config with the new values.
        let config = crate::config::Config::from_str(&out, std::path::Path::new("t.yaml")).unwrap();
        let e = &config.experiments[0];
        assert_eq!(
            (e.state, e.rollout_variant.as_deref()),
            (State::Rollout, Some("Mars"))
        );
        assert_eq!(
            e.variants.iter().map(|v| v.weight).collect::<Vec<_>>(),
            vec![10, 90]
        );
    }

    #[test]
    fn an_existing_rollout_variant_is_replaced_in_place() {
        let text = TEXT.replace(
            "    fallback: Moon\n",
            "    fallback: Moon\n    rollout_variant: 'Moon'\n",
        );
        let out = apply(
            &text,
            "moon_mars",
            &Change {
                rollout_variant: Some("Mars".into()),
                ..Change::default()
            },
        )
        .unwrap();
        assert_eq!(
            out,
            text.replace("rollout_variant: 'Moon'", "rollout_variant: Mars")
        );
    }

    #[test]
    fn flow_style_mappings_are_edited_in_place_too() {
        let out = apply(
            TEXT,
            "flow",
            &Change {
                state: Some(State::Inactive),
                weights: vec![("A".into(), 7)],
                ..Change::default()
            },
        )
        .unwrap();
        assert_eq!(
            out,
            TEXT.replace(
                "{ state: active, variants: { A: { weight: 1 } }",
                "{ state: inactive, variants: { A: { weight: 7 } }"
            )
        );
        let err = apply(
            TEXT,
            "flow",
            &Change {
                rollout_variant: Some("A".into()),
                ..Change::default()
            },
        )
        .unwrap_err();
        assert!(matches!(err, EditError::Unsupported(m) if m.contains("flow style")));
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(
            apply(TEXT, "nope", &Change::default()),
            Err(EditError::UnknownExperiment("nope".into()))
        );
        assert_eq!(
            apply(
                TEXT,
                "moon_mars",
                &Change {
                    weights: vec![("Venus".into(), 1)],
                    ..Change::default()
                }
            ),
            Err(EditError::UnknownVariant {
                experiment: "moon_mars".into(),
                variant: "Venus".into()
            })
        );
        assert!(matches!(
            apply("a: [", "x", &Change::default()),
            Err(EditError::Syntax(_))
        ));
    }

    #[test]
    fn rollout_variant_must_be_an_existing_name() {
        for bad in ["Mars\n    traffic: 1", "A, match: {host: x}", "Venus", ""] {
            let err = apply(
                TEXT,
                "moon_mars",
                &Change {
                    rollout_variant: Some(bad.into()),
                    ..Change::default()
                },
            )
            .unwrap_err();
            assert!(
                matches!(err, EditError::UnknownVariant { .. }),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn crlf_files_keep_their_line_endings() {
        let text = TEXT.replace('\n', "\r\n");
        let out = apply(
            &text,
            "moon_mars",
            &Change {
                rollout_variant: Some("Mars".into()),
                ..Change::default()
            },
        )
        .unwrap();
        assert!(
            out.contains("# flipped by the admin page\r\n    rollout_variant: Mars\r\n"),
            "{out:?}"
        );
        assert!(!out.replace("\r\n", "").contains('\n'), "no bare LF");
    }

    /// An admin state change (and the `rollout_variant` line it may add) leaves a
    /// `bandit:` block as it was, comments included, in block or flow style.
    #[test]
    fn a_bandit_block_is_kept_through_a_state_change() {
        let text = "upstreams:
  a: http://127.0.0.1:9001
experiments:
  headline:
    state: active   # the page flips this
    variants:
      A: { weight: 1 }
      B: { weight: 1 }
    fallback: A
    goals:
      click: { event: button_click }
    bandit:            # the weights above are the burn-in weights
      algorithm: epsilon_greedy
      goal: click      # the reward
      epsilon: 0.2
      update_every: 1h
      min_share: 5%
  flow:
    bandit: { algorithm: ucb1, goal: go, burn_in: 0 }
    state: active
    variants: { A: { weight: 1 }, B: { weight: 1 } }
    fallback: A
    goals: { go: { event: go } }
";
        let path = std::path::Path::new("t.yaml");
        let before = crate::config::Config::from_str(text, path).unwrap();
        let bandits = |c: &crate::config::Config| -> Vec<_> {
            c.experiments
                .iter()
                .map(|e| {
                    let mut b = e.bandit.clone().expect("a bandit");
                    b.pos = Pos::default(); // moves down a line with `rollout_variant`
                    b
                })
                .collect()
        };
        let out = apply(
            text,
            "headline",
            &Change {
                state: Some(State::Rollout),
                rollout_variant: Some("B".into()),
                ..Change::default()
            },
        )
        .unwrap();
        let out = apply(
            &out,
            "flow",
            &Change {
                state: Some(State::Inactive),
                ..Change::default()
            },
        )
        .unwrap();
        assert_eq!(
            out,
            text.replace(
                "    state: active   # the page flips this\n",
                "    state: rollout   # the page flips this\n    rollout_variant: B\n"
            )
            .replace("    state: active\n", "    state: inactive\n")
        );
        let after = crate::config::Config::from_str(&out, path).unwrap();
        assert_eq!(bandits(&after), bandits(&before));
        assert_eq!(
            (after.experiments[0].state, after.experiments[1].state),
            (State::Rollout, State::Inactive)
        );
    }

    #[test]
    fn no_change_is_the_same_text() {
        assert_eq!(apply(TEXT, "moon_mars", &Change::default()).unwrap(), TEXT);
    }
}
