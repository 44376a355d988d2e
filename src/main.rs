//! The `abproxy` command: argument parsing, logging and the runtime; the work is in the
//! library.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use abproxy::config::Config;
use abproxy::proxy::server::Listeners;
use abproxy::state::app::{App, Env};

const DEFAULT_CONFIG: &str = "config/abproxy.yaml";

#[derive(Parser)]
#[command(name = "abproxy", version, about = "A/B-testing reverse proxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Table,
    Json,
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
        Command::Check { config } => check(&config),
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
        } => {
            let source = match (counts, admin, prometheus) {
                (Some(path), _, _) => Source::File(path),
                (_, Some(url), _) => Source::Admin {
                    url,
                    token: token.or_else(|| std::env::var(abproxy::state::secret::TOKEN_ENV).ok()),
                    run,
                },
                (_, _, Some(url)) => Source::Prometheus { url, lookback },
                _ => unreachable!("clap requires one source"),
            };
            analyze(source, experiment, format, confidence, tuned_for)
        }
        Command::Plan {
            baseline,
            mde,
            alpha,
            power,
            daily_users,
            arms,
            tuned_for,
        } => plan(
            abproxy::stats::Design {
                baseline,
                mde,
                alpha,
                power,
                comparisons: arms.saturating_sub(1),
            },
            daily_users,
            tuned_for,
        ),
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
        } => simulate_options(
            target,
            admin.map(|url| {
                let token = token.or_else(|| std::env::var(abproxy::state::secret::TOKEN_ENV).ok());
                (url, token)
            }),
            visits,
            &click_probs,
            path,
            event,
            &params,
            &weights,
            concurrency,
            seed,
        )
        .and_then(|options| runtime(None).and_then(|rt| rt.block_on(simulate(options)))),
        Command::Serve { config, threads } => {
            runtime(threads).and_then(|rt| rt.block_on(serve(&config, Env::from_process())))
        }
        Command::Healthcheck { url, timeout } => runtime(Some(1))
            .and_then(|rt| {
                rt.block_on(abproxy::cli::healthcheck::probe(&url, timeout))
                    .map_err(anyhow::Error::msg)
            })
            .map(|status| println!("{status}")),
        Command::Demo { config } => runtime(None).and_then(|rt| rt.block_on(demo(&config))),
        Command::Backend {
            name,
            listen,
            threads,
        } => runtime(threads).and_then(|rt| rt.block_on(backend(&name, listen))),
    };
    if let Err(err) = result {
        eprintln!("abproxy: {err:#}");
        std::process::exit(1);
    }
}

