//! The Docker image and compose.yaml, checked without a Docker engine: the build copies
//! every file the manifest needs and nothing the context leaves out; the runtime image
//! trusts the system CAs, probes its own health, and lets its user write the data and
//! config directories; compose's replicas, backends and Prometheus fit the config they
//! run (checked by the real binary); and `abproxy healthcheck` against real sockets.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use abproxy::config::yaml::{self, Node, Value};

use crate::support::binary::{self, check, ProxyProcess};
use crate::support::require_tools;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ---- the Dockerfile ----

/// The instructions of a Dockerfile, (KEYWORD, arguments), continuation lines joined and
/// comments left out, with the index of the build stage (`FROM`) each belongs to.
fn instructions(dockerfile: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut stage = 0;
    let mut pending = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                pending.push_str(part);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                let text = std::mem::take(&mut pending);
                let (keyword, args) = text.split_once(' ').unwrap_or((&text, ""));
                let keyword = keyword.to_ascii_uppercase();
                if keyword == "FROM" {
                    stage += 1;
                }
                out.push((stage, keyword, args.trim().to_string()));
            }
        }
    }
    out
}

/// What each `COPY` from the build context copies: (sources, destination). `COPY
/// --from=…` copies from another stage and is left out; other flags are skipped.
fn context_copies(dockerfile: &str) -> Vec<(Vec<String>, String)> {
    instructions(dockerfile)
        .into_iter()
        .filter(|(_, k, args)| k == "COPY" && !args.contains("--from="))
        .map(|(_, _, args)| {
            let mut words: Vec<String> = args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .map(str::to_string)
                .collect();
            let destination = words.pop().expect("COPY has a destination");
            (words, destination)
        })
        .collect()
}

/// The instructions of the last stage: the image that ships.
fn runtime_stage(dockerfile: &str) -> Vec<(String, String)> {
    let all = instructions(dockerfile);
    let last = all.iter().map(|(s, _, _)| *s).max().unwrap();
    all.into_iter()
        .filter(|(s, _, _)| *s == last)
        .map(|(_, k, a)| (k, a))
        .collect()
}

fn one<'a>(stage: &'a [(String, String)], keyword: &str) -> &'a str {
    let found: Vec<&str> = stage
        .iter()
        .filter(|(k, _)| k == keyword)
        .map(|(_, a)| a.as_str())
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {keyword} in the runtime stage: {found:?}"
    );
    found[0]
}

/// `cargo build` in the image fails to load the manifest if a declared target's file
/// was not copied in (a `[[bench]]` without `benches/` did exactly that once).
#[test]
fn the_image_build_copies_every_directory_the_manifest_names() {
    let dockerfile = repo_file("Dockerfile");
    let copied: BTreeSet<String> = context_copies(&dockerfile)
        .into_iter()
        .flat_map(|(sources, _)| sources)
        .collect();
    let manifest = repo_file("Cargo.toml");
    let mut needed = BTreeSet::from(["Cargo.toml", "Cargo.lock", "src"]);
    let mut section = "";
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if let Some(value) = line.strip_prefix("path = ") {
            let dir = value.trim_matches('"').split('/').next().unwrap();
            needed.insert(dir);
        } else if section == "[[bench]]" && line.starts_with("name = ") {
            needed.insert("benches");
        }
    }
    for dir in &needed {
        assert!(
            copied.contains(*dir),
            "the Dockerfile does not COPY {dir} (copies {copied:?})"
        );
    }
}

