//! How long does building the upstream request's head from a browser's request take
//! (hop-by-hop fields out, X-Device-Id, X-AB-Assignments, X-Forwarded-*, Host, URI)?

use std::hint::black_box;

use abproxy::config::HostPolicy;
use abproxy::counting::metrics::Metrics;
use abproxy::proxy::service::rewrite_for_upstream;
use abproxy::state::snapshot::UpstreamTarget;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderValue, Request};

fn headers(c: &mut Criterion) {
    let metrics = Metrics::new();
    let mars = abproxy::config::Upstream {
        name: "mars".into(),
        origin: "127.0.0.1:9002".parse().unwrap(),
        tls: false,
        http2: false,
        ca_file: None,
    };
    let client = abproxy::transport::upstream_client::build(
        &mars,
        None,
        std::time::Duration::from_secs(2),
        abproxy::config::PoolConfig {
            max_idle_per_host: 16,
            idle_timeout: std::time::Duration::from_secs(90),
        },
    );
    // A plain HTTP/1.1 upstream, as the proxy builds it: its requests go in origin form.
    let http1 = std::sync::Arc::new(abproxy::transport::http1_pool::Http1Pool::new(
        abproxy::transport::upstream_client::dial_host(&mars),
        mars.port(),
        std::time::Duration::from_secs(2),
        16,
        std::time::Duration::from_secs(90),
    ));
    let upstream = UpstreamTarget::new(&mars, &metrics, (client, Some(http1)));
    let (browser, ()) = Request::get("/products/42?ref=newsletter")
        .header("host", "shop.example.com")
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36")
        .header("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
        .header("accept-language", "en-GB,en;q=0.9")
        .header("accept-encoding", "gzip, deflate, br")
        .header("connection", "keep-alive")
        .header("cookie", "_ga=GA1.1.1; device_id=3f2c8a4e-9b1d-4c7e-8f6a-2d5b9e1c7a40; ab_assignments=v1.x")
        .header("upgrade-insecure-requests", "1")
        .header("sec-fetch-mode", "navigate")
        .header("referer", "https://shop.example.com/")
        .body(())
        .unwrap()
        .into_parts();
    let assignments = HeaderValue::from_static("moon_mars=Mars, white_gold_btn=Gold");
    // Made once per connection by the proxy.
    let peer = abproxy::proxy::service::Peer::new(
        "203.0.113.7:50000".parse().unwrap(),
        abproxy::proxy::service::Scheme::Http,
    );
    c.bench_function("headers/rewrite a 10-field browser request", |b| {
        b.iter_batched(
            || browser.clone(),
            |mut parts| {
                rewrite_for_upstream(
                    &mut parts,
                    black_box(&upstream),
                    HostPolicy::Client,
                    "3f2c8a4e-9b1d-4c7e-8f6a-2d5b9e1c7a40",
                    Some(assignments.clone()),
                    &peer,
                );
                parts
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, headers);
criterion_main!(benches);