fn runtime(threads: Option<usize>) -> Result<tokio::runtime::Runtime> {
    let mut builder = match threads {
        Some(0) => bail!("--threads must be at least 1"),
        // One thread: the current-thread scheduler, without the work-stealing machinery
        // (cross-thread queues, wake-ups of idle workers) a single worker cannot use.
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all();
    builder.build().context("cannot start the tokio runtime")
}

fn check(path: &Path) -> Result<()> {
    let result = abproxy::state::app::load_config(path).and_then(|(config, _)| {
        // A state change is checked against the run book, if this machine has one.
        let book = abproxy::state::runs::RunStore::new(&config.data_dir)
            .load()
            .unwrap_or_default();
        abproxy::state::app::check_transitions(path, &config, &book).map(|_| config)
    });
    match result {
        Ok(config) => {
            println!(
                "{}: ok ({} upstreams, {} experiments)",
                path.display(),
                config.upstreams.len(),
                config.experiments.len()
            );
            Ok(())
        }
        Err(err) => {
            println!("{err}");
            std::process::exit(1);
        }
    }
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

fn analyze(
    source: Source,
    experiment: Option<String>,
    format: Format,
    confidence: f64,
    tuned_for: u64,
) -> Result<()> {
    use abproxy::cli::remote::{self, Fetched};
    if !(confidence > 0.0 && confidence < 1.0) {
        bail!("--confidence must be between 0 and 1 (e.g. 0.95)");
    }
    let (origin, fetched) = match &source {
        Source::File(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let counts: abproxy::stats::analysis::Counts = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a counts file", path.display()))?;
            (
                path.display().to_string(),
                vec![Fetched {
                    counts,
                    run: None,
                    latest_run: None,
                }],
            )
        }
        Source::Admin { url, token, run } => {
            let fetched = runtime(Some(1))?
                .block_on(remote::from_admin(
                    url,
                    token.as_deref(),
                    experiment.as_deref(),
                    *run,
                ))
                .map_err(anyhow::Error::msg)?;
            (url.clone(), fetched)
        }
        Source::Prometheus { url, lookback } => {
            let fetched = runtime(Some(1))?
                .block_on(remote::from_prometheus(
                    url,
                    experiment.as_deref(),
                    lookback,
                ))
                .map_err(anyhow::Error::msg)?;
            (url.clone(), fetched)
        }
    };
    let settings = abproxy::stats::analysis::Settings {
        confidence,
        sequential_tuned_for: tuned_for.max(1),
    };
    let mut reports = Vec::new();
    for f in &fetched {
        let report = abproxy::stats::analysis::analyze(&f.counts, settings)
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
                print!("{}", abproxy::stats::analysis::render_table(report));
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

#[allow(clippy::too_many_arguments)]
fn simulate_options(
    target: String,
    admin: Option<(String, Option<String>)>,
    visits: usize,
    click_probs: &str,
    path: Option<String>,
    event: String,
    params: &str,
    weights: &str,
    concurrency: usize,
    seed: Option<u64>,
) -> Result<abproxy::cli::simulate::Options> {
    use abproxy::cli::simulate::parse_pairs;
    let click_probs = parse_pairs(click_probs, "--click-probs").map_err(anyhow::Error::msg)?;
    if click_probs.iter().any(|(_, p)| *p > 1.0) {
        bail!("--click-probs: probabilities are between 0 and 1");
    }
    let params: serde_json::Value =
        serde_json::from_str(params).context("--params must be a JSON object")?;
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
    let seed = seed.unwrap_or_else(abproxy::util::random::seed);
    Ok(abproxy::cli::simulate::Options {
        target,
        visits,
        click_probs,
        event,
        params,
        concurrency: concurrency.max(1),
        seed,
        weights: parse_pairs(weights, "--weights").map_err(anyhow::Error::msg)?,
        admin,
        token: token.flatten(),
        path,
    })
}

async fn simulate(options: abproxy::cli::simulate::Options) -> Result<()> {
    let total = options.visits;
    let on_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let report = abproxy::cli::simulate::simulate(&options, move |done| {
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

/// Devices per arm for the verdict's always-valid test (`stats::sequential`, read as often
/// as one likes) and for one fixed-horizon z-test read once at the end; with more than two
/// arms each comparison with the control is at alpha / (arms − 1) (Bonferroni).
fn plan(design: abproxy::stats::Design, daily_users: Option<u64>, tuned_for: u64) -> Result<()> {
    let abproxy::stats::Design {
        baseline,
        mde,
        alpha,
        power,
        comparisons,
    } = design;
    let target = baseline + mde;
    if !(baseline > 0.0 && baseline < 1.0) || !(target > 0.0 && target < 1.0) || mde == 0.0 {
        bail!(
            "--baseline and --baseline + --mde must both be rates between 0 and 1, and --mde not 0"
        );
    }
    if !(alpha > 0.0 && alpha < 1.0) || !(power > 0.0 && power < 1.0) || comparisons < 1 {
        bail!("--alpha and --power must be between 0 and 1, and --arms at least 2");
    }
    if daily_users == Some(0) {
        bail!("--daily-users must be at least 1");
    }
    let arms = comparisons + 1;
    let tuned_for = tuned_for.max(1);
    println!(
        "to detect {:.2}% -> {:.2}% ({:+.2} pts), two-sided alpha = {alpha}, power {:.0}%:",
        100.0 * baseline,
        100.0 * target,
        100.0 * mde,
        100.0 * power
    );
    if comparisons > 1 {
        println!(
            "  {arms} arms: {comparisons} comparisons with the control, each at alpha = {} (Bonferroni; the verdict's Holm adjustment is never stricter)",
            alpha / comparisons as f64
        );
    }
    let sizes = [
        (
            format!("looking as often as you like (the always-valid test the verdict uses, tuned for {tuned_for} devices):"),
            design.sequential_per_arm(tuned_for),
        ),
        (
            "one look at the end (fixed-horizon z-test; significant only if read once):".to_string(),
            design.fixed_horizon_per_arm(),
        ),
    ];
    for (how, per_arm) in sizes {
        let per_arm = per_arm.ceil() as u64;
        println!("  {how}");
        println!(
            "    {per_arm} devices per arm, {} in all ({arms} arms)",
            per_arm * arms
        );
        if let Some(daily) = daily_users {
            let days = (per_arm * arms).div_ceil(daily);
            println!(
                "    at {daily} devices a day: {days} day{}",
                if days == 1 { "" } else { "s" }
            );
        }
    }
    Ok(())
}

async fn serve(path: &Path, env: Env) -> Result<()> {
    let app = Arc::new(App::load_with_env(path, env).map_err(|e| anyhow::anyhow!("{e}"))?);
    let config = app.snapshot().config.clone();
    let listeners = Listeners {
        proxy: TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?,
        admin: TcpListener::bind(config.admin_listen)
            .await
            .with_context(|| format!("cannot listen on {} (admin)", config.admin_listen))?,
    };
    // Reload triggers first: a SIGHUP that arrives once we say we are listening must
    // find its handler (the default action of SIGHUP ends the process).
    let reloaders = abproxy::state::reload::Reloaders::start(app.clone())?;
    let shutdown = shutdown_signal();
    tracing::info!(
        "proxy listening on http://{} (admin http://{}/metrics), config {}",
        listeners.proxy.local_addr()?,
        listeners.admin.local_addr()?,
        path.display()
    );
    abproxy::proxy::server::run(app, listeners, shutdown).await;
    drop(reloaders);
    tracing::info!("stopped");
    Ok(())
}

async fn demo(path: &Path) -> Result<()> {
    let (config, _) = abproxy::state::app::load_config(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("abproxy demo");
    let mut backends = Vec::new();
    for upstream in &config.upstreams {
        let name = backend_name(&config, &upstream.name);
        let listener = TcpListener::bind(upstream.origin.as_str())
            .await
            .with_context(|| {
                format!(
                    "cannot start the demo backend {name} on {} (upstream {})",
                    upstream.origin, upstream.name
                )
            })?;
        println!("  backend {name:<8} http://{}", listener.local_addr()?);
        backends.push(tokio::spawn(async move {
            abproxy::cli::backend::run(&name, listener, std::future::pending()).await
        }));
    }
    println!("  proxy            http://{}/", config.listen);
    println!("  metrics          http://{}/metrics", config.admin_listen);
    let mut env = Env::from_process();
    if env.admin_token.is_none() && config.admin_token_file.is_none() {
        // So the demo's admin page can make changes; a real deployment sets its own.
        env.admin_token =
            Some(abproxy::util::random::token(16).context("no randomness for a demo admin token")?);
    }
    match &env.admin_token {
        Some(token) => println!(
            "  admin page       http://{}/experiments (token for this demo: {token})",
            config.admin_listen
        ),
        None => println!(
            "  admin page       http://{}/experiments (token from admin.token_file)",
            config.admin_listen
        ),
    }
    println!(
        "  config           {} (edit and save: it reloads)",
        path.display()
    );
    println!(
        "  try              curl -si http://{}/ | grep -E 'x-backend|set-cookie'",
        config.listen
    );
    let result = serve(path, env).await;
    for b in backends {
        b.abort();
    }
    result
}

/// The name a demo backend shows: the variant that routes to it, else the upstream's
/// name with a capital first letter.
fn backend_name(config: &Config, upstream: &str) -> String {
    config
        .experiments
        .iter()
        .flat_map(|e| &e.variants)
        .find(|v| v.upstream.as_deref() == Some(upstream))
        .map(|v| v.name.clone())
        .unwrap_or_else(|| {
            let mut chars = upstream.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
}

async fn backend(name: &str, listen: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(
        "backend {name} listening on http://{}",
        listener.local_addr()?
    );
    abproxy::cli::backend::run(name, listener, shutdown_signal()).await;
    Ok(())
}

/// Completes on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is
/// called, not when the future is first polled: a signal sent as soon as the proxy says
/// it is listening must not find the default action (which ends the process at once).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("cannot install the SIGTERM handler");
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .expect("cannot install the SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
    }
}