/// The data directory and the config's directory are the image user's (uid 10001): the
/// proxy writes its counts there, and the admin page's Save writes a temporary file next
/// to the config and renames it.
#[test]
fn the_baked_in_config_is_valid_and_its_data_dir_belongs_to_the_image_user() {
    let path = root().join("config/docker.yaml");
    let (code, out) = check(&path);
    assert_eq!(code, 0, "{out}");
    let config = yaml_file("config/docker.yaml");
    let data_dir = scalar(
        get(&config, "data_dir")
            .expect("docker.yaml sets data_dir (the default ./data is not writable in the image)"),
    );
    let dockerfile = repo_file("Dockerfile");
    let stage = runtime_stage(&dockerfile);
    let user = one(&stage, "USER");
    let run = stage
        .iter()
        .filter(|(k, _)| k == "RUN")
        .map(|(_, a)| a.as_str())
        .collect::<Vec<_>>()
        .join(" && ");
    assert!(
        run.contains("--uid 10001 --gid 10001") && run.contains(&format!(" {user} ")),
        "the image's user {user} is uid 10001: {run}"
    );
    let chown: Vec<&str> = run
        .split("&&")
        .map(str::trim)
        .find_map(|c| c.strip_prefix("chown "))
        .expect("the runtime stage chowns its directories")
        .split_whitespace()
        .collect();
    let owner = chown[0].split(':').next().unwrap();
    assert_eq!(owner, user, "the directories belong to the image's user");
    let (_, destination) = context_copies(&dockerfile)
        .into_iter()
        .find(|(sources, _)| sources == &["config/docker.yaml"])
        .expect("the image bakes in config/docker.yaml");
    let config_dir = Path::new(&destination).parent().unwrap().to_str().unwrap();
    for dir in [data_dir, config_dir] {
        assert!(
            chown[1..].contains(&dir),
            "the image must give {dir} to {user}: {chown:?}"
        );
    }
    assert_eq!(one(&stage, "VOLUME"), data_dir);
}

/// https:// upstreams without a `ca_file` are verified against the system's CAs, which
/// the slim base image does not have; and the image says how to tell it is healthy:
/// `abproxy healthcheck` on the admin listener's /healthz, within Docker's own timeout.
#[test]
fn the_runtime_image_trusts_the_system_cas_and_probes_its_own_health() {
    let dockerfile = repo_file("Dockerfile");
    let stage = runtime_stage(&dockerfile);
    assert!(
        stage.iter().any(|(k, a)| k == "RUN"
            && a.contains("apt-get install")
            && a.split_whitespace().any(|w| w == "ca-certificates")),
        "the runtime stage installs ca-certificates"
    );
    let healthcheck = one(&stage, "HEALTHCHECK");
    let (options, command) = healthcheck
        .split_once(" CMD ")
        .expect("HEALTHCHECK … CMD [...]");
    let command: Vec<String> =
        serde_json::from_str(command.trim()).expect("CMD in exec form (no shell in the probe)");
    let entrypoint: Vec<String> = serde_json::from_str(one(&stage, "ENTRYPOINT")).unwrap();
    assert_eq!(command[0], entrypoint[0], "the image's own binary probes");
    assert_eq!(command[1], "healthcheck");
    let flag = |name: &str| {
        let at = command
            .iter()
            .position(|w| w == name)
            .unwrap_or_else(|| panic!("{name} in {command:?}"));
        command[at + 1].clone()
    };
    let config = yaml_file("config/docker.yaml");
    let admin = scalar(get(get(&config, "admin").unwrap(), "listen").unwrap());
    let port = admin.rsplit(':').next().unwrap();
    assert_eq!(flag("--url"), format!("http://127.0.0.1:{port}/healthz"));
    // Docker kills a probe that outlives --timeout and records no output: the probe's
    // own deadline must come first, so its message is what `docker inspect` shows.
    let docker_timeout = options
        .split_whitespace()
        .find_map(|o| o.strip_prefix("--timeout="))
        .expect("HEALTHCHECK --timeout=…");
    let docker_timeout = humantime::parse_duration(docker_timeout).unwrap();
    let probe_timeout = humantime::parse_duration(&flag("--timeout")).unwrap();
    assert!(
        probe_timeout < docker_timeout,
        "{probe_timeout:?} < {docker_timeout:?}"
    );
}

/// One `docker run` of the Dockerfile's comment: its options and what runs in it.
#[derive(Debug, Default)]
struct DockerRun {
    name: String,
    network: String,
    published: Vec<String>,
    volumes: Vec<String>,
    env: Vec<String>,
    healthcheck: bool,
    image: String,
    args: Vec<String>,
}

