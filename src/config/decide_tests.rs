//! `experiments.K.decide` and the top-level `notify`: every accepted form with its values,
//! and every refusal with its message and place (`test.yaml:LINE:COL`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const DAY: Duration = Duration::from_secs(86_400);

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_str(text, Path::new("test.yaml"))
}

fn error(text: &str) -> String {
    parse(text).expect_err("config must be refused").to_string()
}

/// A two-variant tag-only experiment with two goals; `decide:` is line 11, column 5, and
/// the `extra` lines start at line 12 (their keys at column 7).
fn with_decide(extra: &str) -> String {
    format!(
        "upstreams:
  a: http://127.0.0.1:9001
experiments:
  headline:
    state: active
    variants: {{ A: {{ weight: 1 }}, B: {{ weight: 1 }} }}
    fallback: A
    goals:
      click: {{ event: button_click }}
      signup: {{ event: signup }}
    decide:
{extra}"
    )
}

/// `prometheus:` ahead of [`with_decide`]: its entries are on lines 2…, so the decide's
/// lines move down by `1 + lines of body`.
fn with_prometheus(body: &str, extra: &str) -> String {
    format!("prometheus:\n{body}{}", with_decide(extra))
}

fn decide(text: &str) -> Decide {
    let config = parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    config.experiments[0].decide.clone().expect("a decide")
}

fn defaults() -> Decide {
    Decide {
        mode: Mode::Notify,
        every: Duration::from_secs(3_600),
        min_duration: 7 * DAY,
        min_devices: 1000,
        max_duration: None,
        on_timeout: OnTimeout::Stop,
        counts: BanditCounts::Local,
        promote: Promote {
            goal: "click".into(),
            confidence: 0.95,
        },
        guardrails: Guardrails {
            action: GuardrailAction::Rollback,
            errors: Some(Guardrail {
                max_ratio: 2.0,
                min_requests: 200,
                failures: 3,
            }),
            latency_p95: Some(Guardrail {
                max_ratio: 1.5,
                min_requests: 200,
                failures: 3,
            }),
            srm: true,
        },
        pos: Pos { line: 11, col: 5 },
    }
}

/// The issue's example, in a whole config.
const EXAMPLE: &str = "upstreams:
  moon: http://127.0.0.1:9001
  mars: http://127.0.0.1:9002
experiments:
  moon_mars:
    state: active
    variants:
      Moon: { weight: 50, upstream: moon }
      Mars: { weight: 50, upstream: mars }
    fallback: Moon
    goals:
      signup: { event: signup }
      click: { event: button_click }
    decide:
      mode: notify          # notify (default: record + notify, change nothing) | act
      every: 1h             # evaluation cadence, at Unix-epoch multiples, at least 1s
      min_duration: 7d      # no promotion before the run is this old (0s allowed)
      min_devices: 1000     # per variant, before a promotion or a timeout decision
      max_duration: 28d     # optional; then `on_timeout`
      on_timeout: stop      # stop (→ inactive) | rollout_best | keep
      counts: local         # local | prometheus (as for a bandit; needs prometheus.url)
      promote:
        goal: click         # default: the bandit's goal, else the first goal
        confidence: 0.95
      guardrails:
        action: rollback    # rollback | pause
        errors:  { max_ratio: 2.0, min_requests: 200, failures: 3 }
        latency_p95: { max_ratio: 1.5, min_requests: 200, failures: 3 }
        srm: true
notify:
  webhook: http://127.0.0.1:9999/hook   # top level; optional
  secret_file: hook.secret              # optional: signs each body
";

#[test]
fn the_issues_example_parses_to_its_values() {
    let config = parse(EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.experiments[0].decide,
        Some(Decide {
            max_duration: Some(28 * DAY),
            pos: Pos { line: 14, col: 5 },
            ..defaults()
        })
    );
    assert_eq!(
        config.notify,
        Some(Notify {
            webhook: "http://127.0.0.1:9999/hook".into(),
            secret_file: Some(PathBuf::from("hook.secret")),
        })
    );
}

#[test]
fn an_empty_decide_gets_the_defaults() {
    assert_eq!(decide(&with_decide("")), defaults());
    assert_eq!(
        decide(&with_decide("      promote:\n      guardrails:\n")),
        defaults()
    );
    let config = parse(&with_decide("")).unwrap();
    assert_eq!(config.notify, None);
}

