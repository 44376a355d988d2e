//! `abproxy simulate` as a command: its arguments checked into [`Options`], and the run
//! with a progress line on stderr when stderr is a terminal.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::simulate::pacing::{Pacing, DEFAULT_RATE, DEFAULT_VISITS};
use crate::cli::simulate::{parse_pairs, simulate, Options, Visit};
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
    /// Visits (each a new device). Default 1000 without --duration; with it, a cap:
    /// the run ends at whichever is reached first.
    #[arg(short = 'n', long)]
    pub visits: Option<usize>,
    /// Run for this long (e.g. 30s, 5m, 1h 30m), starting new devices at --rate.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// New devices per second, started evenly (default with --duration: 20; without
    /// it, as fast as --concurrency allows).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Click probability per variant, e.g. Moon=0.1,Mars=0.2 or A=0.05,B=0.10,C=0.30
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
        duration,
        rate,
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
    let pacing = Pacing::new(visits, duration, rate).map_err(anyhow::Error::msg)?;
    Ok(Options {
        target,
        pacing,
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

/// Run the simulation, drawing the progress line on a terminal, and print the report.
async fn with_progress(options: Options) -> Result<()> {
    let bar = progress_bar(&options.pacing);
    let recent = Mutex::new(Recent::new(&options));
    let shown = bar.clone();
    let report = simulate(&options, move |done, visit| {
        shown.set_position(done as u64);
        let mut recent = recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.push(visit);
        if done % 10 == 0 {
            shown.set_message(recent.describe());
        }
    })
    .await;
    bar.finish_and_clear();
    print!("{}", report.map_err(anyhow::Error::msg)?);
    Ok(())
}

/// On stderr, redrawn every 200 ms (so a paced run shows its clock between visits), one
/// line (the message is cut to the terminal's width), and drawn nowhere when stderr is
/// not a terminal (a pipe, a test, CI).
fn progress_bar(pacing: &Pacing) -> ProgressBar {
    let target = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(pacing.planned() as u64), target);
    let clock = match pacing.duration() {
        Some(d) => format!("{{elapsed}}/{}", humantime::format_duration(d)),
        None => "{elapsed}".to_string(),
    };
    let style = ProgressStyle::with_template(&format!(
        "  {clock} [{{bar:20}}] {{pos}}/{{len}} devices  {{wide_msg}}"
    ))
    .expect("a valid template")
    .progress_chars("#>.");
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The variants of the last visits, to watch a bandit move its shares while it runs.
struct Recent {
    /// The variants `--click-probs` names.
    names: Vec<String>,
    last: VecDeque<Option<String>>,
}

impl Recent {
    const VISITS: usize = 100;

    fn new(options: &Options) -> Recent {
        Recent {
            names: options.click_probs.iter().map(|(n, _)| n.clone()).collect(),
            last: VecDeque::with_capacity(Self::VISITS),
        }
    }

    fn push(&mut self, visit: &Visit) {
        if self.last.len() == Self::VISITS {
            self.last.pop_front();
        }
        let simulated = visit.groups.values().find(|g| self.names.contains(g));
        self.last.push_back(simulated.cloned());
    }

    /// `last 100: Mars 52%, Moon 48%`.
    fn describe(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for name in self.last.iter().flatten() {
            *counts.entry(name).or_default() += 1;
        }
        let shares: Vec<String> = counts
            .iter()
            .map(|(name, n)| format!("{name} {}%", 100 * n / self.last.len().max(1)))
            .collect();
        format!("last {}: {}", self.last.len(), shares.join(", "))
    }
}

// The help texts of `--visits` and `--rate` state these defaults: change them together.
const _: () = assert!(DEFAULT_VISITS == 1000);
const _: () = assert!(DEFAULT_RATE == 20.0);
