//! Config validation, without files: `Config::from_str` with a display path.

use std::path::Path;
use std::time::Duration;

use super::*;

/// The minimal config of PRODUCT.md, accepted as it is.
const MINIMAL: &str = include_str!("../../tests/golden/product_minimal.yaml");

fn e_traffic(c: &Config) -> u32 {
    c.experiments[0].traffic_bp
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_str(text, Path::new("test.yaml"))
}

fn error(text: &str) -> String {
    parse(text).expect_err("config must be refused").to_string()
}

#[test]
fn minimal_config_and_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.admin_listen.to_string(), "127.0.0.1:8081");
    assert_eq!(c.upstreams.len(), 2);
    assert_eq!(c.upstreams[1].origin.as_str(), "127.0.0.1:9002");
    assert_eq!(c.default_upstream, None);
    assert_eq!(c.host_header, HostPolicy::Client);
    assert_eq!(
        c.cookie,
        CookieConfig {
            name: "device_id".into(),
            assignments_name: "ab_assignments".into(),
            max_age: Duration::from_secs(31_536_000),
            domain: None
        }
    );
    assert_eq!(c.data_dir, std::path::PathBuf::from("./data"));
    assert_eq!(
        (
            c.secret_file.as_ref(),
            c.admin_token_file.as_ref(),
            c.qa_override.as_ref()
        ),
        (None, None, None)
    );
    assert_eq!(
        (e_traffic(&c), c.experiments[0].target.is_empty()),
        (10_000, true)
    );
    assert_eq!(c.timeouts.connect, Duration::from_secs(2));
    assert_eq!(c.timeouts.upstream_response, Duration::from_secs(30));
    assert_eq!(c.timeouts.header_read, Duration::from_secs(10));
    assert_eq!(c.timeouts.request_body_idle, Duration::from_secs(10));
    assert_eq!(c.timeouts.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.pool.max_idle_per_host, 256);
    let e = &c.experiments[0];
    assert_eq!(
        (e.key.as_str(), e.title.as_str(), e.state),
        ("moon_mars", "Moon/Mars", State::Active)
    );
    assert_eq!(
        e.variants
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>(),
        ["Moon", "Mars"],
        "file order kept"
    );
    assert!(e.is_routing());
}

#[test]
fn listen_and_admin_default_when_absent() {
    let c = parse("upstreams:\n  a: http://127.0.0.1:1\n").unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.admin_listen.to_string(), "127.0.0.1:8081");
    assert!(c.experiments.is_empty());
}

#[test]
fn every_setting_can_be_given() {
    let text = MINIMAL.to_string()
        + "default_upstream: mars
host_header: upstream
cookie: { name: vid, max_age: 30d, domain: Example.org }
timeouts: { connect: 250ms, upstream_response: 5s, header_read: 3s, request_body_idle: 4s, shutdown_grace: 1m }
pool: { max_idle_per_host: 8, idle_timeout: 2h }
";
    let c = parse(&text).unwrap();
    assert_eq!(c.default_upstream.as_deref(), Some("mars"));
    assert_eq!(c.host_header, HostPolicy::Upstream);
    assert_eq!(c.cookie.name, "vid");
    assert_eq!(c.cookie.max_age, Duration::from_secs(30 * 86_400));
    assert_eq!(c.cookie.domain.as_deref(), Some("example.org"));
    assert_eq!(c.timeouts.connect, Duration::from_millis(250));
    assert_eq!(c.timeouts.request_body_idle, Duration::from_secs(4));
    assert_eq!(c.timeouts.shutdown_grace, Duration::from_secs(60));
    assert_eq!(c.pool.max_idle_per_host, 8);
    assert_eq!(c.pool.idle_timeout, Duration::from_secs(7200));
}

#[test]
fn durations() {
    use parse::fields::parse_duration;
    assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
    assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
    assert!(parse_duration("15").unwrap_err().contains("needs a unit"));
    assert!(parse_duration("1.5s").is_err());
    assert!(parse_duration("-1s").is_err());
    assert!(parse_duration("3 s").is_err());
    assert!(parse_duration("2w").unwrap_err().contains("unknown unit"));
    assert!(parse_duration("99999999999999999d")
        .unwrap_err()
        .contains("too long"));
}

