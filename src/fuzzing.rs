//! The properties the fuzz targets (`fuzz/fuzz_targets/`) check, one function per
//! target. Each takes arbitrary bytes, must never panic on its own, and panics when a
//! property fails. They live here, not in `fuzz/`, so `tests/it/fuzz_corpus.rs` replays
//! the kept inputs through exactly the same checks on every `cargo test`.

use std::path::Path;

use http::header::{self, HeaderName, HeaderValue};
use http::HeaderMap;

use crate::config::names::{check_name, NameKind};
use crate::config::{Config, HostPolicy, PoolConfig, QaOverride, Upstream};
use crate::experiments::device::Device;
use crate::experiments::sticky::{Assignments, Entry, Signer};
use crate::proxy::service::{rewrite_for_upstream, Peer, Scheme};
use crate::state::snapshot::UpstreamTarget;

/// Config parser and validator: any text either is refused with a positioned message,
/// or gives a config whose cross-references hold and that builds experiment plans.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match Config::from_str(text, Path::new("fuzz.yaml")) {
        Ok(config) => config,
        Err(err) => {
            assert!(
                err.to_string().starts_with("fuzz.yaml"),
                "an error names the file: {err}"
            );
            return;
        }
    };
    assert!(!config.upstreams.is_empty());
    for e in &config.experiments {
        assert!(
            check_name(&e.key, NameKind::Experiment).is_ok(),
            "{}",
            e.key
        );
        for v in &e.variants {
            assert!(check_name(&v.name, NameKind::Variant).is_ok(), "{}", v.name);
        }
        assert!(e.variants.iter().any(|v| v.name == e.fallback));
        assert!(e.variants.iter().any(|v| v.name == e.control));
        let upstream_index = |name: &str| config.upstreams.iter().position(|u| u.name == name);
        // Panics if validation let through weights that sum to 0 or a dangling name.
        let plan = crate::experiments::plan::ExperimentPlan::new(
            e,
            Some(crate::experiments::plan::LastRun::numbered(1)),
            &crate::counting::book::CountBook::default(),
            upstream_index,
        );
        for v in &plan.variants {
            assert_eq!(v.upstream.is_some(), plan.routing);
        }
    }
}

/// Cookie parsing and the signed assignment cookie: a device id read from any `Cookie`
/// bytes is a valid token; a cookie value never verifies unless it was signed; what
/// `encode` signs, `decode` gives back.
pub fn cookies(data: &[u8]) {
    let signer = Signer::new(b"fuzzing-secret-0123456789");
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(data) {
        headers.append(header::COOKIE, value);
    }
    let mut device = Device::from_headers(&headers, "device_id");
    if device.is_new {
        // A minted id is random: a fixed one keeps each input's run reproducible.
        device.id = "fuzz-device".into();
    }
    assert!(
        device.id.len() <= 64
            && device
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "device id {:?}",
        device.id
    );
    // Never a panic, whatever the device's cookie holds.
    let _ = device.set_cookie("device_id", "; Path=/");
    if let Some(value) = crate::experiments::device::cookie_value(&headers, "ab_assignments") {
        if let Ok(decoded) = signer.decode(&device.id, value) {
            // Only what the signer encoded verifies: it must re-encode to the same value.
            let (again, _) = signer.encode(&device.id, &decoded);
            assert_eq!(again.as_bytes(), value, "a forged cookie verified");
        }
    }
    // Round trip: entries made of valid names, from the input's text.
    let text = String::from_utf8_lossy(data);
    let entries: Vec<Entry> = text
        .split([' ', '\n'])
        .filter_map(|word| {
            let (experiment, variant) = word.split_once('=')?;
            (check_name(experiment, NameKind::Experiment).is_ok()
                && check_name(variant, NameKind::Variant).is_ok())
            .then(|| Entry {
                experiment: experiment.to_string(),
                variant: variant.to_string(),
                run: word.len() as u32,
                // Periods 1 (left out of the cookie) and up.
                period: 1 + word.len() as u32 % 3,
                goals: Vec::new(),
            })
        })
        .collect();
    let assignments = Assignments { entries };
    let (value, kept) = signer.encode(&device.id, &assignments);
    let decoded = signer
        .decode(&device.id, value.as_bytes())
        .expect("what encode signs, decode accepts");
    assert_eq!(decoded.entries, assignments.entries[..kept]);
    assert!(
        HeaderValue::from_str(&value).is_ok(),
        "the cookie value is a valid header value"
    );
}

