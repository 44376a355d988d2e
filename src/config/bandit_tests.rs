//! `experiments.K.bandit` and the top-level `prometheus`: every accepted form with its
//! values, and every refusal with its message and place (`test.yaml:LINE:COL`).

use std::path::Path;
use std::time::Duration;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_str(text, Path::new("test.yaml"))
}

fn error(text: &str) -> String {
    parse(text).expect_err("config must be refused").to_string()
}

/// A three-variant tag-only experiment with two goals; `bandit:` is line 11, column 5,
/// and its entries start at line 12, column 7 (`algorithm`), 13 (`goal`), then 14, 15…
/// for the `extra` lines.
fn with_bandit(extra: &str) -> String {
    format!(
        "upstreams:
  a: http://127.0.0.1:9001
experiments:
  headline:
    state: active
    variants: {{ A: {{ weight: 1 }}, B: {{ weight: 1 }}, C: {{ weight: 1 }} }}
    fallback: A
    goals:
      click: {{ event: button_click }}
      signup: {{ event: signup }}
    bandit:
      algorithm: thompson
      goal: click
{extra}"
    )
}

/// `prometheus:` (line 1, column 1 of the result) ahead of [`with_bandit`]; its entries
/// are on lines 2…, so the bandit's lines move down by `1 + lines of body`.
fn with_prometheus(body: &str, extra: &str) -> String {
    format!("prometheus:\n{body}{}", with_bandit(extra))
}

fn bandit(text: &str) -> Bandit {
    let config = parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    config.experiments[0].bandit.clone().expect("a bandit")
}

#[test]
fn a_bandit_with_only_the_required_keys_gets_the_defaults() {
    let b = bandit(&with_bandit(""));
    assert_eq!(
        b,
        Bandit {
            algorithm: BanditAlgorithm::Thompson,
            goal: "click".into(),
            update_every: Duration::from_secs(3_600),
            burn_in: 100,
            min_share: 0.01,
            counts: BanditCounts::Local,
            pos: Pos { line: 11, col: 5 },
        }
    );
}

#[test]
fn every_bandit_key_can_be_given() {
    let b = bandit(&with_bandit(
        "      update_every: 1s\n      burn_in: 0\n      min_share: 0.5%\n      counts: local\n",
    ));
    assert_eq!(
        (b.update_every, b.burn_in, b.min_share, b.counts),
        (Duration::from_secs(1), 0, 0.005, BanditCounts::Local)
    );
    let b = bandit(&with_bandit(
        "      update_every: 1500ms\n      burn_in: 1000000000\n",
    ));
    assert_eq!(
        (b.update_every, b.burn_in),
        (Duration::from_millis(1500), 1_000_000_000)
    );
}

#[test]
fn each_algorithm_and_epsilon() {
    let algorithm = |name: &str, extra: &str| {
        bandit(&with_bandit(extra).replace("algorithm: thompson", &format!("algorithm: {name}")))
            .algorithm
    };
    assert_eq!(algorithm("thompson", ""), BanditAlgorithm::Thompson);
    assert_eq!(algorithm("ucb1", ""), BanditAlgorithm::Ucb1);
    assert_eq!(
        algorithm("epsilon_greedy", ""),
        BanditAlgorithm::EpsilonGreedy { epsilon: 0.1 },
        "default ε"
    );
    for (text, epsilon) in [("0", 0.0), ("1", 1.0), ("0.25", 0.25), ("1.0", 1.0)] {
        assert_eq!(
            algorithm("epsilon_greedy", &format!("      epsilon: {text}\n")),
            BanditAlgorithm::EpsilonGreedy { epsilon },
            "epsilon: {text}"
        );
    }
}

#[test]
fn min_share_as_a_percentage_or_a_fraction() {
    for (text, share) in [
        ("1%", 0.01),
        ("0.01", 0.01),
        ("2.5%", 0.025),
        ("1 %", 0.01),
        ("0", 0.0),
        ("0%", 0.0),
        // Three variants: 99.99 % in floors still leaves something to move.
        ("33.33%", 0.3333),
        ("0.3333", 0.3333),
    ] {
        let b = bandit(&with_bandit(&format!("      min_share: {text}\n")));
        assert!(
            (b.min_share - share).abs() < 1e-15,
            "min_share: {text} → {}",
            b.min_share
        );
    }
}