#[test]
fn tag_only_experiments_and_match() {
    let c = parse(
        &(MINIMAL.to_string()
            + "  white_gold_btn:
    state: rollout
    rollout_variant: Gold
    match: { path_prefix: /shop, host: Shop.Example }
    variants:
      White: { weight: 1 }
      Gold: { weight: 0 }
    fallback: White
"),
    )
    .unwrap();
    let e = &c.experiments[1];
    assert!(!e.is_routing());
    assert_eq!(e.title, "white_gold_btn", "title defaults to the key");
    assert_eq!(e.rollout_variant.as_deref(), Some("Gold"));
    assert_eq!(
        e.matcher,
        Match {
            path_prefix: Some("/shop".into()),
            host: Some("shop.example".into())
        }
    );
}

#[test]
fn refused_configs_name_the_place_and_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("variant", "      Mars: { weight: 50, upstream: mars }", "      Mars: { weight: 50 }"),
        ("ftp", "http://127.0.0.1:9002", "ftp://127.0.0.1:9002"),
        ("path", "http://127.0.0.1:9002", "http://127.0.0.1:9002/base"),
        ("scheme", "http://127.0.0.1:9002", "127.0.0.1:9002"),
        ("rollout", "state: active", "state: rollout"),
        ("upper key", "  moon_mars:", "  Moon_mars:"),
        ("bad variant", "      Mars: {", "      Mars!: {"),
        ("bad upstream name", "  mars: http", "  9mars: http"),
        ("weight range", "weight: 50, upstream: mars", "weight: 1000001, upstream: mars"),
        ("negative", "weight: 50, upstream: mars", "weight: -1, upstream: mars"),
        ("variants list", "    variants:\n      Moon: { weight: 50, upstream: moon }\n      Mars: { weight: 50, upstream: mars }", "    variants: [Moon, Mars]"),
        ("empty variants", "    variants:\n      Moon: { weight: 50, upstream: moon }\n      Mars: { weight: 50, upstream: mars }", "    variants: {}"),
        ("no fallback", "    fallback: Moon\n", ""),
        ("no state", "    state: active\n", ""),
    ];
    let expected: &[&str] = &[
        "test.yaml:13:7: experiments.moon_mars.variants.Mars: missing `upstream`",
        "test.yaml:6:3: upstreams.mars: `ftp://127.0.0.1:9002` must start with http:// or https://",
        "test.yaml:6:3: upstreams.mars: `http://127.0.0.1:9002/base`: an upstream URL cannot have a path",
        "test.yaml:6:3: upstreams.mars: `127.0.0.1:9002` must start with http:// or https://",
        "test.yaml:10:5: experiments.moon_mars.state: state `rollout` needs `rollout_variant`",
        "test.yaml:8:3: experiments.Moon_mars: `Moon_mars` is not a valid experiment key",
        "test.yaml:13:7: experiments.moon_mars.variants.Mars!: `Mars!` is not a valid variant name",
        "test.yaml:6:3: upstreams.9mars: `9mars` is not a valid upstream name",
        "test.yaml:13:15: experiments.moon_mars.variants.Mars.weight: `1000001` is not a whole number from 0 to 1000000",
        "test.yaml:13:15: experiments.moon_mars.variants.Mars.weight: `-1` is not a whole number",
        "test.yaml:11:5: experiments.moon_mars.variants: expected a mapping",
        "test.yaml:11:5: experiments.moon_mars.variants: an experiment needs at least one variant",
        "test.yaml:8:3: experiments.moon_mars: missing key `fallback`",
        "test.yaml:8:3: experiments.moon_mars: missing key `state`",
    ];
    for ((name, from, to), want) in cases.iter().zip(expected) {
        assert!(
            MINIMAL.contains(from),
            "case {name}: {from:?} not in the config"
        );
        let got = error(&MINIMAL.replacen(from, to, 1));
        assert!(
            got.starts_with(want),
            "case {name}:\n  got  {got}\n  want {want}…"
        );
    }
}

#[test]
fn empty_or_upstreamless_files_are_refused() {
    assert!(error("").contains("needs at least one upstream"));
    assert!(error("listen: 127.0.0.1:1\n").contains("needs at least one upstream"));
    assert!(error("just text").contains("expected a mapping"));
}

#[test]
fn cookie_settings_are_validated() {
    let base = "upstreams:\n  a: http://127.0.0.1:1\n";
    assert!(error(&format!("{base}cookie: {{ name: 'a b' }}\n")).contains("cookie.name"));
    assert!(error(&format!("{base}cookie: {{ name: 'a;b' }}\n")).contains("cookie.name"));
    assert!(
        error(&format!("{base}cookie: {{ domain: 'x.com; Secure' }}\n")).contains("cookie.domain")
    );
    assert!(error(&format!("{base}cookie: {{ colour: blue }}\n"))
        .contains("cookie.colour: unknown key"));
}

