//! compose.yaml and its Prometheus config, against the abproxy config the replicas run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use abproxy::config::yaml::{self, Node, Value};

use super::{context_copies, entries, get, repo_file, root, scalar, seq, yaml_file};
use crate::support::binary::check;
use crate::support::require_tools;

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
