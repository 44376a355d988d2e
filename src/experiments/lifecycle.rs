//! Experiment states over time: which transitions are allowed and what each does to
//! the experiment's runs (`PRODUCT.md`). Pure: the caller supplies the clock.
//!
//! A *run* is one active period. Devices assigned in an earlier run keep their variant
//! but only devices assigned in the current run are counted.

use crate::config::State;

/// What a transition does to the runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunChange {
    /// Nothing to record (inactive→inactive, active→active, rollout→rollout).
    None,
    /// A new run starts (inactive→active, or rollout→active: a restart).
    Start,
    /// The current run ends (active→inactive, active→rollout).
    End,
}

/// A transition that is not in the allowed list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub from: State,
    pub to: State,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hint = match (self.from, self.to) {
            (State::Inactive, State::Rollout) => {
                " (activate it first: there is nothing to roll out)"
            }
            (State::Rollout, State::Inactive) => " (set it active first, or keep rolling out)",
            _ => "",
        };
        write!(
            f,
            "{} → {} is not an allowed transition{hint}",
            self.from.as_str(),
            self.to.as_str()
        )
    }
}

/// The allowed transitions: inactive→inactive, inactive→active, active→inactive,
/// active→active, active→rollout, rollout→rollout, rollout→active.
pub fn transition(from: State, to: State) -> Result<RunChange, Refused> {
    use State::*;
    match (from, to) {
        (Inactive, Inactive) | (Active, Active) | (Rollout, Rollout) => Ok(RunChange::None),
        (Inactive, Active) | (Rollout, Active) => Ok(RunChange::Start),
        (Active, Inactive) | (Active, Rollout) => Ok(RunChange::End),
        (Inactive, Rollout) | (Rollout, Inactive) => Err(Refused { from, to }),
    }
}

/// The states an experiment in `from` may move to (what the admin page offers).
pub fn allowed_targets(from: State) -> Vec<State> {
    [State::Inactive, State::Active, State::Rollout]
        .into_iter()
        .filter(|&to| transition(from, to).is_ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::*;

    #[test]
    fn every_pair_of_states() {
        let table = [
            (Inactive, Inactive, Ok(RunChange::None)),
            (Inactive, Active, Ok(RunChange::Start)),
            (
                Inactive,
                Rollout,
                Err(Refused {
                    from: Inactive,
                    to: Rollout,
                }),
            ),
            (Active, Inactive, Ok(RunChange::End)),
            (Active, Active, Ok(RunChange::None)),
            (Active, Rollout, Ok(RunChange::End)),
            (
                Rollout,
                Inactive,
                Err(Refused {
                    from: Rollout,
                    to: Inactive,
                }),
            ),
            (Rollout, Active, Ok(RunChange::Start)),
            (Rollout, Rollout, Ok(RunChange::None)),
        ];
        for (from, to, expected) in table {
            assert_eq!(transition(from, to), expected, "{from:?} → {to:?}");
        }
    }

    #[test]
    fn offered_targets_are_the_allowed_ones() {
        assert_eq!(allowed_targets(Inactive), vec![Inactive, Active]);
        assert_eq!(allowed_targets(Active), vec![Inactive, Active, Rollout]);
        assert_eq!(allowed_targets(Rollout), vec![Active, Rollout]);
    }

    #[test]
    fn refusals_explain_themselves() {
        let msg = transition(Inactive, Rollout).unwrap_err().to_string();
        assert_eq!(msg, "inactive → rollout is not an allowed transition (activate it first: there is nothing to roll out)");
    }
}
