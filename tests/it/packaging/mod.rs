//! The Docker image and compose.yaml, checked without a Docker engine: the build copies
//! every file the manifest needs and nothing the context leaves out (`context`); the
//! runtime image trusts the system CAs, probes its own health, and lets its user write
//! the data and config directories; the documented `docker run` fits the baked-in
//! config; compose's replicas, backends and Prometheus fit the config they run, checked
//! by the real binary (`compose`).

mod compose;
mod context;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use abproxy::config::yaml::{self, Node, Value};

use crate::support::binary::check;

pub(super) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(super) fn repo_file(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ---- the Dockerfile ----

/// The instructions of a Dockerfile, (KEYWORD, arguments), continuation lines joined and
/// comments left out, with the index of the build stage (`FROM`) each belongs to.
pub(super) fn instructions(dockerfile: &str) -> Vec<(usize, String, String)> {
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
pub(super) fn context_copies(dockerfile: &str) -> Vec<(Vec<String>, String)> {
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

// ---- YAML ----

pub(super) fn yaml_file(path: &str) -> Node {
    yaml::parse(&repo_file(path)).unwrap_or_else(|e| panic!("{path}: {e:?}"))
}

pub(super) fn get<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    match &node.value {
        Value::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
        _ => None,
    }
}

pub(super) fn scalar(node: &Node) -> &str {
    match &node.value {
        Value::Scalar(s) => s,
        other => panic!("not a scalar at {:?}: {other:?}", node.pos),
    }
}

pub(super) fn seq(node: &Node) -> Vec<&str> {
    match &node.value {
        Value::Seq(items) => items.iter().map(scalar).collect(),
        other => panic!("not a list at {:?}: {other:?}", node.pos),
    }
}

pub(super) fn entries(node: &Node) -> Vec<(&str, &Node)> {
    match &node.value {
        Value::Map(entries) => entries.iter().map(|(k, v)| (k.name.as_str(), v)).collect(),
        other => panic!("not a mapping at {:?}: {other:?}", node.pos),
    }
}
