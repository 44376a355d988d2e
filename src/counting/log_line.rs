//! The counts log's line format: a [`Record`] (a counter's totals at a time, see
//! [`crate::counting::book`]) as one line of text, and the line read back. Each line
//! ends with a CRC-32 of the rest, so a torn or damaged line is detected rather than
//! misread; [`crate::counting::store`] writes and replays the lines.
//!
//! No I/O here: the format is unit-tested on strings.

use crate::counting::book::{GoalKey, GoalTotals, Record, VariantKey, VariantTotals};

/// Why a log line was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("checksum mismatch")]
    Checksum,
    #[error("malformed: {0}")]
    Malformed(&'static str),
}

impl Record {
    /// Append the record as one line:
    ///
    /// ```text
    /// v <unix ms> <experiment> <run> <variant> <assigned> <exposures> <crc32>
    /// g <unix ms> <experiment> <run> <variant> <goal> <conversions> <value sum> <value sum of squares> <crc32>
    /// ```
    ///
    /// where `<run>` is the run's number for the run's counters and `<run>/<period>` for
    /// a period's (so logs written before periods existed read as they always did).
    ///
    /// Names never hold spaces (see `names`); the CRC-32 (8 hex digits) covers the line
    /// before it, so a torn or damaged line is detected rather than misread.
    pub fn encode(&self, out: &mut String) {
        use std::fmt::Write;
        let start = out.len();
        match self {
            Record::Variant { at_ms, key, totals } => {
                let _ = write!(out, "v {at_ms} {} ", key.experiment);
                write_run(out, key);
                let _ = write!(
                    out,
                    " {} {} {}",
                    key.variant, totals.assigned, totals.exposures
                );
            }
            Record::Goal { at_ms, key, totals } => {
                // `{:e}` is the shortest text that parses back to the same f64.
                let _ = write!(out, "g {at_ms} {} ", key.variant.experiment);
                write_run(out, &key.variant);
                let _ = write!(
                    out,
                    " {} {} {} {:e} {:e}",
                    key.variant.variant,
                    key.goal,
                    totals.conversions,
                    totals.value_sum,
                    totals.value_sum_sq
                );
            }
        }
        let crc = crc32fast::hash(&out.as_bytes()[start..]);
        let _ = writeln!(out, " {crc:08x}");
    }

    /// Parse one line (without its newline).
    pub fn parse(line: &str) -> Result<Record, LineError> {
        let (body, crc) = line
            .rsplit_once(' ')
            .ok_or(LineError::Malformed("no checksum"))?;
        let crc = u32::from_str_radix(crc, 16).map_err(|_| LineError::Malformed("checksum"))?;
        if crc32fast::hash(body.as_bytes()) != crc {
            return Err(LineError::Checksum);
        }
        let mut fields = body.split(' ');
        let mut next = |what: &'static str| {
            fields
                .next()
                .filter(|f| !f.is_empty())
                .ok_or(LineError::Malformed(what))
        };
        let kind = next("kind")?;
        let at_ms = number(next("time")?, "time")?;
        let experiment = next("experiment")?.to_string();
        let run_field = next("run")?;
        let (run, period) = match run_field.split_once('/') {
            None => (number(run_field, "run")?, None),
            Some((run, period)) => (number(run, "run")?, Some(number(period, "period")?)),
        };
        let variant = VariantKey {
            experiment,
            run,
            period,
            variant: next("variant")?.to_string(),
        };
        let record = match kind {
            "v" => Record::Variant {
                at_ms,
                key: variant,
                totals: VariantTotals {
                    assigned: number(next("assigned")?, "assigned")?,
                    exposures: number(next("exposures")?, "exposures")?,
                },
            },
            "g" => Record::Goal {
                at_ms,
                key: GoalKey {
                    variant,
                    goal: next("goal")?.to_string(),
                },
                totals: GoalTotals {
                    conversions: number(next("conversions")?, "conversions")?,
                    value_sum: number(next("value sum")?, "value sum")?,
                    value_sum_sq: number(next("value sum of squares")?, "value sum of squares")?,
                },
            },
            _ => return Err(LineError::Malformed("kind")),
        };
        if fields.next().is_some() {
            return Err(LineError::Malformed("trailing fields"));
        }
        Ok(record)
    }
}

/// `<run>` or `<run>/<period>`.
fn write_run(out: &mut String, key: &VariantKey) {
    use std::fmt::Write;
    let _ = write!(out, "{}", key.run);
    if let Some(period) = key.period {
        let _ = write!(out, "/{period}");
    }
}

fn number<N: std::str::FromStr>(text: &str, what: &'static str) -> Result<N, LineError> {
    text.parse().map_err(|_| LineError::Malformed(what))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counting::book::tests::{gkey, vkey};

    fn line(record: &Record) -> String {
        let mut s = String::new();
        record.encode(&mut s);
        s
    }

    #[test]
    fn records_round_trip_through_their_line() {
        let records = [
            Record::Variant {
                at_ms: 1_790_000_000_123,
                key: vkey("Mars"),
                totals: VariantTotals {
                    assigned: 120,
                    exposures: 4_500,
                },
            },
            Record::Goal {
                at_ms: 1_790_000_000_124,
                key: gkey("Mars", "revenue"),
                totals: GoalTotals {
                    conversions: 12,
                    value_sum: 0.1 + 0.2,
                    value_sum_sq: 1e300,
                },
            },
        ];
        let mut in_period = vkey("Mars");
        in_period.period = Some(7);
        let period_records = [
            Record::Variant {
                at_ms: 5,
                key: in_period.clone(),
                totals: VariantTotals {
                    assigned: 3,
                    exposures: 0,
                },
            },
            Record::Goal {
                at_ms: 6,
                key: GoalKey {
                    variant: in_period,
                    goal: "click".into(),
                },
                totals: GoalTotals {
                    conversions: 1,
                    value_sum: 0.0,
                    value_sum_sq: 0.0,
                },
            },
        ];
        assert!(line(&period_records[0]).starts_with("v 5 moon_mars 3/7 Mars 3 0 "));
        assert!(line(&records[0]).starts_with("v 1790000000123 moon_mars 3 Mars "));
        for record in records.into_iter().chain(period_records) {
            let text = line(&record);
            assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
            assert_eq!(Record::parse(text.trim_end()), Ok(record.clone()), "{text}");
        }
    }

    #[test]
    fn a_changed_or_torn_line_is_detected_not_misread() {
        let text = line(&Record::Variant {
            at_ms: 5,
            key: vkey("Mars"),
            totals: VariantTotals {
                assigned: 120,
                exposures: 4_500,
            },
        });
        let text = text.trim_end();
        let changed = text.replacen(" 120 ", " 920 ", 1);
        assert_eq!(Record::parse(&changed), Err(LineError::Checksum));
        for cut in 1..text.len() {
            assert!(
                Record::parse(&text[..cut]).is_err(),
                "a line torn after {cut} bytes parsed: {:?}",
                &text[..cut]
            );
        }
        assert!(matches!(Record::parse(""), Err(LineError::Malformed(_))));
        let unknown_kind = "x 5 moon_mars 3 Mars 1 2";
        let with_crc = format!(
            "{unknown_kind} {:08x}",
            crc32fast::hash(unknown_kind.as_bytes())
        );
        assert_eq!(Record::parse(&with_crc), Err(LineError::Malformed("kind")));
    }
}
