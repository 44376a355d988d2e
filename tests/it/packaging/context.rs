//! The build context `.dockerignore` leaves: no build output, data or git history, and
//! everything the Dockerfile copies.

use super::{context_copies, repo_file, root};

/// `.dockerignore` as Docker reads it: one pattern a line (`#` comments), relative to
/// the context's root, `*` and `?` within a path segment, `**` across any number, `!`
/// re-includes; the last matching pattern wins, and a pattern that matches a directory
/// leaves out everything in it.
struct DockerIgnore(Vec<(bool, Vec<String>)>);

impl DockerIgnore {
    fn parse(text: &str) -> DockerIgnore {
        DockerIgnore(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(|l| {
                    let (include, pattern) = match l.strip_prefix('!') {
                        Some(p) => (true, p),
                        None => (false, l),
                    };
                    let segments = pattern
                        .trim_start_matches('/')
                        .trim_end_matches('/')
                        .split('/')
                        .filter(|s| !s.is_empty() && *s != ".")
                        .map(str::to_string)
                        .collect();
                    (include, segments)
                })
                .collect(),
        )
    }

    fn excludes(&self, path: &str) -> bool {
        let segments: Vec<&str> = path.split('/').collect();
        let mut excluded = false;
        for (include, pattern) in &self.0 {
            let hit = (1..=segments.len()).any(|n| matches(pattern, &segments[..n]));
            if hit {
                excluded = !include;
            }
        }
        excluded
    }
}

fn matches(pattern: &[String], path: &[&str]) -> bool {
    match (pattern.first(), path.first()) {
        (None, None) => true,
        (Some(p), _) if p == "**" => {
            matches(&pattern[1..], path) || (!path.is_empty() && matches(pattern, &path[1..]))
        }
        (Some(p), Some(s)) => {
            segment_matches(p.as_bytes(), s.as_bytes()) && matches(&pattern[1..], &path[1..])
        }
        _ => false,
    }
}

fn segment_matches(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            segment_matches(&p[1..], s) || (!s.is_empty() && segment_matches(p, &s[1..]))
        }
        (Some(b'?'), Some(_)) => segment_matches(&p[1..], &s[1..]),
        (Some(a), Some(b)) => a == b && segment_matches(&p[1..], &s[1..]),
        _ => false,
    }
}

/// Every file of the worktree Docker would send as the context (excluded directories
/// are not walked into: the patterns have no `!` that could take something back).
fn context_files(ignore: &DockerIgnore) -> Vec<String> {
    assert!(
        ignore.0.iter().all(|(include, _)| !include),
        "the walk prunes excluded directories"
    );
    let mut files = Vec::new();
    let mut stack = vec![root()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path
                .strip_prefix(root())
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            if ignore.excludes(&relative) {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(relative);
            }
        }
    }
    files
}

#[test]
fn the_dockerignore_matcher_reads_patterns_as_docker_does() {
    let ignore = DockerIgnore::parse("# c\ntarget\n/data/\n**/*.swp\nfuzz/c*\n!fuzz/corpus/keep\n");
    for excluded in [
        "target",
        "target/debug/abproxy",
        "data/secret",
        "a/b/x.swp",
        "fuzz/corpus/x",
    ] {
        assert!(ignore.excludes(excluded), "{excluded}");
    }
    for kept in [
        "src/target.rs",
        "tests/data",
        "x.swpx",
        "fuzz/seeds/a",
        "fuzz/corpus/keep",
    ] {
        assert!(!ignore.excludes(kept), "{kept}");
    }
}

/// The context never carries build output, a data directory (`data/secret` signs every
/// cookie), the git history or cargo-fuzz output; and everything the Dockerfile copies
/// is there, whole.
#[test]
fn the_build_context_leaves_out_target_data_and_git_and_keeps_what_the_build_copies() {
    let ignore = DockerIgnore::parse(&repo_file(".dockerignore"));
    for excluded in [
        "target",
        "target/release/abproxy",
        "data",
        "data/secret",
        "data/counts.log",
        "deploy/data/secret",
        ".git",
        ".git/HEAD",
        "fuzz/target/x",
        "fuzz/artifacts/config/crash-1",
        "fuzz/corpus/config/0a1b",
        "fuzz/coverage/config",
    ] {
        assert!(
            ignore.excludes(excluded),
            "the context must leave out {excluded}"
        );
    }
    let context = context_files(&ignore);
    let leaked: Vec<&String> = context
        .iter()
        .filter(|f| {
            ["target/", "data/", ".git/", "fuzz/target/"]
                .iter()
                .any(|d| f.starts_with(d))
                || *f == ".git"
        })
        .collect();
    assert!(leaked.is_empty(), "in the context: {leaked:?}");
    for (sources, _) in context_copies(&repo_file("Dockerfile")) {
        for source in sources {
            let path = root().join(&source);
            assert!(path.exists(), "COPY {source}: no such file");
            assert!(
                !ignore.excludes(&source),
                "COPY {source}: left out of the context"
            );
            let prefix = format!("{source}/");
            if path.is_dir() {
                let mut files = Vec::new();
                let mut stack = vec![path];
                while let Some(dir) = stack.pop() {
                    for entry in std::fs::read_dir(&dir).unwrap() {
                        let p = entry.unwrap().path();
                        if p.is_dir() {
                            stack.push(p);
                        } else {
                            files.push(
                                p.strip_prefix(root())
                                    .unwrap()
                                    .to_str()
                                    .unwrap()
                                    .to_string(),
                            );
                        }
                    }
                }
                for file in files {
                    assert!(
                        context.contains(&file),
                        "{file} (under COPY {prefix}) is left out of the context"
                    );
                }
            } else {
                assert!(
                    context.contains(&source),
                    "COPY {source}: not in the context"
                );
            }
        }
    }
}
