//! A built-in upstream for demos and load tests: a small landing page named after the
//! backend ("Moon", "Mars"), self-contained (no external images, fonts or scripts; its
//! "Reserve your spot" button reports a click through the proxy's `/_ab/sdk.js`).
//! `GET /healthz` answers `ok`. Every response carries `X-Backend: <name>`.

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

#[derive(Clone)]
struct Backend {
    name: Arc<str>,
    name_header: HeaderValue,
    /// The page, rendered once: the load harness measures the proxy, not templating.
    page: Bytes,
}

/// `abproxy backend`: listen on `listen` and serve the page until SIGTERM or SIGINT.
pub async fn listen_and_run(name: &str, listen: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(
        "backend {name} listening on http://{}",
        listener.local_addr()?
    );
    run(name, listener, crate::cli::runtime::shutdown_signal()).await;
    Ok(())
}

/// Serve the backend page on `listener` until `shutdown` completes.
pub async fn run(name: &str, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let backend = Backend {
        name: name.into(),
        name_header: HeaderValue::from_str(name)
            .unwrap_or_else(|_| HeaderValue::from_static("backend")),
        page: Bytes::from(page(name)),
    };
    let graceful = crate::transport::drain::Drain::default();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(10))
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let connection = builder.serve_connection(TokioIo::new(stream), backend.clone());
                tokio::spawn(graceful.watcher().watch(connection));
            }
        }
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown()).await;
    tracing::debug!("backend {} stopped", backend.name);
}

impl hyper::service::Service<Request<Incoming>> for Backend {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let (body, content_type) = if request.uri().path() == "/healthz" {
            (Bytes::from_static(b"ok\n"), "text/plain; charset=utf-8")
        } else {
            (self.page.clone(), "text/html; charset=utf-8")
        };
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = StatusCode::OK;
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert("x-backend", self.name_header.clone());
        ready(Ok(response))
    }
}

fn page(name: &str) -> String {
    let (background, accent, tagline) = match name.to_ascii_lowercase().as_str() {
        "moon" => (
            "#1d2333",
            "#c9d1e3",
            "Quiet nights, a short trip, a view of home.",
        ),
        "mars" => (
            "#3a1710",
            "#f08a4b",
            "Red dust, long days, the first city on another world.",
        ),
        _ => ("#18302a", "#7fd1b9", "A built-in abproxy backend."),
    };
    let name = crate::util::html::escape(name);
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{name}</title>
<style>
  body {{ margin: 0; min-height: 100vh; display: grid; place-items: center;
         background: {background}; color: #f4f4f4; font-family: system-ui, sans-serif; }}
  main {{ text-align: center; padding: 2rem; }}
  h1 {{ font-size: 3.5rem; margin: 0 0 .5rem; color: {accent}; }}
  p {{ font-size: 1.2rem; opacity: .9; }}
  button {{ margin-top: 1.5rem; padding: .8rem 2rem; font-size: 1.1rem; border: 0;
           border-radius: 2rem; background: {accent}; color: {background}; cursor: pointer; }}
</style>
</head>
<body>
<main>
  <h1 id="title">{name}</h1>
  <p>{tagline}</p>
  <button id="reserve" type="button">Reserve your spot</button>
</main>
<script src="/_ab/sdk.js"></script>
<script>
  // Behind abproxy, a click is the `button_click` event (the demo config's `click` goal).
  document.getElementById("reserve").addEventListener("click", function () {{
    if (window.abproxy) {{ abproxy.track("button_click", {{ button: "reserve" }}); }}
    this.textContent = "Reserved!";
  }});
</script>
</body>
</html>
"#
    )
}