#[test]
fn flow_style_and_a_second_goal_and_a_routing_experiment() {
    let text = "upstreams:
  a: http://127.0.0.1:9001
  b: http://127.0.0.1:9002
experiments:
  moon_mars:
    state: active
    variants: { Moon: { weight: 0, upstream: a }, Mars: { weight: 3, upstream: b } }
    fallback: Moon
    goals: { click: { event: c }, buy: { request: { path_prefix: /buy } } }
    bandit: { algorithm: ucb1, goal: buy, burn_in: 0 }
";
    let b = bandit(text);
    assert_eq!(
        (b.algorithm, b.goal.as_str(), b.burn_in, b.pos),
        (BanditAlgorithm::Ucb1, "buy", 0, Pos { line: 10, col: 5 }),
        "burn_in 0 lets a weight-0 variant be (the bandit starts at once)"
    );
}

#[test]
fn an_experiment_without_a_bandit_has_none() {
    let text = with_bandit("").replace(
        "    bandit:\n      algorithm: thompson\n      goal: click\n",
        "",
    );
    let config = parse(&text).unwrap();
    assert_eq!(config.experiments[0].bandit, None);
    assert_eq!(config.prometheus, None);
}

#[test]
fn refused_bandits_name_the_place_and_the_key() {
    let one_variant = with_bandit("").replace(", B: { weight: 1 }, C: { weight: 1 }", "");
    let no_goals = with_bandit("").replace(
        "    goals:\n      click: { event: button_click }\n      signup: { event: signup }\n",
        "",
    );
    let cases: Vec<(&str, String, &str)> = vec![
        ("unknown key", with_bandit("      speed: 2\n"),
         "test.yaml:14:7: experiments.headline.bandit.speed: unknown key `speed` (expected one of: algorithm, goal, update_every, burn_in, min_share, epsilon, counts)"),
        ("not a mapping", with_bandit("").replace("    bandit:\n      algorithm: thompson\n      goal: click\n", "    bandit: thompson\n"),
         "test.yaml:11:5: experiments.headline.bandit: expected a mapping, found a scalar"),
        ("empty", with_bandit("").replace("    bandit:\n      algorithm: thompson\n      goal: click\n", "    bandit:\n"),
         "test.yaml:11:5: experiments.headline.bandit: missing key `algorithm`"),
        ("no algorithm", with_bandit("").replace("      algorithm: thompson\n", ""),
         "test.yaml:11:5: experiments.headline.bandit: missing key `algorithm`"),
        ("unknown algorithm", with_bandit("").replace("algorithm: thompson", "algorithm: softmax"),
         "test.yaml:12:7: experiments.headline.bandit.algorithm: `softmax` is not an algorithm (thompson, ucb1 or epsilon_greedy)"),
        ("algorithm list", with_bandit("").replace("algorithm: thompson", "algorithm: [ucb1]"),
         "test.yaml:12:7: experiments.headline.bandit.algorithm: expected a value, found a list"),
        ("no goal", with_bandit("").replace("      goal: click\n", ""),
         "test.yaml:11:5: experiments.headline.bandit: missing key `goal`"),
        ("unknown goal", with_bandit("").replace("goal: click", "goal: purchase"),
         "test.yaml:13:7: experiments.headline.bandit.goal: `purchase` is not a goal of the experiment (goals: click, signup)"),
        ("no goals at all", no_goals,
         "test.yaml:10:7: experiments.headline.bandit.goal: `click` is not a goal of the experiment (it has none: add it under `experiments.headline.goals`)"),
        ("one variant", one_variant,
         "test.yaml:11:5: experiments.headline.bandit: a bandit needs at least two variants to move traffic between"),
        ("update_every under 1s", with_bandit("      update_every: 999ms\n"),
         "test.yaml:14:7: experiments.headline.bandit.update_every: must be at least 1000ms"),
        ("update_every without unit", with_bandit("      update_every: 60\n"),
         "test.yaml:14:7: experiments.headline.bandit.update_every: `60` needs a unit (ms, s, m, h or d)"),
        ("negative burn_in", with_bandit("      burn_in: -1\n"),
         "test.yaml:14:7: experiments.headline.bandit.burn_in: `-1` is not a whole number from 0 to 1000000000"),
        ("fractional burn_in", with_bandit("      burn_in: 2.5\n"),
         "test.yaml:14:7: experiments.headline.bandit.burn_in: `2.5` is not a whole number from 0 to 1000000000"),
        ("floors of 102 %", with_bandit("      min_share: 34%\n"),
         "test.yaml:14:7: experiments.headline.bandit.min_share: `34%` × 3 variants is 102%, which leaves nothing for the bandit to move; it must be under 33.3333%"),
        ("floors of exactly 100 %", with_bandit("").replace(", C: { weight: 1 }", "") + "      min_share: 0.5\n",
         "test.yaml:14:7: experiments.headline.bandit.min_share: `0.5` × 2 variants is 100%, which leaves nothing for the bandit to move; it must be under 50%"),
        ("a bare number is a fraction", with_bandit("      min_share: 5\n"),
         "test.yaml:14:7: experiments.headline.bandit.min_share: `5` is not a share: write a percentage like `1%` or a fraction from 0 to 1 like `0.01`"),
        ("epsilon with thompson", with_bandit("      epsilon: 0.1\n"),
         "test.yaml:14:7: experiments.headline.bandit.epsilon: `epsilon` is for `algorithm: epsilon_greedy` only"),
        ("epsilon with ucb1", with_bandit("      epsilon: 0.1\n").replace("thompson", "ucb1"),
         "test.yaml:14:7: experiments.headline.bandit.epsilon: `epsilon` is for `algorithm: epsilon_greedy` only"),
        ("epsilon over 1", with_bandit("      epsilon: 1.5\n").replace("thompson", "epsilon_greedy"),
         "test.yaml:14:7: experiments.headline.bandit.epsilon: `1.5` is not a number from 0 to 1 (e.g. 0.1)"),
        ("prometheus counts without prometheus", with_bandit("      counts: prometheus\n"),
         "test.yaml:14:7: experiments.headline.bandit.counts: `counts: prometheus` needs the top-level `prometheus: { url: http://HOST:9090 }` that scrapes every replica"),
        ("unknown counts", with_bandit("      counts: remote\n"),
         "test.yaml:14:7: experiments.headline.bandit.counts: `remote` is not one of: local, prometheus"),
        ("a weight-0 variant never reaches the burn-in", with_bandit("").replace("C: { weight: 1 }", "C: { weight: 0 }"),
         "test.yaml:11:5: experiments.headline.bandit: variant `C` has weight 0, so it gets no devices in the burn-in and the bandit would never start (it waits for 100 devices in every variant); give every variant a positive weight"),
        ("… pointed at burn_in when given", with_bandit("      burn_in: 5\n").replace("C: { weight: 1 }", "C: { weight: 0 }"),
         "test.yaml:14:7: experiments.headline.bandit: variant `C` has weight 0, so it gets no devices in the burn-in and the bandit would never start (it waits for 5 devices in every variant)"),
        ("settle not shorter than update_every", with_prometheus("  url: http://127.0.0.1:9090\n  settle: 1m\n", "      counts: prometheus\n      update_every: 1m\n"),
         "test.yaml:18:7: experiments.headline.bandit: `update_every` (1m) must be longer than `prometheus.settle` (1m): the counts of each boundary are read `settle` after it"),
        ("… pointed at counts when update_every is the default", with_prometheus("  url: http://127.0.0.1:9090\n  settle: 2h\n", "      counts: prometheus\n"),
         "test.yaml:17:7: experiments.headline.bandit: `update_every` (1h) must be longer than `prometheus.settle` (2h)"),
    ];
    for (name, text, want) in &cases {
        let got = error(text);
        assert!(
            got.starts_with(want),
            "case {name}:\n  got  {got}\n  want {want}…\n{text}"
        );
    }
}

