//! The `abproxy` command: the arguments, the log, and one call into [`abproxy::cli`] per
//! subcommand, where the work is.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
        /// Worker threads for proxy connections, each with a runtime of its own
        /// (default: one per CPU core).
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
    Analyze(analyze::Args),
    /// Drive a running proxy like real visitors and print the split, conversions and tests.
    Simulate(simulate::command::Args),
    /// Devices per arm needed to detect a change of a conversion rate.
    Plan(plan::Args),
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
        // The first worker is the main thread's runtime, which also runs the admin
        // listener, the reloads and the background tasks.
        Command::Serve { config, threads } => runtime::proxy_workers(threads).and_then(|workers| {
            runtime::block_on(Some(1), serve::run(&config, Env::from_process(), workers))
        }),
        Command::Check { config } => {
            if !check::run(&config) {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Demo { config } => runtime::block_on(None, demo::run(&config)),
        Command::Analyze(args) => analyze::run(args),
        Command::Simulate(args) => simulate::command::run(args),
        Command::Plan(args) => plan::run(args),
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
