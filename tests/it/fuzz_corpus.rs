//! Every input kept for the fuzz targets (`fuzz/seeds/<target>/`, and the inputs that
//! once found a bug in `fuzz/regressions/<target>/`) replayed through the same property
//! checks as `cargo fuzz` runs (`abproxy::fuzzing`), so a fixed bug stays fixed.

use std::path::PathBuf;

fn replay(target: &str, check: fn(&[u8])) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for kind in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(kind).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{} fails its checks", path.display());
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no kept inputs for {target}");
}

#[test]
fn config_inputs() {
    replay("config", abproxy::fuzzing::config);
}

#[test]
fn cookie_inputs() {
    replay("cookies", abproxy::fuzzing::cookies);
}

#[test]
fn event_inputs() {
    replay("events", abproxy::fuzzing::events);
}

#[test]
fn header_inputs() {
    replay("headers", abproxy::fuzzing::headers);
}