#[test]
fn host_header_and_default_upstream_are_validated() {
    let base = "upstreams:\n  a: http://127.0.0.1:1\n";
    assert_eq!(
        error(&format!("{base}host_header: origin\n")),
        "test.yaml:3:1: host_header: `origin` is not one of: client, upstream"
    );
    assert_eq!(
        error(&format!("{base}default_upstream: b\n")),
        "test.yaml:3:1: default_upstream: unknown upstream `b` (defined upstreams: a)"
    );
}

#[test]
fn addresses_and_ports_that_cannot_work_are_refused() {
    let up = |url: &str| error(&format!("upstreams:\n  a: {url}\n"));
    assert!(
        up("http://127.0.0.1:90010").contains("invalid port"),
        "{}",
        up("http://127.0.0.1:90010")
    );
    assert!(up("http://127.0.0.1:0").contains("invalid port"));
    assert!(up("http://:9001").contains("has no host"));
    assert!(parse("upstreams:\n  a: http://[::1]:9001\n  b: http://backend.internal\n").is_ok());
    assert_eq!(
        error("listen: 127.0.0.1:9000\nadmin:\n  listen: 127.0.0.1:9000\nupstreams:\n  a: http://127.0.0.1:1\n"),
        "test.yaml:2:1: admin.listen: `127.0.0.1:9000` is also `listen`; use another port"
    );
    assert_eq!(
        error("listen: 0.0.0.0:8080\nupstreams:\n  a: http://127.0.0.1:1\n  self: http://127.0.0.1:8080\n"),
        "test.yaml:4:3: upstreams.self: `127.0.0.1:8080` is this proxy's own `listen` address"
    );
    assert!(error("upstreams: {}\n")
        .starts_with("test.yaml:1:1: upstreams: a config needs at least one upstream"));
    assert!(error("listen: 127.0.0.1:1\nupstreams: {}\n").starts_with("test.yaml:2:1: upstreams:"));
}

#[test]
fn durations_that_would_fail_every_request_are_refused() {
    let base = "upstreams:\n  a: http://127.0.0.1:1\n";
    for key in [
        "connect",
        "upstream_response",
        "header_read",
        "request_body_idle",
    ] {
        assert!(
            error(&format!("{base}timeouts:\n  {key}: 0ms\n")).contains("must be at least 1ms"),
            "{key}"
        );
    }
    assert!(
        parse(&format!("{base}timeouts:\n  shutdown_grace: 0s\n")).is_ok(),
        "no grace is a valid choice"
    );
    assert!(error(&format!("{base}pool:\n  idle_timeout: 0s\n")).contains("at least 1ms"));
    assert!(
        error(&format!("{base}cookie:\n  max_age: 500ms\n")).contains("must be at least 1000ms")
    );
}

#[test]
fn experiment_lifecycle_settings() {
    let text = MINIMAL.to_string()
        + "data_dir: /var/lib/abproxy
secret_file: /etc/abproxy/secret
qa_override: { query_param: ab_force, header: X-AB-Force }
admin_extra: 1
";
    assert!(error(&text).contains("admin_extra: unknown key"));
    let text = text
        .replace("admin_extra: 1\n", "")
        .replace(
            "  listen: 127.0.0.1:8081",
            "  listen: 127.0.0.1:8081\n  token_file: /etc/abproxy/token",
        )
        .replace(
            "    fallback: Moon",
            "    fallback: Moon
    traffic: 12.5
    target:
      device: [mobile, desktop]
      headers: { X-Country: DE }
      header_matches: { User-Agent: 'Firefox/\\d+' }
      cookies: { plan: pro }
      cookies_present: [beta]
      query: { ref: news }",
        );
    let c = parse(&text).unwrap();
    assert_eq!(c.data_dir, std::path::PathBuf::from("/var/lib/abproxy"));
    assert_eq!(
        c.secret_file.as_deref(),
        Some(std::path::Path::new("/etc/abproxy/secret"))
    );
    assert_eq!(
        c.admin_token_file.as_deref(),
        Some(std::path::Path::new("/etc/abproxy/token"))
    );
    assert_eq!(
        c.qa_override.as_ref().unwrap().header.as_ref().unwrap(),
        "x-ab-force"
    );
    let e = &c.experiments[0];
    assert_eq!(e.traffic_bp, 1_250);
    assert_eq!(
        e.state_pos,
        Pos { line: 11, col: 5 },
        "one line added above it"
    );
    let t = &e.target;
    assert_eq!(t.devices.len(), 2);
    assert_eq!(t.headers[0].0, "x-country");
    assert_eq!(t.header_matches[0].1 .0.as_str(), "Firefox/\\d+");
    assert_eq!(t.cookies, vec![("plan".to_string(), "pro".to_string())]);
    assert_eq!(t.cookies_present, vec!["beta".to_string()]);
    assert_eq!(t.query, vec![("ref".to_string(), "news".to_string())]);
}