fn documented_runs(dockerfile: &str) -> Vec<DockerRun> {
    let mut text = String::new();
    for line in dockerfile.lines().take_while(|l| l.starts_with('#')) {
        let line = line.trim_start_matches('#').trim();
        match line.strip_suffix('\\') {
            Some(part) => text.push_str(part),
            None => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("docker run "))
        .filter(|l| !l.contains("..."))
        .map(|l| {
            let mut run = DockerRun {
                healthcheck: true,
                ..Default::default()
            };
            let mut words = l.split_whitespace();
            while let Some(word) = words.next() {
                let mut value = || words.next().unwrap().to_string();
                match word {
                    "--name" => run.name = value(),
                    "--network" => run.network = value(),
                    "-p" => run.published.push(value()),
                    "-v" => run.volumes.push(value()),
                    "-e" => run.env.push(value()),
                    "--no-healthcheck" => run.healthcheck = false,
                    "-d" | "--rm" => {}
                    flag if flag.starts_with('-') => panic!("unexpected option {flag} in {l}"),
                    image => {
                        run.image = image.to_string();
                        run.args = words.by_ref().map(str::to_string).collect();
                    }
                }
            }
            run
        })
        .collect()
}

/// The `docker run` lines the Dockerfile documents work with the baked-in config: one
/// network, a backend container named and listening as each upstream says, the proxy
/// publishing the ports it listens on (0.0.0.0 inside), its data directory on a named
/// volume (filled from the image, so owned by its user), and a token so Save works.
#[test]
fn the_documented_docker_run_fits_the_baked_in_config() {
    let runs = documented_runs(&repo_file("Dockerfile"));
    assert!(runs.len() >= 3, "{runs:?}");
    let config = yaml_file("config/docker.yaml");
    let proxy = runs
        .iter()
        .find(|r| r.args.is_empty())
        .expect("a run of the image's CMD (serve)");
    for run in &runs {
        assert_eq!(
            run.network, proxy.network,
            "{} on the proxy's network",
            run.name
        );
        assert_eq!(
            run.image, "abproxy",
            "the image `docker build -t abproxy .` makes"
        );
    }
    for (upstream, url) in entries(get(&config, "upstreams").unwrap()) {
        let authority = scalar(url).strip_prefix("http://").unwrap();
        let (host, port) = authority.split_once(':').unwrap();
        let backend = runs
            .iter()
            .find(|r| r.name == host)
            .unwrap_or_else(|| panic!("upstream {upstream}: no container named {host}"));
        assert_eq!(backend.args[0], "backend");
        let listen = &backend.args[backend.args.iter().position(|a| a == "--listen").unwrap() + 1];
        assert_eq!(listen, &format!("0.0.0.0:{port}"), "upstream {upstream}");
        assert!(
            !backend.healthcheck,
            "a backend has no admin listener to probe"
        );
    }
    for listen in [
        scalar(get(&config, "listen").unwrap()),
        scalar(get(get(&config, "admin").unwrap(), "listen").unwrap()),
    ] {
        let (ip, port) = listen.rsplit_once(':').unwrap();
        assert_eq!(
            ip, "0.0.0.0",
            "a published port reaches only a non-loopback listener"
        );
        assert!(
            proxy
                .published
                .iter()
                .any(|p| p.ends_with(&format!(":{port}"))),
            "{port} published: {:?}",
            proxy.published
        );
    }
    let data_dir = scalar(get(&config, "data_dir").unwrap());
    let data = proxy
        .volumes
        .iter()
        .find(|v| v.ends_with(&format!(":{data_dir}")))
        .expect("the data directory on a volume");
    assert!(
        !data.starts_with('.') && !data.starts_with('/') && !data.starts_with('$'),
        "a named volume: {data}"
    );
    let token = proxy
        .env
        .iter()
        .find_map(|e| e.strip_prefix("ABPROXY_ADMIN_TOKEN="))
        .expect("an admin token, or the admin page cannot save");
    assert!(token.len() >= 16, "{token}");
}

// ---- the build context ----

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

// ---- compose.yaml and Prometheus ----

fn yaml_file(path: &str) -> Node {
    yaml::parse(&repo_file(path)).unwrap_or_else(|e| panic!("{path}: {e:?}"))
}

fn get<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    match &node.value {
        Value::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
        _ => None,
    }
}

fn scalar(node: &Node) -> &str {
    match &node.value {
        Value::Scalar(s) => s,
        other => panic!("not a scalar at {:?}: {other:?}", node.pos),
    }
}

fn seq(node: &Node) -> Vec<&str> {
    match &node.value {
        Value::Seq(items) => items.iter().map(scalar).collect(),
        other => panic!("not a list at {:?}: {other:?}", node.pos),
    }
}

fn entries(node: &Node) -> Vec<(&str, &Node)> {
    match &node.value {
        Value::Map(entries) => entries.iter().map(|(k, v)| (k.name.as_str(), v)).collect(),
        other => panic!("not a mapping at {:?}: {other:?}", node.pos),
    }
}

/// `${NAME:-default}` as compose reads it with NAME unset.
fn interpolated(text: &str) -> String {
    match text.strip_prefix("${").and_then(|t| t.strip_suffix('}')) {
        Some(inner) => inner.split_once(":-").map_or("", |(_, d)| d).to_string(),
        None => text.to_string(),
    }
}