#[test]
fn values_that_are_not_shares_or_epsilons_are_refused() {
    for text in [
        "150%", "-1%", "1e-2", ".5", "5.", "inf", "NaN", "abc", "%", "1%%", "0x1",
    ] {
        let got = error(&with_bandit(&format!("      min_share: '{text}'\n")));
        assert!(
            got.starts_with(&format!(
                "test.yaml:14:7: experiments.headline.bandit.min_share: `{text}` is not a share"
            )),
            "min_share: {text}: {got}"
        );
    }
    for text in ["-0.1", "1.01", "inf", "NaN", "1e-1", "10%", ".5"] {
        let got = error(
            &with_bandit(&format!("      epsilon: '{text}'\n"))
                .replace("thompson", "epsilon_greedy"),
        );
        assert!(
            got.starts_with(&format!(
                "test.yaml:14:7: experiments.headline.bandit.epsilon: `{text}` is not a number from 0 to 1"
            )),
            "epsilon: {text}: {got}"
        );
    }
}

#[test]
fn prometheus_source_and_its_defaults() {
    let config = parse(&with_prometheus(
        "  url: http://127.0.0.1:9090\n",
        "      counts: prometheus\n",
    ))
    .unwrap();
    let source = config.prometheus.expect("prometheus");
    assert_eq!(source.url, "http://127.0.0.1:9090");
    assert_eq!(source.settle, Duration::from_secs(30), "default settle");
    assert_eq!(
        config.experiments[0].bandit.as_ref().unwrap().counts,
        BanditCounts::Prometheus
    );

    for (url, path) in [
        ("http://prometheus.internal/prometheus", "/prometheus"),
        ("http://10.0.0.5:9090/", "/"),
        ("http://[::1]:9090/a/b/", "/a/b/"),
    ] {
        let config = parse(&with_prometheus(
            &format!("  url: {url}\n  settle: 0s\n"),
            "",
        ))
        .unwrap();
        let source = config.prometheus.unwrap();
        assert_eq!(
            (source.url.path(), source.settle),
            (path, Duration::ZERO),
            "{url}"
        );
    }
    // Without any bandit, too (`analyze` and the lead's updater read it).
    let minimal =
        "upstreams:\n  a: http://127.0.0.1:1\nprometheus: { url: 'http://p:9090', settle: 45s }\n";
    let source = parse(minimal).unwrap().prometheus.unwrap();
    assert_eq!(
        (source.url.host(), source.url.port_u16(), source.settle),
        (Some("p"), Some(9090), Duration::from_secs(45))
    );
}

