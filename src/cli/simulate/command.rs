//! `abproxy simulate` as a command: its arguments checked into [`Options`], and the run
//! with a progress bar on stderr when stderr is a terminal.

use anyhow::{bail, Context, Result};

use crate::cli::simulate::{parse_pairs, simulate, Options};
use crate::cli::{remote, runtime};

/// The arguments as given (`--click-probs`, `--params` and `--weights` still text).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The proxy's URL, e.g. http://127.0.0.1:8080
    #[arg(long)]
    pub target: String,
    /// The proxy's admin URL, e.g. http://127.0.0.1:8081: the experiments' titles,
    /// weights and pages are read from it, and --click-probs checked, before any visit.
    #[arg(long)]
    pub admin: Option<String>,
    /// The admin token, if the proxy has one (default: ABPROXY_ADMIN_TOKEN).
    #[arg(long, requires = "admin")]
    pub token: Option<String>,
    /// Visits (each a new device).
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub visits: usize,
    /// Click probability per variant, e.g. Moon=0.1,Mars=0.2
    #[arg(long)]
    pub click_probs: String,
    /// The page each visit loads (default: one the experiments of --click-probs apply
    /// to, read from --admin; else /).
    #[arg(long)]
    pub path: Option<String>,
    /// The event a click sends (the demo's goal is button_click).
    #[arg(long, default_value = "button_click")]
    pub event: String,
    /// The event's params as JSON (the demo's goal filters on this button).
    #[arg(long, default_value = r#"{"button":"reserve"}"#)]
    pub params: String,
    /// Without --admin: the designed split for the SRM line, e.g. Moon=50,Mars=50
    /// (with neither, the split is not checked).
    #[arg(long, default_value = "", conflicts_with = "admin")]
    pub weights: String,
    /// Visits in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Seed for the click draws (default: random).
    #[arg(long)]
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
