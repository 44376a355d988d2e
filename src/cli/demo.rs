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
    let result = crate::cli::serve::run(path, env, 1).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_is_named_after_its_variant_else_its_upstream_capitalised() {
        let config = Config::from_str(
            "listen: 127.0.0.1:8080\n\
             upstreams:\n  moon: http://127.0.0.1:9001\n  mars: http://127.0.0.1:9002\n  \
             venus: http://127.0.0.1:9003\n\
             default_upstream: venus\n\
             experiments:\n  moon_mars:\n    state: active\n    fallback: Luna\n    \
             variants:\n      Luna: {weight: 50, upstream: moon}\n      \
             Ares: {weight: 50, upstream: mars}\n",
            Path::new("demo.yaml"),
        )
        .unwrap();
        assert_eq!(backend_name(&config, "moon"), "Luna");
        assert_eq!(backend_name(&config, "mars"), "Ares");
        assert_eq!(backend_name(&config, "venus"), "Venus");
    }
}
