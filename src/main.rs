//! The `abproxy` command: the arguments, the log, and one call into [`abproxy::cli`] per
//! subcommand, where the work is.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use abproxy::cli::analyze::Format;
use abproxy::cli::{analyze, backend, check, demo, healthcheck, plan, runtime, serve, simulate};
use abproxy::state::app::Env;

const DEFAULT_CONFIG: &str = "config/abproxy.yaml";

#[derive(Parser)]
#[command(name = "abproxy", version, about = "A/B-testing reverse proxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        /// The YAML config file (watched: saving it reloads the proxy).
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Runtime worker threads (default: one per CPU core).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Validate a config file: exit 0 if valid, else print PATH:LINE:COL: message and exit 1.
    Check {
        /// The YAML config file to validate.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Start a built-in backend for every upstream of the config, and the proxy in front.
    Demo {
        /// The YAML config whose upstreams get a built-in backend each.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Analyse an experiment's counts: every goal, every variant against the control.
    #[command(group(clap::ArgGroup::new("source").required(true).args(["counts", "admin", "prometheus"])))]
    Analyze {
        /// A JSON file of counts (format in the README, "Analysing results").
        #[arg(long)]
        counts: Option<PathBuf>,
        /// A running proxy's admin URL, e.g. http://127.0.0.1:8081 (token from
        /// ABPROXY_ADMIN_TOKEN or --token when it has one).
        #[arg(long)]
        admin: Option<String>,
        /// A Prometheus server scraping the replicas, e.g. http://127.0.0.1:9090.
        #[arg(long)]
        prometheus: Option<String>,
        /// The experiment (default: every one the source knows).
        #[arg(long, conflicts_with = "counts")]
        experiment: Option<String>,
        /// With --admin and --experiment: this run's results (default: the last run). The
        /// runs are listed in GET /api/experiments and on the admin page. Prometheus holds
        /// only the counts of each replica's last run: ask the admin API for older ones.
        #[arg(long, requires = "experiment", conflicts_with_all = ["counts", "prometheus"])]
        run: Option<u32>,
        /// The admin token (default: ABPROXY_ADMIN_TOKEN).
        #[arg(long)]
        token: Option<String>,
        /// With --prometheus: how far back a replica that went away is remembered.
        #[arg(long, default_value = "30d")]
        lookback: String,
        /// `table` for reading, `json` for scripts (the analysis as one object per experiment).
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Confidence of the intervals (1 − the significance level).
        #[arg(long, default_value_t = 0.95)]
        confidence: f64,
        /// Devices (both arms together) the sequential test is tuned for.
        #[arg(long, default_value_t = abproxy::stats::DEFAULT_SEQUENTIAL_TUNING_USERS)]
        tuned_for: u64,
    },
    /// Drive a running proxy like real visitors and print the split, conversions and tests.
    Simulate {
        /// The proxy's URL, e.g. http://127.0.0.1:8080
        #[arg(long)]
        target: String,
        /// The proxy's admin URL, e.g. http://127.0.0.1:8081: the experiments' titles,
        /// weights and pages are read from it, and --click-probs checked, before any visit.
        #[arg(long)]
        admin: Option<String>,
        /// The admin token, if the proxy has one (default: ABPROXY_ADMIN_TOKEN).
        #[arg(long, requires = "admin")]
        token: Option<String>,
        /// Visits (each a new device).
        #[arg(short = 'n', long, default_value_t = 1000)]
        visits: usize,
        /// Click probability per variant, e.g. Moon=0.1,Mars=0.2
        #[arg(long)]
        click_probs: String,
        /// The page each visit loads (default: one the experiments of --click-probs apply
        /// to, read from --admin; else /).
        #[arg(long)]
        path: Option<String>,
        /// The event a click sends (the demo's goal is button_click).
        #[arg(long, default_value = "button_click")]
        event: String,
        /// The event's params as JSON (the demo's goal filters on this button).
        #[arg(long, default_value = r#"{"button":"reserve"}"#)]
        params: String,
        /// Without --admin: the designed split for the SRM line, e.g. Moon=50,Mars=50
        /// (with neither, the split is not checked).
        #[arg(long, default_value = "", conflicts_with = "admin")]
        weights: String,
        /// Visits in flight at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Seed for the click draws (default: random).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Devices per arm needed to detect a change of a conversion rate.
    Plan {
        /// The control's conversion rate, e.g. 0.10.
        #[arg(long)]
        baseline: f64,
        /// The smallest absolute change worth detecting, e.g. 0.02 (10% → 12%).
        #[arg(long)]
        mde: f64,
        /// Two-sided significance level.
        #[arg(long, default_value_t = 0.05)]
        alpha: f64,
        /// The chance of detecting a change of --mde when there is one.
        #[arg(long, default_value_t = 0.8)]
        power: f64,
        /// Devices entering the experiment per day (all arms), to estimate the duration.
        #[arg(long)]
        daily_users: Option<u64>,
        /// Arms, the control included; each other arm is compared with the control, at
        /// alpha / (arms − 1) (Bonferroni).
        #[arg(long, default_value_t = 2)]
        arms: u64,
        /// Devices (both arms together) the sequential test is tuned for, as in
        /// `analyze --tuned-for` (the admin page uses the default).
        #[arg(long, default_value_t = abproxy::stats::DEFAULT_SEQUENTIAL_TUNING_USERS)]
        tuned_for: u64,
    },
    /// GET a URL (the admin listener's /healthz): exit 0 on a 2xx answer, else 1 (the
    /// Docker image's HEALTHCHECK; the slim image has no curl).
    Healthcheck {
        /// The URL to probe.
        #[arg(long, default_value = abproxy::cli::healthcheck::DEFAULT_URL)]
        url: String,
        /// How long the whole exchange may take, e.g. 3s or 500ms.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Run one built-in backend (a small landing page).
    Backend {
        /// The name the page shows and every response's `X-Backend` header carries, e.g. Moon.
        #[arg(long)]
        name: String,
        /// The IP:port to listen on, e.g. 127.0.0.1:9001 (0.0.0.0:9001 in a container).
        #[arg(long)]
        listen: SocketAddr,
        /// Runtime worker threads (default: one per CPU core).
        #[arg(long)]
        threads: Option<usize>,
    },
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Serve { config, threads } => {
            runtime::block_on(threads, serve::run(&config, Env::from_process()))
        }
        Command::Check { config } => {
            if !check::run(&config) {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Demo { config } => runtime::block_on(None, demo::run(&config)),
        Command::Analyze {
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
        } => analyze::run(analyze::Args {
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
        }),
        Command::Simulate {
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
        } => simulate::command::run(simulate::command::Args {
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
        }),
        Command::Plan {
            baseline,
            mde,
            alpha,
            power,
            daily_users,
            arms,
            tuned_for,
        } => plan::run(plan::Args {
            baseline,
            mde,
            alpha,
            power,
            daily_users,
            arms,
            tuned_for,
        }),
        Command::Healthcheck { url, timeout } => healthcheck::run(&url, timeout),
        Command::Backend {
            name,
            listen,
            threads,
        } => runtime::block_on(threads, backend::listen_and_run(&name, listen)),
    };
    if let Err(err) = result {
        eprintln!("abproxy: {err:#}");
        std::process::exit(1);
    }
}
