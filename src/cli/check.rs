//! `abproxy check`: load a config file as `serve` would, and check its state changes
//! against this machine's run book.

use std::path::Path;

/// Print `PATH: ok (N upstreams, M experiments)`, or the error (`PATH:LINE:COL: message`),
/// on stdout, where scripts and editors read it. True when the config is valid.
pub fn run(path: &Path) -> bool {
    let result = crate::state::app::load_config(path).and_then(|(config, _)| {
        // A state change is checked against the run book, if this machine has one.
        let book = crate::state::runs::RunStore::new(&config.data_dir)
            .load()
            .unwrap_or_default();
        crate::state::app::check_transitions(path, &config, &book).map(|_| config)
    });
    match result {
        Ok(config) => {
            println!(
                "{}: ok ({} upstreams, {} experiments)",
                path.display(),
                config.upstreams.len(),
                config.experiments.len()
            );
            true
        }
        Err(err) => {
            println!("{err}");
            false
        }
    }
}
