//! `abproxy demo`: a built-in backend on every upstream's address of a config, the proxy
//! in front, and a summary of where everything listens.

use std::path::Path;

use anyhow::{Context, Result};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::state::app::Env;

/// Start the backends, print the summary, and serve the config at `path` until
/// SIGTERM or SIGINT (the backends stop with it).
pub async fn run(path: &Path) -> Result<()> {
    let (config, _) = crate::state::app::load_config(path).map_err(|e| anyhow::anyhow!("{e}"))?;
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
            crate::cli::backend::run(&name, listener, std::future::pending()).await
        }));
    }
    println!("  proxy            http://{}/", config.listen);
    println!("  metrics          http://{}/metrics", config.admin_listen);
    let mut env = Env::from_process();
    if env.admin_token.is_none() && config.admin_token_file.is_none() {
        // So the demo's admin page can make changes; a real deployment sets its own.
        env.admin_token =
            Some(crate::util::random::token(16).context("no randomness for a demo admin token")?);
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
    let result = crate::cli::serve::run(path, env).await;
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
