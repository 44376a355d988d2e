//! `abproxy analyze`: read an experiment's counts from a file, a running proxy's admin
//! API or Prometheus ([`crate::cli::remote`]), analyse every goal, every variant against
//! the control ([`crate::stats::analysis`]), and print a table or JSON.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::cli::remote::{self, Fetched};
use crate::cli::runtime;

/// How the analysis is printed: `table` for reading, `json` for scripts. (The variants
/// carry no doc comments: clap would show them in `--help`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// What `analyze` is asked: one of `counts`, `admin` and `prometheus` is the source.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["counts", "admin", "prometheus"])))]
pub struct Args {
    /// A JSON file of counts (format in the README, "Analysing results").
    #[arg(long)]
    pub counts: Option<PathBuf>,
    /// A running proxy's admin URL, e.g. http://127.0.0.1:8081 (token from
    /// ABPROXY_ADMIN_TOKEN or --token when it has one).
    #[arg(long)]
    pub admin: Option<String>,
    /// A Prometheus server scraping the replicas, e.g. http://127.0.0.1:9090.
    #[arg(long)]
    pub prometheus: Option<String>,
    /// The experiment (default: every one the source knows).
    #[arg(long, conflicts_with = "counts")]
    pub experiment: Option<String>,
    /// With --admin and --experiment: this run's results (default: the last run). The
    /// runs are listed in GET /api/experiments and on the admin page. Prometheus holds
    /// only the counts of each replica's last run: ask the admin API for older ones.
    #[arg(long, requires = "experiment", conflicts_with_all = ["counts", "prometheus"])]
    pub run: Option<u32>,
    /// The admin token (default: ABPROXY_ADMIN_TOKEN).
    #[arg(long)]
    pub token: Option<String>,
    /// With --prometheus: how far back a replica that went away is remembered.
    #[arg(long, default_value = "30d")]
    pub lookback: String,
    /// `table` for reading, `json` for scripts (the analysis as one object per experiment).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Confidence of the intervals (1 − the significance level).
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// Devices (both arms together) the sequential test is tuned for.
    #[arg(long, default_value_t = crate::stats::DEFAULT_SEQUENTIAL_TUNING_USERS)]
    pub tuned_for: u64,
}

/// Where `analyze` reads counts.
enum Source {
    File(PathBuf),
    Admin {
        url: String,
        token: Option<String>,
        run: Option<u32>,
    },
    Prometheus {
        url: String,
        lookback: String,
    },
}

/// Read, analyse and print (on stdout).
pub fn run(args: Args) -> Result<()> {
    let Args {
        counts,
        admin,
        prometheus,
        experiment,
        run,
        token,
        lookback,
        format,
        confidence,
        tuned_for,
    } = args;
    let source = match (counts, admin, prometheus) {
        (Some(path), _, _) => Source::File(path),
        (_, Some(url), _) => Source::Admin {
            url,
            token: remote::admin_token(token),
            run,
        },
        (_, _, Some(url)) => Source::Prometheus { url, lookback },
        // The command line requires one source.
        (None, None, None) => bail!("give --counts, --admin or --prometheus"),
    };
    analyze(source, experiment, format, confidence, tuned_for)
}

fn analyze(
    source: Source,
    experiment: Option<String>,
    format: Format,
    confidence: f64,
    tuned_for: u64,
) -> Result<()> {
    if !(confidence > 0.0 && confidence < 1.0) {
        bail!("--confidence must be between 0 and 1 (e.g. 0.95)");
    }
    let (origin, fetched) = match &source {
        Source::File(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let counts: crate::stats::analysis::Counts = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a counts file", path.display()))?;
            (
                path.display().to_string(),
                vec![Fetched {
                    counts,
                    run: None,
                    latest_run: None,
                    warnings: Vec::new(),
                }],
            )
        }
        Source::Admin { url, token, run } => {
            let fetched = runtime::block_on(Some(1), async {
                remote::from_admin(url, token.as_deref(), experiment.as_deref(), *run)
                    .await
                    .map_err(anyhow::Error::msg)
            })?;
            (url.clone(), fetched)
        }
        Source::Prometheus { url, lookback } => {
            let fetched = runtime::block_on(Some(1), async {
                remote::from_prometheus(url, experiment.as_deref(), lookback)
                    .await
                    .map_err(anyhow::Error::msg)
            })?;
            (url.clone(), fetched)
        }
    };
    let settings = crate::stats::analysis::Settings {
        confidence,
        sequential_tuned_for: tuned_for.max(1),
    };
    let mut reports = Vec::new();
    for f in &fetched {
        for warning in &f.warnings {
            eprintln!("abproxy: warning: {}: {warning}", f.counts.experiment);
        }
        let report = crate::stats::analysis::analyze(&f.counts, settings)
            .with_context(|| format!("{origin}: experiment {}", f.counts.experiment))?;
        reports.push((report, f));
    }
    match format {
        // One experiment asked for (or a file): one object; otherwise an array.
        Format::Json
            if reports.len() == 1
                && (experiment.is_some() || matches!(source, Source::File(_))) =>
        {
            println!("{}", serde_json::to_string_pretty(&reports[0].0)?)
        }
        Format::Json => {
            let all: Vec<_> = reports.iter().map(|(r, _)| r).collect();
            println!("{}", serde_json::to_string_pretty(&all)?)
        }
        Format::Table => {
            for (i, (report, fetched)) in reports.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                if let Some(run) = &fetched.run {
                    println!("{}", describe_run(run, fetched.latest_run, &origin));
                }
                print!("{}", crate::stats::analysis::render_table(report));
            }
        }
    }
    Ok(())
}

/// `run 2 (since 2026-11-23T10:00:00Z) from URL`, and `run 1 (… to …; the latest is
/// run 2) from URL` for an earlier run.
fn describe_run(run: &serde_json::Value, latest: Option<u64>, origin: &str) -> String {
    let mut line = format!("run {}", run["number"]);
    let later = latest
        .filter(|l| Some(*l) != run["number"].as_u64())
        .map_or(String::new(), |l| format!("; the latest is run {l}"));
    match (run["started_at"].as_str(), run["ended_at"].as_str()) {
        (Some(start), Some(end)) => line.push_str(&format!(" ({start} to {end}{later})")),
        (Some(start), None) => line.push_str(&format!(" (since {start}{later})")),
        _ => {}
    }
    line.push_str(&format!(" from {origin}"));
    line
}