#[test]
fn experiment_lifecycle_settings_are_validated() {
    let with = |extra: &str| {
        error(&MINIMAL.replace(
            "    fallback: Moon",
            &format!("    fallback: Moon\n{extra}"),
        ))
    };
    assert!(with("    traffic: 101").contains("not a percentage from 0 to 100"));
    assert!(with("    traffic: 1.234").contains("at most two decimals"));
    assert!(with("    traffic: -5").contains("not a percentage"));
    assert!(with("    target: { device: [bot] }").contains("bots are never part of an experiment"));
    assert!(with("    target: { device: tablet }").contains("`tablet` is not a device class"));
    assert!(with("    target: { header_matches: { X-A: '(' } }").contains("not a valid regex"));
    assert!(with("    target: { headers: { 'bad header': x } }").contains("is not a header name"));
    assert!(with("    target: { colour: red }").contains("unknown key `colour`"));
    assert!(error(&(MINIMAL.to_string() + "qa_override: {}\n"))
        .contains("give `query_param`, `header` or both"));
    assert!(
        error(&(MINIMAL.to_string() + "cookie: { assignments_name: device_id }\n"))
            .contains("must differ")
    );
}

#[test]
fn export_and_control_are_optional_and_checked() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.export, None);
    assert_eq!(c.experiments[0].control, "Moon", "the fallback by default");
    let with = format!(
        "{MINIMAL}export:\n  dir: /var/lib/abproxy/export\n  max_file_size: 512KiB\n  keep_files: 0\n"
    );
    assert_eq!(
        parse(&with).unwrap().export,
        Some(ExportConfig {
            dir: "/var/lib/abproxy/export".into(),
            max_file_size: 512 * 1024,
            keep_files: 0
        })
    );
    let defaults = parse(&format!("{MINIMAL}export:\n  dir: out\n"))
        .unwrap()
        .export
        .unwrap();
    assert_eq!(
        (defaults.max_file_size, defaults.keep_files),
        (64 << 20, 10)
    );
    let lines = MINIMAL.lines().count();
    assert_eq!(
        error(&format!("{MINIMAL}export:\n  dir: out\n  max_file_size: 12 parsecs\n")),
        format!(
            "test.yaml:{}:3: export.max_file_size: `12 parsecs` is not a size from 1KiB to 4GiB (e.g. 64KiB, 1MiB, 1000000)",
            lines + 3
        )
    );
    assert!(
        error(&format!("{MINIMAL}export:\n  max_file_size: 1MiB\n")).contains("missing key `dir`")
    );
    let control = MINIMAL.replace(
        "    fallback: Moon\n",
        "    fallback: Moon\n    control: Mars\n",
    );
    assert_eq!(parse(&control).unwrap().experiments[0].control, "Mars");
    let unknown = MINIMAL.replace(
        "    fallback: Moon\n",
        "    fallback: Moon\n    control: Venus\n",
    );
    assert!(error(&unknown).contains("experiments.moon_mars.control: `Venus` is not a variant"));
}