/// The events JSON: any body is accepted or refused with a message, never a panic, and
/// accepted events have the documented shape.
pub fn events(data: &[u8]) {
    if let Ok(events) = crate::proxy::events::parse(data) {
        assert!((1..=100).contains(&events.len()));
        for event in &events {
            assert!(!event.name.is_empty() && event.name.chars().count() <= 64);
            assert!(!event.name.chars().any(char::is_control));
        }
    }
}

/// The request head as the upstream gets it, from arbitrary client fields: hop-by-hop
/// fields gone, abproxy's own fields set from its values only, one `Cookie` field
/// without the admin session, and the QA override only ever yielding valid names.
pub fn headers(data: &[u8]) {
    let mut lines = data.split(|&b| b == b'\n');
    let target = lines.next().unwrap_or_default();
    let Ok(uri) = http::Uri::try_from(target) else {
        return;
    };
    let mut request = http::Request::new(());
    *request.uri_mut() = uri;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) {
            request.headers_mut().append(name, value);
        }
    }
    let qa = QaOverride {
        query_param: Some("ab_force".into()),
        header: Some(HeaderName::from_static("x-ab-force")),
    };
    let forced = crate::experiments::qa::forced(&qa, request.headers(), request.uri().query());
    for (experiment, variant) in &forced.pairs {
        assert!(check_name(experiment, NameKind::Experiment).is_ok());
        assert!(check_name(variant, NameKind::Variant).is_ok());
    }
    if let Some(cookie) = &forced.set_cookie {
        assert!(HeaderValue::from_str(cookie).is_ok());
    }

    let device = Device::from_headers(request.headers(), "device_id");
    let upstream = fuzz_upstream();
    let policy = if data.len() % 2 == 0 {
        HostPolicy::Client
    } else {
        HostPolicy::Upstream
    };
    let peer = Peer::new("203.0.113.7:4000".parse().unwrap(), Scheme::Https);
    let assignments = Some(HeaderValue::from_static("moon_mars=Mars"));
    let (mut parts, ()) = request.into_parts();
    rewrite_for_upstream(&mut parts, upstream, policy, &device.id, assignments, &peer);

    let h = &parts.headers;
    for hop in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ] {
        assert!(!h.contains_key(hop), "{hop} reached the upstream");
    }
    if let Some(te) = h.get(header::TE) {
        assert_eq!(te, "trailers");
    }
    assert_eq!(h.get_all("x-device-id").iter().count(), 1);
    assert_eq!(h["x-device-id"], device.id.as_str());
    assert_eq!(h["x-ab-assignments"], "moon_mars=Mars");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert!(!h.contains_key("x-real-ip"));
    let forwarded_for = h["x-forwarded-for"].to_str().unwrap();
    assert!(
        forwarded_for == "203.0.113.7" || forwarded_for.ends_with(", 203.0.113.7"),
        "{forwarded_for}"
    );
    assert!(h.get_all(header::COOKIE).iter().count() <= 1);
    assert!(
        !crate::experiments::device::cookie_pairs(h).any(|(name, _)| name == b"abproxy_admin"),
        "the admin session reached the upstream"
    );
    assert_eq!(h.get_all(header::HOST).iter().count(), 1);
    assert_eq!(parts.uri.authority(), Some(&upstream.authority));
    assert_eq!(parts.version, http::Version::HTTP_11);
}

/// One upstream target for every `headers` run (its metrics and client are built once,
/// and stay reachable: LeakSanitizer reports a leaked `Box` at exit).
fn fuzz_upstream() -> &'static UpstreamTarget {
    static TARGET: std::sync::OnceLock<(crate::counting::metrics::Metrics, UpstreamTarget)> =
        std::sync::OnceLock::new();
    &TARGET
        .get_or_init(|| {
            let metrics = crate::counting::metrics::Metrics::new();
            let config = Upstream {
                name: "mars".into(),
                origin: "127.0.0.1:9002".parse().unwrap(),
                tls: false,
                http2: false,
                ca_file: None,
            };
            let client = crate::transport::upstream_client::build(
                &config,
                None,
                std::time::Duration::from_secs(1),
                PoolConfig {
                    max_idle_per_host: 1,
                    idle_timeout: std::time::Duration::from_secs(1),
                },
            );
            let target = UpstreamTarget::new(&config, &metrics, (client, None));
            (metrics, target)
        })
        .1
}