/// The repo file a path inside a compose service's container holds: through a bind
/// mount (`./dir:/target`), or through a named volume that Docker fills from the
/// image (the Dockerfile's COPY to that path).
fn file_behind(service: &Node, container_path: &str) -> (PathBuf, bool) {
    let volumes = get(service, "volumes").map(seq).unwrap_or_default();
    for volume in volumes {
        let parts: Vec<&str> = volume.split(':').collect();
        let (source, target) = (parts[0], parts[1]);
        let writable = parts.get(2) != Some(&"ro");
        let Some(rest) = container_path
            .strip_prefix(target)
            .filter(|r| r.is_empty() || r.starts_with('/'))
        else {
            continue;
        };
        if source.starts_with('.') {
            let mut file = root().join(source);
            if !rest.is_empty() {
                file.push(rest.trim_start_matches('/'));
            }
            return (file, writable);
        }
        let (sources, _) = context_copies(&repo_file("Dockerfile"))
            .into_iter()
            .find(|(_, destination)| destination == container_path)
            .unwrap_or_else(|| {
                panic!("volume {source} holds {container_path}, which the image does not")
            });
        return (root().join(&sources[0]), writable);
    }
    let (sources, _) = context_copies(&repo_file("Dockerfile"))
        .into_iter()
        .find(|(_, destination)| destination == container_path)
        .unwrap_or_else(|| panic!("nothing in the image or a volume holds {container_path}"));
    (root().join(&sources[0]), false)
}

