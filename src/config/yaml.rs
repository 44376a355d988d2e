//! A minimal YAML tree that remembers where every key and value stood.
//!
//! Built from `saphyr-parser` events rather than a serde deserializer because every
//! config error must point at the line and column of the offending *key*
//! (`PATH:LINE:COL: message`), duplicate keys must be refused (a YAML loader would
//! silently keep the last one), and scalars are typed by the field that reads them, not
//! by YAML's guessing (`no` stays a string, `050` is not octal).

use saphyr_parser::{Event, Parser, ScanError};

/// Line and column (both 1-based) in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Every scalar is kept as text; `null`/`~`/empty plain scalars are `Null`.
    Scalar(String),
    Null,
    Seq(Vec<Node>),
    /// Entries in document order; keys are scalars.
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    /// Where a scalar ends (just past its last character, quotes included); for a
    /// collection, its start. Lets `edit` replace a value in place.
    pub end: Pos,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

impl Node {
    /// A short description of the node's kind, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Scalar(_) => "a scalar",
            Value::Null => "nothing (null)",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Parse one YAML document. An empty document is an empty mapping.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut events = Parser::new_from_str(text).map(|item| {
        item.map(|(event, span)| (event, pos_of(span.start), pos_of(span.end)))
            .map_err(scan_error)
    });
    let mut root: Option<Node> = None;
    while let Some(item) = events.next() {
        let (event, pos, end) = item?;
        match event {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::DocumentStart(_) => {
                if root.is_some() {
                    return Err(SyntaxError {
                        pos,
                        message: "only one YAML document is allowed in a config file".into(),
                    });
                }
            }
            Event::StreamEnd => break,
            other => {
                if root.is_some() {
                    return Err(SyntaxError {
                        pos,
                        message: "unexpected content after the document".into(),
                    });
                }
                root = Some(build(other, pos, end, &mut events)?);
            }
        }
    }
    let start = Pos { line: 1, col: 1 };
    Ok(root.unwrap_or(Node {
        pos: start,
        end: start,
        value: Value::Map(Vec::new()),
    }))
}

fn pos_of(marker: saphyr_parser::Marker) -> Pos {
    // saphyr-parser reports 1-based lines and 0-based columns.
    Pos {
        line: marker.line(),
        col: marker.col() + 1,
    }
}

fn scan_error(err: ScanError) -> SyntaxError {
    SyntaxError {
        pos: pos_of(*err.marker()),
        message: format!("YAML syntax error: {}", err.info()),
    }
}

type Events<'a> = dyn Iterator<Item = Result<(Event<'a>, Pos, Pos), SyntaxError>> + 'a;

fn next_event<'a>(events: &mut Events<'a>, at: Pos) -> Result<(Event<'a>, Pos, Pos), SyntaxError> {
    events.next().unwrap_or_else(|| {
        Err(SyntaxError {
            pos: at,
            message: "unexpected end of the file".into(),
        })
    })
}