#[test]
fn refused_prometheus_sources_name_the_place_and_the_key() {
    let cases: &[(&str, &str)] = &[
        ("  settle: 1m\n", "test.yaml:1:1: prometheus: missing key `url`"),
        ("  url: https://127.0.0.1:9090\n", "test.yaml:2:3: prometheus.url: `https://127.0.0.1:9090`: only http:// is supported"),
        ("  url: 127.0.0.1:9090\n", "test.yaml:2:3: prometheus.url: `127.0.0.1:9090` must start with http://"),
        ("  url: /api/v1\n", "test.yaml:2:3: prometheus.url: `/api/v1` must start with http://"),
        ("  url: ftp://p:9090\n", "test.yaml:2:3: prometheus.url: `ftp://p:9090` must start with http://"),
        ("  url: 'http://'\n", "test.yaml:2:3: prometheus.url: `http://` is not a URL like http://127.0.0.1:9090"),
        ("  url: http://p:0\n", "test.yaml:2:3: prometheus.url: `http://p:0` has an invalid port (1–65535)"),
        ("  url: http://p:99999\n", "test.yaml:2:3: prometheus.url: `http://p:99999` has an invalid port (1–65535)"),
        ("  url: http://me:pw@p:9090\n", "test.yaml:2:3: prometheus.url: `http://me:pw@p:9090`: credentials in prometheus URLs are not supported"),
        ("  url: http://p:9090/api?x=1\n", "test.yaml:2:3: prometheus.url: `http://p:9090/api?x=1`: a Prometheus URL cannot have a query"),
        ("  url: [http://p]\n", "test.yaml:2:3: prometheus.url: expected a value, found a list"),
        ("  url: http://p:9090\n  settle: 10\n", "test.yaml:3:3: prometheus.settle: `10` needs a unit"),
        ("  url: http://p:9090\n  scrape: 15s\n", "test.yaml:3:3: prometheus.scrape: unknown key `scrape` (expected one of: url, settle)"),
    ];
    for (body, want) in cases {
        let got = error(&with_prometheus(body, ""));
        assert!(
            got.starts_with(want),
            "{body:?}:\n  got  {got}\n  want {want}…"
        );
    }
    let got = error("prometheus: http://p:9090\nupstreams:\n  a: http://127.0.0.1:1\n");
    assert!(
        got.starts_with("test.yaml:1:1: prometheus: expected a mapping, found a scalar"),
        "{got}"
    );
}
