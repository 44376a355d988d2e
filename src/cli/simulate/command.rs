//! `abproxy simulate` as a command: its arguments checked into [`Options`], and the run
//! with a progress bar on stderr when stderr is a terminal.

use anyhow::{bail, Context, Result};

use crate::cli::simulate::{parse_pairs, simulate, Options};
use crate::cli::{remote, runtime};

/// The arguments as given (`--click-probs`, `--params` and `--weights` still text).
#[derive(Debug, Clone)]
pub struct Args {
    pub target: String,
    pub admin: Option<String>,
    /// The admin token (default, with `admin`: `ABPROXY_ADMIN_TOKEN`'s).
    pub token: Option<String>,
    pub visits: usize,
    /// `Moon=0.1,Mars=0.2`.
    pub click_probs: String,
    pub path: Option<String>,
    pub event: String,
    /// A JSON object.
    pub params: String,
    /// `Moon=50,Mars=50`, or empty.
    pub weights: String,
    pub concurrency: usize,
    /// Default: a random seed.
    pub seed: Option<u64>,
}

/// Check the arguments, then drive the proxy and print the report on stdout.
pub fn run(args: Args) -> Result<()> {
    let options = options(args)?;
    runtime::block_on(None, with_progress(options))
}

/// The arguments checked, as the simulation's options.
pub fn options(args: Args) -> Result<Options> {
    let Args {
        target,
        admin,
        token,
        visits,
        click_probs,
        path,
        event,
        params,
        weights,
        concurrency,
        seed,
    } = args;
    let admin = admin.map(|url| (url, remote::admin_token(token)));
    let click_probs = parse_pairs(&click_probs, "--click-probs").map_err(anyhow::Error::msg)?;
    if click_probs.iter().any(|(_, p)| *p > 1.0) {
        bail!("--click-probs: probabilities are between 0 and 1");
    }
    let params: serde_json::Value =
        serde_json::from_str(&params).context("--params must be a JSON object")?;
    if !params.is_object() {
        bail!("--params must be a JSON object");
    }
    if !target.starts_with("http://") {
        bail!("--target must be an http:// URL of the proxy");
    }
    if admin
        .as_ref()
        .is_some_and(|(url, _)| !url.starts_with("http://"))
    {
        bail!("--admin must be an http:// URL of the proxy's admin listener");
    }
    let (admin, token) = admin.unzip();
    let seed = seed.unwrap_or_else(crate::util::random::seed);
    Ok(Options {
        target,
        visits,
        click_probs,
        event,
        params,
        concurrency: concurrency.max(1),
        seed,
        weights: parse_pairs(&weights, "--weights").map_err(anyhow::Error::msg)?,
        admin,
        token: token.flatten(),
        path,
    })
}

/// Run the simulation, drawing the progress bar on a terminal, and print the report.
async fn with_progress(options: Options) -> Result<()> {
    let total = options.visits;
    let on_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let report = simulate(&options, move |done| {
        if on_terminal && (done % 10 == 0 || done == total) {
            let width = 40;
            let filled = done * width / total.max(1);
            eprint!(
                "\r  [{}{}] {done}/{total} visits",
                "#".repeat(filled),
                ".".repeat(width - filled)
            );
            if done == total {
                eprintln!();
            }
        }
    })
    .await
    .map_err(anyhow::Error::msg)?;
    print!("{report}");
    Ok(())
}
