//! The source layout's rules, kept true on every test run (the README's "Source layout"
//! and `src/lib.rs` describe them):
//!
//! - the folders under `src/` are layers, and a file imports only from its own layer or
//!   from layers below it;
//! - no import circle between files;
//! - the pure layers (`config`, `experiments`, `stats`) use no tokio, hyper, `std::net`,
//!   `std::fs` and no clock: callers pass time and bytes in.
//!
//! It reads the `crate::…` and `super::…` paths of every file as text, which is all the
//! crate uses to name its own modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first.
const LAYERS: &[&str] = &[
    "util",
    "config",
    "stats",
    "counting",
    "experiments",
    "transport",
    "state",
    "admin",
    "proxy",
    "cli",
    // Top-level files: the fuzzing properties use everything.
    "fuzzing",
];

const PURE: &[&str] = &["config", "experiments", "stats"];

/// What a pure file must not name (in code, not in comments).
const IMPURE: &[&str] = &[
    "tokio",
    "hyper",
    "std::net",
    "std::fs",
    "SystemTime::now",
    "Instant::now",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, as its module path (`proxy::service`, `stats`,
/// `stats::analysis::tests`), with its text.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            if path.is_dir() {
                let mut next = prefix.to_vec();
                next.push(name);
                walk(&path, &next, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut module = prefix.to_vec();
                if name != "mod" && name != "lib" && name != "main" {
                    module.push(name.clone());
                }
                if prefix.is_empty() && (name == "lib" || name == "main") {
                    continue;
                }
                out.insert(module.join("::"), std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&src(), &[], &mut out);
    out
}

/// The code of `text` without comments (line comments and doc comments).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            // A `//` inside a string (a URL) is rare in this crate's code lines; where a
            // line starts with a comment, it is all comment.
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules `module` names: each `crate::a::b…` and `super::x…` path, resolved to the
/// longest known module it starts with.
fn imports(module: &str, text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let code = code(text);
    let mut found = BTreeSet::new();
    let parent: Vec<&str> = {
        let mut parts: Vec<&str> = module.split("::").collect();
        parts.pop();
        parts
    };
    for (start, _) in code
        .match_indices("crate::")
        .chain(code.match_indices("super::"))
    {
        let before = code[..start].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[start..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let mut parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
        if parts.len() < 2 {
            // `use super::*;` in a file's own `mod tests`: the file itself.
            continue;
        }
        let base: Vec<&str> = if parts[0] == "crate" {
            parts.remove(0);
            Vec::new()
        } else {
            // `super::` from a file `a::b` names `a`'s items: siblings of `b`.
            parts.remove(0);
            parent.clone()
        };
        let mut full: Vec<&str> = base.clone();
        full.extend(parts);
        while !full.is_empty() {
            let candidate = full.join("::");
            if known.contains(&candidate) {
                if candidate != module {
                    found.insert(candidate);
                }
                break;
            }
            full.pop();
        }
    }
    found
}

fn layer_of(module: &str) -> usize {
    let top = module.split("::").next().unwrap();
    LAYERS.iter().position(|l| *l == top).unwrap_or_else(|| {
        panic!("src/{top} is in no layer: add it to LAYERS (and to lib.rs's table)")
    })
}

/// A file's unit tests (`x::tests`) are part of it: their imports are its imports.
fn owner(module: &str) -> String {
    module
        .strip_suffix("::tests")
        .or_else(|| module.strip_suffix("::interval_tests"))
        .unwrap_or(module)
        .to_string()
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in &modules {
        let from = owner(module);
        let entry = graph.entry(from.clone()).or_default();
        for to in imports(module, text, &known) {
            let to = owner(&to);
            // A folder's mod.rs declares its files; that is not an import.
            if to != from && !to.starts_with(&format!("{from}::")) {
                entry.insert(to);
            }
        }
    }
    graph
}

#[test]
fn imports_only_go_down_the_layers() {
    let mut upward = Vec::new();
    for (from, tos) in graph() {
        for to in tos {
            if layer_of(&to) > layer_of(&from) {
                upward.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that go up the layers {LAYERS:?}:\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_import_circle_between_files() {
    let graph = graph();
    // Depth-first search; a back edge closes a circle.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
        circles: &mut Vec<String>,
    ) {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                0 => visit(next, graph, state, stack, circles),
                1 => {
                    let at = stack.iter().position(|m| m == next).unwrap();
                    let mut circle = stack[at..].to_vec();
                    circle.push(next.clone());
                    circles.push(circle.join(" -> "));
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
    }
    let (mut state, mut circles) = (BTreeMap::new(), Vec::new());
    for node in graph.keys() {
        if !state.contains_key(node.as_str()) {
            visit(node, &graph, &mut state, &mut Vec::new(), &mut circles);
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn pure_layers_do_no_io_and_read_no_clock() {
    let mut found = Vec::new();
    for (module, text) in modules() {
        if !PURE.contains(&module.split("::").next().unwrap()) {
            continue;
        }
        let code = code(&text);
        for word in IMPURE {
            for (at, _) in code.match_indices(word) {
                let before = code[..at].chars().last();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let line = code[..at].lines().count().max(1);
                found.push(format!("{module} (line {line}): {word}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the pure layers {PURE:?} use I/O or a clock:\n{}",
        found.join("\n")
    );
}

/// The checks above can fail: a made-up upward import and circle are caught.
#[test]
fn the_checks_catch_what_they_look_for() {
    let known: BTreeSet<String> = ["config", "config::names", "proxy", "proxy::service"]
        .into_iter()
        .map(String::from)
        .collect();
    let found = imports(
        "config::names",
        "use crate::proxy::service::plain_response; // crate::admin in a comment\nuse super::Config;",
        &known,
    );
    assert_eq!(
        found,
        ["config", "proxy::service"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    assert!(layer_of("proxy::service") > layer_of("config::names"));
    assert_eq!(code("let a = 1; // tokio"), "let a = 1; ");
}
