//! The Docker image, checked without a Docker engine: its build copies every file the
//! manifest needs, and its baked-in config is valid and writes where the image lets it.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::binary::check;

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// `cargo build` in the image fails to load the manifest if a declared target's file
/// was not copied in (a `[[bench]]` without `benches/` did exactly that once).
#[test]
fn the_image_build_copies_every_directory_the_manifest_names() {
    let dockerfile = repo_file("Dockerfile");
    let copied: BTreeSet<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--from"))
        .flat_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words[..words.len() - 1].to_vec()
        })
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
            copied.contains(dir),
            "the Dockerfile does not COPY {dir} (copies {copied:?})"
        );
    }
}

#[test]
fn the_baked_in_config_is_valid_and_its_data_dir_belongs_to_the_image_user() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/docker.yaml");
    let (code, out) = check(&path);
    assert_eq!(code, 0, "{out}");
    let data_dir = repo_file("config/docker.yaml")
        .lines()
        .find_map(|l| l.strip_prefix("data_dir: "))
        .expect("docker.yaml sets data_dir (the default ./data is not writable in the image)")
        .trim()
        .to_string();
    let dockerfile = repo_file("Dockerfile");
    assert!(
        dockerfile.contains(&format!("chown abproxy {data_dir}")),
        "the image must give {data_dir} to its user"
    );
    assert!(dockerfile.contains(&format!("VOLUME {data_dir}")));
}