/// compose.yaml: at least two abproxy replicas on a config `abproxy check` accepts (the
/// real binary, on the very file they run), each with its own data volume and one shared
/// secret, the config's directory writable (the admin page's Save); a built-in backend
/// listening where each upstream of that config points; and Prometheus scraping every
/// replica's admin listener, on a config `promtool` accepts.
#[test]
fn compose_runs_replicas_backends_and_prometheus_that_fit_the_config() {
    let compose = yaml_file("compose.yaml");
    let services = entries(get(&compose, "services").expect("compose.yaml has services"));
    fn command(service: &Node) -> Vec<&str> {
        get(service, "command").map(seq).unwrap_or_default()
    }
    let replicas: Vec<(&str, &Node)> = services
        .iter()
        .filter(|(_, s)| command(s).first() == Some(&"serve"))
        .copied()
        .collect();
    assert!(replicas.len() >= 2, "two replicas or more");

    let mut config_files = BTreeSet::new();
    let mut data_volumes = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for (name, service) in &replicas {
        assert_eq!(
            get(service, "build").map(scalar),
            Some("."),
            "{name} is built from this repo"
        );
        let args = command(service);
        let config_path = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
        let (file, writable) = file_behind(service, config_path);
        let (code, out) = check(&file);
        assert_eq!(code, 0, "{name} runs {}: {out}", file.display());
        assert!(
            writable,
            "{name}: the config's directory is mounted writable (Save)"
        );
        config_files.insert(file);
        let config =
            yaml::parse(&std::fs::read_to_string(config_files.last().unwrap()).unwrap()).unwrap();
        let data_dir = scalar(get(&config, "data_dir").unwrap()).to_string();
        let data = get(service, "volumes")
            .map(seq)
            .unwrap_or_default()
            .into_iter()
            .find(|v| v.split(':').nth(1) == Some(data_dir.as_str()))
            .unwrap_or_else(|| panic!("{name} keeps {data_dir} in a volume"));
        data_volumes.insert(data.split(':').next().unwrap().to_string());
        let environment = get(service, "environment").expect("environment");
        let secret = interpolated(scalar(
            get(environment, "ABPROXY_SECRET").expect("ABPROXY_SECRET"),
        ));
        assert!(
            secret.len() >= 16,
            "{name}: ABPROXY_SECRET of 16 bytes or more"
        );
        secrets.insert(secret);
        let token = interpolated(scalar(
            get(environment, "ABPROXY_ADMIN_TOKEN").expect("a token, so Save is allowed"),
        ));
        assert!(
            token.len() >= 16,
            "{name}: ABPROXY_ADMIN_TOKEN of 16 characters or more"
        );
    }
    assert_eq!(
        config_files.len(),
        1,
        "the replicas run one config: {config_files:?}"
    );
    assert_eq!(
        data_volumes.len(),
        replicas.len(),
        "one data volume per replica: {data_volumes:?}"
    );
    assert_eq!(
        secrets.len(),
        1,
        "one secret, so cookies hold across replicas"
    );

    let config =
        yaml::parse(&std::fs::read_to_string(config_files.first().unwrap()).unwrap()).unwrap();
    let backends: BTreeMap<&str, String> = services
        .iter()
        .filter(|(_, s)| command(s).first() == Some(&"backend"))
        .map(|(name, s)| {
            let args = command(s);
            let listen = args[args.iter().position(|a| *a == "--listen").unwrap() + 1];
            assert!(
                listen.starts_with("0.0.0.0:"),
                "{name} listens beyond its loopback: {listen}"
            );
            (*name, listen.rsplit(':').next().unwrap().to_string())
        })
        .collect();
    let upstreams = entries(get(&config, "upstreams").unwrap());
    assert!(upstreams.len() >= 2);
    for (upstream, url) in upstreams {
        let authority = scalar(url)
            .strip_prefix("http://")
            .unwrap()
            .trim_end_matches('/');
        let (host, port) = authority.split_once(':').unwrap();
        assert_eq!(
            backends.get(host),
            Some(&port.to_string()),
            "upstream {upstream} ({authority}) is a compose service listening there: {backends:?}"
        );
    }

    let admin_port = scalar(get(get(&config, "admin").unwrap(), "listen").unwrap())
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let (_, prometheus) = services
        .iter()
        .find(|(_, s)| get(s, "image").is_some_and(|i| scalar(i).starts_with("prom/prometheus:")))
        .expect("a Prometheus service");
    let (prometheus_yml, _) = file_behind(prometheus, "/etc/prometheus/prometheus.yml");
    let scrape = yaml::parse(&std::fs::read_to_string(&prometheus_yml).unwrap()).unwrap();
    let mut targets = BTreeSet::new();
    let Value::Seq(jobs) = &get(&scrape, "scrape_configs").unwrap().value else {
        panic!("scrape_configs is a list")
    };
    for job in jobs {
        let path = get(job, "metrics_path").map_or("/metrics", scalar);
        assert_eq!(path, "/metrics");
        let Value::Seq(statics) = &get(job, "static_configs").unwrap().value else {
            panic!("static_configs is a list")
        };
        for s in statics {
            targets.extend(
                seq(get(s, "targets").unwrap())
                    .into_iter()
                    .map(str::to_string),
            );
        }
    }
    let expected: BTreeSet<String> = replicas
        .iter()
        .map(|(n, _)| format!("{n}:{admin_port}"))
        .collect();
    assert_eq!(
        targets, expected,
        "Prometheus scrapes every replica's admin listener"
    );

    if require_tools(&["/usr/bin/promtool"], "apt-get install prometheus") {
        let out = std::process::Command::new("/usr/bin/promtool")
            .args(["check", "config"])
            .arg(&prometheus_yml)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---- abproxy healthcheck ----

fn healthcheck(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(binary::BIN)
        .arg("healthcheck")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The image's probe, against real sockets: 0 for a serving admin listener's /healthz;
/// 1, naming the URL, for a 404, a listener that never answers, and a proxy that is gone.
#[test]
fn healthcheck_passes_on_a_serving_admin_listener_and_fails_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("abproxy.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\ndata_dir: {}\nupstreams:\n  app: http://127.0.0.1:9\ndefault_upstream: app\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut proxy = ProxyProcess::serve(&config);
    let healthz = format!("http://{}/healthz", proxy.admin);
    let (code, out, err) = healthcheck(&["--url", &healthz]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("{healthz}: 200 OK"));

    let missing = format!("http://{}/nope", proxy.admin);
    let (code, _, err) = healthcheck(&["--url", &missing]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("{missing}: 404 Not Found")), "{err}");

    // Accepted by the kernel's backlog, never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hanging = format!("http://{}/healthz", silent.local_addr().unwrap());
    let started = std::time::Instant::now();
    let (code, _, err) = healthcheck(&["--url", &hanging, "--timeout", "500ms"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("{hanging}: no answer within 500ms")),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the deadline holds"
    );
    drop(silent);

    proxy.signal(libc::SIGTERM);
    assert!(proxy.wait(Duration::from_secs(20)).success());
    let (code, _, err) = healthcheck(&["--url", &healthz]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("{healthz}: cannot be reached")),
        "{err}"
    );
}