#[test]
fn every_decide_key_can_be_given() {
    let d = decide(&with_prometheus(
        "  url: http://127.0.0.1:9090\n  settle: 30s\n",
        "      mode: act
      every: 1m
      min_duration: 0s
      min_devices: 0
      max_duration: 90s
      on_timeout: rollout_best
      counts: prometheus
      promote: { goal: signup, confidence: 0.99 }
      guardrails:
        action: pause
        errors: false
        latency_p95: { max_ratio: 3, min_requests: 1, failures: 1 }
        srm: false
",
    ));
    assert_eq!(
        d,
        Decide {
            mode: Mode::Act,
            every: Duration::from_secs(60),
            min_duration: Duration::ZERO,
            min_devices: 0,
            max_duration: Some(Duration::from_secs(90)),
            on_timeout: OnTimeout::RolloutBest,
            counts: BanditCounts::Prometheus,
            promote: Promote {
                goal: "signup".into(),
                confidence: 0.99,
            },
            guardrails: Guardrails {
                action: GuardrailAction::Pause,
                errors: None,
                latency_p95: Some(Guardrail {
                    max_ratio: 3.0,
                    min_requests: 1,
                    failures: 1,
                }),
                srm: false,
            },
            pos: Pos { line: 14, col: 5 },
        }
    );
    let on_timeout =
        |word: &str| decide(&with_decide(&format!("      on_timeout: {word}\n"))).on_timeout;
    assert_eq!(on_timeout("keep"), OnTimeout::Keep);
    assert_eq!(on_timeout("stop"), OnTimeout::Stop);
    // `max_duration` may equal `min_duration`.
    let d = decide(&with_decide("      max_duration: 7d\n"));
    assert_eq!(d.max_duration, Some(7 * DAY));
}

#[test]
fn a_guardrail_map_may_give_some_keys_and_true_or_false_turn_it_on_or_off() {
    let guardrails =
        |body: &str| decide(&with_decide(&format!("      guardrails:\n{body}"))).guardrails;
    let g =
        guardrails("        errors: { failures: 5 }\n        latency_p95: { max_ratio: 1.25 }\n");
    assert_eq!(
        (g.errors, g.latency_p95),
        (
            Some(Guardrail {
                max_ratio: 2.0,
                min_requests: 200,
                failures: 5
            }),
            Some(Guardrail {
                max_ratio: 1.25,
                min_requests: 200,
                failures: 3
            })
        )
    );
    let g = guardrails("        errors: { min_requests: 50 }\n        latency_p95: false\n");
    assert_eq!(
        (g.errors.map(|e| e.min_requests), g.latency_p95),
        (Some(50), None)
    );
    let g = guardrails("        errors: false\n        latency_p95: true\n        srm: false\n");
    assert_eq!(
        (g.errors, g.latency_p95, g.srm),
        (None, defaults().guardrails.latency_p95, false)
    );
    let g = guardrails("        errors: {}\n");
    assert_eq!(g.errors, defaults().guardrails.errors);
}

#[test]
fn the_promote_goal_defaults_to_the_bandits_else_the_first() {
    let with_bandit = with_decide("").replace(
        "    decide:\n",
        "    bandit: { algorithm: thompson, goal: signup }\n    decide:\n",
    );
    let d = decide(&with_bandit);
    assert_eq!(
        (d.promote.goal.as_str(), d.pos),
        ("signup", Pos { line: 12, col: 5 })
    );
    let d = decide(&with_bandit.replace(
        "    decide:\n",
        "    decide: { promote: { goal: click } }\n",
    ));
    assert_eq!(
        d.promote.goal, "click",
        "an explicit goal over the bandit's"
    );
    let first_signup = with_decide("").replace(
        "      click: { event: button_click }\n      signup: { event: signup }\n",
        "      signup: { event: signup }\n      click: { event: button_click }\n",
    );
    assert_eq!(decide(&first_signup).promote.goal, "signup");
}