fn build<'a>(
    event: Event<'a>,
    pos: Pos,
    end: Pos,
    events: &mut Events<'a>,
) -> Result<Node, SyntaxError> {
    let anchors_refused = || SyntaxError {
        pos,
        message:
            "YAML anchors and aliases are not supported in abproxy config; write the value out"
                .into(),
    };
    let value = match event {
        Event::Alias(_) => return Err(anchors_refused()),
        Event::Scalar(text, style, anchor, _tag) => {
            if anchor != 0 {
                return Err(anchors_refused());
            }
            let plain = matches!(style, saphyr_parser::ScalarStyle::Plain);
            if plain && matches!(text.as_ref(), "" | "~" | "null" | "Null" | "NULL") {
                Value::Null
            } else {
                Value::Scalar(text.into_owned())
            }
        }
        Event::SequenceStart(anchor, _) => {
            if anchor != 0 {
                return Err(anchors_refused());
            }
            let mut items = Vec::new();
            loop {
                let (event, item_pos, item_end) = next_event(events, pos)?;
                if matches!(event, Event::SequenceEnd) {
                    break;
                }
                items.push(build(event, item_pos, item_end, events)?);
            }
            Value::Seq(items)
        }
        Event::MappingStart(anchor, _) => {
            if anchor != 0 {
                return Err(anchors_refused());
            }
            let mut entries: Vec<(Key, Node)> = Vec::new();
            loop {
                let (event, key_pos, _) = next_event(events, pos)?;
                let name = match event {
                    Event::MappingEnd => break,
                    Event::Scalar(text, ..) => text.into_owned(),
                    _ => {
                        return Err(SyntaxError {
                            pos: key_pos,
                            message: "mapping keys must be plain text".into(),
                        })
                    }
                };
                if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == name) {
                    return Err(SyntaxError {
                        pos: key_pos,
                        message: format!(
                            "duplicate key `{name}` (first defined at line {})",
                            first.pos.line
                        ),
                    });
                }
                let (event, value_pos, value_end) = next_event(events, key_pos)?;
                let value = build(event, value_pos, value_end, events)?;
                entries.push((Key { name, pos: key_pos }, value));
            }
            Value::Map(entries)
        }
        _ => {
            return Err(SyntaxError {
                pos,
                message: "unexpected YAML structure".into(),
            })
        }
    };
    let end = if matches!(value, Value::Scalar(_) | Value::Null) {
        end
    } else {
        pos
    };
    Ok(Node { pos, end, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(node: &Node) -> &Vec<(Key, Node)> {
        match &node.value {
            Value::Map(m) => m,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn keys_carry_line_and_column() {
        let doc = parse("listen: 1.2.3.4:80\nadmin:\n  listen: x\n").unwrap();
        let top = map(&doc);
        assert_eq!(top[0].0.name, "listen");
        assert_eq!(top[0].0.pos, Pos { line: 1, col: 1 });
        let admin = map(&top[1].1);
        assert_eq!(admin[0].0.pos, Pos { line: 3, col: 3 });
        assert_eq!(admin[0].1.value, Value::Scalar("x".into()));
    }

    #[test]
    fn duplicate_keys_are_refused_at_the_second_one() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.pos, Pos { line: 3, col: 1 });
        assert!(err.message.contains("duplicate key `a`"), "{}", err.message);
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(
            err.message.starts_with("YAML syntax error"),
            "{}",
            err.message
        );
        assert!(err.pos.line >= 1);
    }

    #[test]
    fn null_and_quoted_scalars() {
        let doc = parse("a: ~\nb:\nc: 'null'\nd: no\n").unwrap();
        let m = map(&doc);
        assert_eq!(m[0].1.value, Value::Null);
        assert_eq!(m[1].1.value, Value::Null);
        assert_eq!(m[2].1.value, Value::Scalar("null".into()));
        assert_eq!(m[3].1.value, Value::Scalar("no".into()));
    }

    #[test]
    fn empty_document_is_an_empty_mapping() {
        assert_eq!(parse("").unwrap().value, Value::Map(vec![]));
        assert_eq!(
            parse("# only a comment\n").unwrap().value,
            Value::Map(vec![])
        );
    }

    #[test]
    fn scalars_know_where_they_end() {
        let text = "a: plain\nb: 'quoted'\nc: { w: 50, u: moon }\n";
        let doc = parse(text).unwrap();
        let m = map(&doc);
        let span = |n: &Node| (n.pos, n.end);
        assert_eq!(
            span(&m[0].1),
            (Pos { line: 1, col: 4 }, Pos { line: 1, col: 9 })
        );
        assert_eq!(
            span(&m[1].1),
            (Pos { line: 2, col: 4 }, Pos { line: 2, col: 12 }),
            "quotes included"
        );
        let inner = map(&m[2].1);
        assert_eq!(
            span(&inner[0].1),
            (Pos { line: 3, col: 9 }, Pos { line: 3, col: 11 })
        );
    }

    #[test]
    fn anchors_are_refused() {
        let err = parse("a: &x 1\nb: *x\n").unwrap_err();
        assert!(err.message.contains("anchors"), "{}", err.message);
    }
}