#[test]
fn limits_default_and_are_bounded() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(
        c.limits,
        Limits {
            max_connections: 10_000,
            max_header_bytes: 65_536,
            max_headers: 100,
            max_body_bytes: 65_536,
        }
    );
    let given = parse(&format!(
        "{MINIMAL}limits:\n  max_connections: 2\n  max_header_bytes: 16KiB\n  max_headers: 20\n  max_body_bytes: 1000000\n"
    ))
    .unwrap();
    assert_eq!(
        given.limits,
        Limits {
            max_connections: 2,
            max_header_bytes: 16_384,
            max_headers: 20,
            max_body_bytes: 1_000_000,
        }
    );
    let lines = MINIMAL.lines().count();
    assert_eq!(
        error(&format!("{MINIMAL}limits:\n  max_connections: 0\n")),
        format!(
            "test.yaml:{}:3: limits.max_connections: `0` is not a whole number from 1 to 1000000",
            lines + 2
        )
    );
    assert!(
        error(&format!("{MINIMAL}limits:\n  max_header_bytes: 4KiB\n"))
            .contains("limits.max_header_bytes: `4KiB` is not a size from 8KiB to 1MiB")
    );
    assert!(error(&format!("{MINIMAL}limits:\n  max_body_bytes: 1TB\n"))
        .contains("limits.max_body_bytes: `1TB` is not a size from 1KiB to 16MiB"));
    assert!(error(&format!("{MINIMAL}limits:\n  max_requests: 5\n"))
        .contains("unknown key `max_requests`"));
}

#[test]
fn upstream_down_policy() {
    assert_eq!(
        parse(MINIMAL).unwrap().experiments[0].upstream_down,
        UpstreamDown::Fail
    );
    let with = |v: &str| {
        MINIMAL.replace(
            "    fallback: Moon\n",
            &format!("    fallback: Moon\n    upstream_down: {v}\n"),
        )
    };
    assert_eq!(
        parse(&with("fallback")).unwrap().experiments[0].upstream_down,
        UpstreamDown::Fallback
    );
    assert!(error(&with("retry"))
        .contains("experiments.moon_mars.upstream_down: `retry` is not one of: fail, fallback"));
    let tag_only = MINIMAL
        .replace(", upstream: moon", "")
        .replace(", upstream: mars", "");
    assert!(
        parse(&tag_only).is_ok(),
        "the tag-only variant of MINIMAL parses"
    );
    assert!(error(&tag_only.replace(
        "    fallback: Moon\n",
        "    fallback: Moon\n    upstream_down: fallback\n"
    ))
    .contains("`fallback` needs a routing experiment"));
}

#[test]
fn tls_needs_both_files() {
    assert_eq!(parse(MINIMAL).unwrap().tls, None);
    let c = parse(&format!(
        "{MINIMAL}tls:\n  cert: certs/full.pem\n  key: certs/key.pem\n"
    ))
    .unwrap();
    assert_eq!(
        c.tls,
        Some(TlsConfig {
            cert: "certs/full.pem".into(),
            key: "certs/key.pem".into()
        })
    );
    assert!(error(&format!("{MINIMAL}tls:\n  cert: full.pem\n"))
        .contains("tls: missing key `key` (a PEM file)"));
    assert!(
        error(&format!("{MINIMAL}tls:\n  cert: a\n  key: b\n  ca: c\n"))
            .contains("unknown key `ca`")
    );
}

#[test]
fn upstreams_by_url_or_with_options() {
    let c = parse(&MINIMAL.replace(
        "  mars: http://127.0.0.1:9002",
        "  mars: { url: \"https://mars.internal\", http2: true, ca_file: ca.pem }",
    ))
    .unwrap();
    let mars = &c.upstreams[1];
    assert_eq!(
        (mars.origin.as_str(), mars.tls, mars.http2, mars.port()),
        ("mars.internal", true, true, 443)
    );
    assert_eq!(mars.ca_file.as_deref(), Some(Path::new("ca.pem")));
    let moon = &c.upstreams[0];
    assert_eq!((moon.tls, moon.http2, moon.port()), (false, false, 9001));
    let h2c = parse(&MINIMAL.replace(
        "  mars: http://127.0.0.1:9002",
        "  mars: { url: \"http://127.0.0.1:9002\", http2: true }",
    ))
    .unwrap();
    assert_eq!(
        (h2c.upstreams[1].tls, h2c.upstreams[1].http2),
        (false, true)
    );
    let refused = |with: &str| error(&MINIMAL.replace("  mars: http://127.0.0.1:9002", with));
    assert!(
        refused("  mars: { url: \"http://127.0.0.1:9002\", ca_file: ca.pem }")
            .contains("`ca_file` is for https:// upstreams")
    );
    assert!(
        refused("  mars: { url: \"http://127.0.0.1:9002\", http2: yes }")
            .contains("upstreams.mars.http2: `yes` is not true or false")
    );
    assert!(refused("  mars: { http2: true }").contains("upstreams.mars: missing key `url`"));
}