#[test]
fn flow_style_and_a_routing_experiment_and_no_decide() {
    let text = "upstreams:
  a: http://127.0.0.1:9001
  b: http://127.0.0.1:9002
experiments:
  moon_mars:
    state: active
    variants: { Moon: { weight: 1, upstream: a }, Mars: { weight: 3, upstream: b } }
    fallback: Moon
    goals: { buy: { request: { path_prefix: /buy } } }
    decide: { mode: act, every: 30m, guardrails: { errors: { max_ratio: 1.1 }, srm: false } }
  other:
    state: active
    variants: { A: { weight: 1 }, B: { weight: 1 } }
    fallback: A
";
    let config = parse(text).unwrap();
    let d = config.experiments[0].decide.clone().unwrap();
    assert_eq!(
        (
            d.mode,
            d.every,
            d.promote.goal.as_str(),
            d.guardrails.errors.unwrap().max_ratio,
            d.guardrails.srm,
            d.pos
        ),
        (
            Mode::Act,
            Duration::from_secs(1_800),
            "buy",
            1.1,
            false,
            Pos { line: 10, col: 5 }
        )
    );
    assert_eq!(config.experiments[1].decide, None);
}

#[test]
fn refused_decides_name_the_place_and_the_key() {
    let one_variant = with_decide("").replace(", B: { weight: 1 }", "");
    let no_goals = with_decide("").replace(
        "    goals:\n      click: { event: button_click }\n      signup: { event: signup }\n",
        "",
    );
    let with_bandit = |extra: &str| {
        with_decide(extra).replace(
            "    decide:\n",
            "    bandit: { algorithm: thompson, goal: click }\n    decide:\n",
        )
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("unknown key", with_decide("      speed: 2\n"),
         "test.yaml:12:7: experiments.headline.decide.speed: unknown key `speed` (expected one of: mode, every, min_duration, min_devices, max_duration, on_timeout, counts, promote, guardrails)"),
        ("not a mapping", with_decide("").replace("    decide:\n", "    decide: act\n"),
         "test.yaml:11:5: experiments.headline.decide: expected a mapping, found a scalar"),
        ("one variant", one_variant,
         "test.yaml:11:5: experiments.headline.decide: decide compares variants with a control: it needs at least two variants"),
        ("no goals", no_goals,
         "test.yaml:8:5: experiments.headline.decide: decide promotes on a goal; add one under `experiments.headline.goals`"),
        ("unknown mode", with_decide("      mode: auto\n"),
         "test.yaml:12:7: experiments.headline.decide.mode: `auto` is not one of: notify, act"),
        ("every under 1s", with_decide("      every: 999ms\n"),
         "test.yaml:12:7: experiments.headline.decide.every: must be at least 1000ms"),
        ("every without unit", with_decide("      every: 60\n"),
         "test.yaml:12:7: experiments.headline.decide.every: `60` needs a unit (ms, s, m, h or d)"),
        ("min_duration without unit", with_decide("      min_duration: 7\n"),
         "test.yaml:12:7: experiments.headline.decide.min_duration: `7` needs a unit (ms, s, m, h or d)"),
        ("negative min_devices", with_decide("      min_devices: -1\n"),
         "test.yaml:12:7: experiments.headline.decide.min_devices: `-1` is not a whole number from 0 to 1000000000"),
        ("max_duration shorter than min_duration", with_decide("      max_duration: 6d\n"),
         "test.yaml:12:7: experiments.headline.decide.max_duration: `max_duration` (6d) is shorter than `min_duration` (7d): the run would time out before a promotion may happen"),
        ("max_duration not above every", with_decide("      min_duration: 0s\n      every: 2h\n      max_duration: 2h\n"),
         "test.yaml:14:7: experiments.headline.decide.max_duration: `max_duration` (2h) must be longer than `every` (2h): the first evaluation would already be the timeout"),
        ("max_duration of 0s", with_decide("      min_duration: 0s\n      max_duration: 0s\n"),
         "test.yaml:13:7: experiments.headline.decide.max_duration: `max_duration` (0s) must be longer than `every` (1h)"),
        ("unknown on_timeout", with_decide("      on_timeout: rollback\n"),
         "test.yaml:12:7: experiments.headline.decide.on_timeout: `rollback` is not one of: stop, rollout_best, keep"),
        ("prometheus counts without prometheus", with_decide("      counts: prometheus\n"),
         "test.yaml:12:7: experiments.headline.decide.counts: `counts: prometheus` needs the top-level `prometheus: { url: http://HOST:9090 }` that scrapes every replica"),
        ("unknown counts", with_decide("      counts: remote\n"),
         "test.yaml:12:7: experiments.headline.decide.counts: `remote` is not one of: local, prometheus"),
        ("every not above settle", with_prometheus("  url: http://127.0.0.1:9090\n  settle: 1m\n", "      counts: prometheus\n      every: 1m\n"),
         "test.yaml:16:7: experiments.headline.decide: `every` (1m) must be longer than `prometheus.settle` (1m): the counts of each boundary are read `settle` after it"),
        ("… pointed at counts when every is the default", with_prometheus("  url: http://127.0.0.1:9090\n  settle: 2h\n", "      counts: prometheus\n"),
         "test.yaml:15:7: experiments.headline.decide: `every` (1h) must be longer than `prometheus.settle` (2h)"),
        ("promote not a mapping", with_decide("      promote: click\n"),
         "test.yaml:12:7: experiments.headline.decide.promote: expected a mapping, found a scalar"),
        ("unknown promote key", with_decide("      promote: { metric: click }\n"),
         "test.yaml:12:18: experiments.headline.decide.promote.metric: unknown key `metric` (expected one of: goal, confidence)"),
        ("unknown goal", with_decide("      promote:\n        goal: purchase\n"),
         "test.yaml:13:9: experiments.headline.decide.promote.goal: `purchase` is not a goal of the experiment (goals: click, signup)"),
        ("confidence of 1", with_decide("      promote:\n        confidence: 1\n"),
         "test.yaml:13:9: experiments.headline.decide.promote.confidence: `1` is not a number strictly between 0 and 1 (e.g. 0.95)"),
        ("confidence of 0", with_decide("      promote:\n        confidence: 0.0\n"),
         "test.yaml:13:9: experiments.headline.decide.promote.confidence: `0.0` is not a number strictly between 0 and 1"),
        ("confidence as a percentage", with_decide("      promote:\n        confidence: 95%\n"),
         "test.yaml:13:9: experiments.headline.decide.promote.confidence: `95%` is not a number strictly between 0 and 1"),
        ("guardrails not a mapping", with_decide("      guardrails: off\n"),
         "test.yaml:12:7: experiments.headline.decide.guardrails: expected a mapping, found a scalar"),
        ("unknown guardrail", with_decide("      guardrails:\n        cpu: { max_ratio: 2 }\n"),
         "test.yaml:13:9: experiments.headline.decide.guardrails.cpu: unknown key `cpu` (expected one of: action, errors, latency_p95, srm)"),
        ("unknown action", with_decide("      guardrails:\n        action: freeze\n"),
         "test.yaml:13:9: experiments.headline.decide.guardrails.action: `freeze` is not one of: rollback, pause"),
        ("pause with a bandit", with_bandit("      guardrails:\n        action: pause\n"),
         "test.yaml:14:9: experiments.headline.decide.guardrails.action: `pause` sets a variant's weight, and here the bandit owns the weights: use `rollback`"),
        ("a guardrail neither a mapping nor false", with_decide("      guardrails:\n        errors: off\n"),
         "test.yaml:13:9: experiments.headline.decide.guardrails.errors: expected a mapping { max_ratio, min_requests, failures } or `false`, found a scalar"),
        ("a guardrail as a list", with_decide("      guardrails:\n        latency_p95: [1.5]\n"),
         "test.yaml:13:9: experiments.headline.decide.guardrails.latency_p95: expected a mapping { max_ratio, min_requests, failures } or `false`, found a list"),
        ("unknown guardrail key", with_decide("      guardrails:\n        errors:\n          ratio: 2\n"),
         "test.yaml:14:11: experiments.headline.decide.guardrails.errors.ratio: unknown key `ratio` (expected one of: max_ratio, min_requests, failures)"),
        ("max_ratio of 1", with_decide("      guardrails:\n        errors:\n          max_ratio: 1\n"),
         "test.yaml:14:11: experiments.headline.decide.guardrails.errors.max_ratio: `1` must be above 1: a ratio of 1 or less would flag a variant as good as the control"),
        ("max_ratio under 1", with_decide("      guardrails:\n        latency_p95:\n          max_ratio: 0.5\n"),
         "test.yaml:14:11: experiments.headline.decide.guardrails.latency_p95.max_ratio: `0.5` must be above 1"),
        ("max_ratio not a number", with_decide("      guardrails:\n        errors:\n          max_ratio: double\n"),
         "test.yaml:14:11: experiments.headline.decide.guardrails.errors.max_ratio: `double` is not a number above 1 (e.g. 2.0)"),
        ("min_requests of 0", with_decide("      guardrails:\n        errors:\n          min_requests: 0\n"),
         "test.yaml:14:11: experiments.headline.decide.guardrails.errors.min_requests: `0` is not a whole number from 1 to 1000000000"),
        ("failures of 0", with_decide("      guardrails:\n        latency_p95:\n          failures: 0\n"),
         "test.yaml:14:11: experiments.headline.decide.guardrails.latency_p95.failures: `0` is not a whole number from 1 to 1000000000"),
        ("srm not a boolean", with_decide("      guardrails:\n        srm: yes\n"),
         "test.yaml:13:9: experiments.headline.decide.guardrails.srm: `yes` is not true or false"),
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
fn notify_with_a_webhook_and_optionally_a_secret_file() {
    let notify = |body: &str| {
        parse(&format!("notify:\n{body}{}", with_decide("")))
            .unwrap_or_else(|e| panic!("{e}\n{body}"))
            .notify
            .expect("notify")
    };
    assert_eq!(
        notify("  webhook: https://hooks.example/T0/B1?token=x\n"),
        Notify {
            webhook: "https://hooks.example/T0/B1?token=x".into(),
            secret_file: None,
        }
    );
    assert_eq!(
        notify("  webhook: 'http://[::1]:9999'\n  secret_file: /etc/abproxy/hook.secret\n"),
        Notify {
            webhook: "http://[::1]:9999".into(),
            secret_file: Some(PathBuf::from("/etc/abproxy/hook.secret")),
        }
    );
    // Without any decide, too.
    let text = "upstreams:\n  a: http://127.0.0.1:1\nnotify: { webhook: 'http://h/x' }\n";
    assert_eq!(parse(text).unwrap().notify.unwrap().webhook, "http://h/x");
}

#[test]
fn refused_notify_sections_name_the_place_and_the_key() {
    let cases: &[(&str, &str)] = &[
        ("  secret_file: hook.secret\n", "test.yaml:1:1: notify: missing key `webhook`"),
        ("  webhook: ftp://h/x\n", "test.yaml:2:3: notify.webhook: `ftp://h/x` must start with http:// or https://"),
        ("  webhook: hooks.example/x\n", "test.yaml:2:3: notify.webhook: `hooks.example/x` is not a URL like https://hooks.example/abproxy"),
        ("  webhook: /hook\n", "test.yaml:2:3: notify.webhook: `/hook` must start with http:// or https://"),
        ("  webhook: 'http://'\n", "test.yaml:2:3: notify.webhook: `http://` is not a URL like https://hooks.example/abproxy"),
        ("  webhook: 'a b'\n", "test.yaml:2:3: notify.webhook: `a b` is not a URL like https://hooks.example/abproxy"),
        ("  webhook: http://h:0/x\n", "test.yaml:2:3: notify.webhook: `http://h:0/x` has an invalid port (1–65535)"),
        ("  webhook: http://me:pw@h/x\n", "test.yaml:2:3: notify.webhook: `http://me:pw@h/x`: credentials in webhook URLs are not supported"),
        ("  webhook: [http://h/x]\n", "test.yaml:2:3: notify.webhook: expected a value, found a list"),
        ("  webhook: http://h/x\n  secret_file: [a, b]\n", "test.yaml:3:3: notify.secret_file: expected a value, found a list"),
        ("  webhook: http://h/x\n  retries: 3\n", "test.yaml:3:3: notify.retries: unknown key `retries` (expected one of: webhook, secret_file)"),
    ];
    for (body, want) in cases {
        let got = error(&format!("notify:\n{body}{}", with_decide("")));
        assert!(
            got.starts_with(want),
            "{body:?}:\n  got  {got}\n  want {want}…"
        );
    }
    let got = error("notify: http://h/x\nupstreams:\n  a: http://127.0.0.1:1\n");
    assert!(
        got.starts_with("test.yaml:1:1: notify: expected a mapping, found a scalar"),
        "{got}"
    );
}
