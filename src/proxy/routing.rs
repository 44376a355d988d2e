//! One request against every experiment: read the device's pinned assignments, decide
//! each experiment that applies, count, pick the upstream, and say which cookies change.
//! Shared by the proxy path and `GET /_ab/assignments`, so both always agree.

use http::{HeaderMap, HeaderValue};

use crate::counting::export::Kind;
use crate::experiments::device::{cookie_value, set_cookie, Device};
use crate::experiments::plan::{ExperimentPlan, Inputs};
use crate::experiments::sticky::{Assignments, Entry, Verified, UNCOUNTED_RUN};
use crate::experiments::targeting::RequestFacts;
use crate::state::snapshot::Snapshot;

/// Where a request is going and what it was assigned.
pub struct Routing<'s> {
    /// The first routing experiment's upstream (index into the snapshot's upstreams).
    pub upstream: Option<usize>,
    /// Every experiment that applies, in config order.
    pub applied: Vec<Applied<'s>>,
    /// The device's pins after this request (written back by `finish`).
    pub pins: Pins,
    /// Assignments to count once the cookie that pins them is known to hold them.
    /// (index of the cookie entry, experiment, variant index).
    newly_counted: Vec<(usize, &'s ExperimentPlan, usize)>,
    qa_cookie: Option<HeaderValue>,
    /// A bot with nothing pinned and no cookie to overwrite: it gets no assignment cookie
    /// (an empty one would say nothing). Other devices with nothing pinned do get the
    /// empty cookie: it marks them as known, so their later assignments are counted.
    bot_without_pins: bool,
}

/// A device's pinned assignments as read from its cookie, changed by the request, and
/// written back when they changed.
pub struct Pins {
    pub assignments: Assignments,
    /// New device, or a valid cookie: assignments and conversions may be counted.
    pub known: bool,
    pub changed: bool,
    /// The request carried an assignment cookie (valid or not).
    pub had_cookie: bool,
}

impl Pins {
    /// Read the assignment cookie. A new device has no pins yet; a known device's are in a
    /// valid cookie. A known device without one (dropped, rejected, signed with another
    /// replica's secret) may have been counted already: `known` is false. `verified`
    /// remembers the cookie for the connection's next request (see [`Verified`]).
    pub fn read(
        snapshot: &Snapshot,
        device: &Device,
        headers: &HeaderMap,
        verified: &mut Verified,
    ) -> Pins {
        if device.is_new {
            // A new device always gets the cookie, so a known device without one has lost it.
            return Pins {
                assignments: Assignments::default(),
                known: true,
                changed: true,
                had_cookie: false,
            };
        }
        match cookie_value(headers, &snapshot.config.cookie.assignments_name) {
            None => Pins {
                assignments: Assignments::default(),
                known: false,
                changed: true,
                had_cookie: false,
            },
            Some(value) => match snapshot
                .signer
                .decode_remembered(&device.id, value, verified)
            {
                Ok(assignments) => Pins {
                    assignments,
                    known: true,
                    changed: false,
                    had_cookie: true,
                },
                Err(rejected) => {
                    // Ignored, never an error: the device is assigned afresh by hash.
                    snapshot.rejected_cookies[rejected as usize].inc();
                    Pins {
                        assignments: Assignments::default(),
                        known: false,
                        changed: true,
                        had_cookie: true,
                    }
                }
            },
        }
    }

    /// Count the goals `reached` says each experiment's pinned variant reached (once per
    /// device, goal and run); returns how many counted.
    pub fn record_goals(
        &mut self,
        snapshot: &Snapshot,
        device_id: &str,
        reached: impl Fn(&ExperimentPlan) -> Vec<(usize, Option<f64>)>,
    ) -> usize {
        let mut counted = 0;
        for experiment in &snapshot.experiments {
            let Some(entry) = self
                .assignments
                .entries
                .iter_mut()
                .find(|e| e.experiment == experiment.key)
            else {
                continue;
            };
            for (goal, value) in reached(experiment) {
                if let Some(variant) =
                    crate::experiments::goals::convert(experiment, entry, goal, value)
                {
                    snapshot.export(
                        Kind::Conversion,
                        experiment,
                        variant,
                        device_id,
                        Some((goal, value)),
                    );
                    counted += 1;
                    self.changed = true;
                }
            }
        }
        counted
    }

    /// The `Set-Cookie` value and how many entries it holds.
    pub fn cookie(&self, snapshot: &Snapshot, device: &Device) -> (HeaderValue, usize) {
        let (value, kept) = snapshot.signer.encode(&device.id, &self.assignments);
        (
            set_cookie(
                &snapshot.config.cookie.assignments_name,
                &value,
                &snapshot.set_cookie_attributes,
            ),
            kept,
        )
    }
}

impl Routing<'_> {
    /// The `Set-Cookie` values for the response (assignments when they changed, QA
    /// override); counts the new assignments the cookie holds.
    pub fn finish(self, snapshot: &Snapshot, device: &Device) -> Vec<HeaderValue> {
        let mut cookies = Vec::new();
        if self.pins.changed && !self.bot_without_pins {
            let (cookie, kept) = self.pins.cookie(snapshot, device);
            cookies.push(cookie);
            // Only pins that fit in the cookie are counted: the others will be assigned again.
            for (index, experiment, variant) in self.newly_counted {
                if index < kept {
                    experiment.count_assignment(variant);
                    snapshot.export(Kind::Assignment, experiment, variant, &device.id, None);
                }
            }
        }
        cookies.extend(self.qa_cookie);
        cookies
    }
}

pub struct Applied<'s> {
    pub experiment: &'s ExperimentPlan,
    /// The variant served (what to render).
    pub served: usize,
    /// The variant pinned in the device's cookie (or just pinned by this request).
    pub pinned: Option<usize>,
}

impl Applied<'_> {
    /// The device's own assignment: pinned, else what the hash gives by the current
    /// weights (shown even when the state serves something else). Only
    /// `/_ab/assignments` needs it, so the proxy path does not hash a second time.
    pub fn assigned(&self, device_id: &str) -> usize {
        self.pinned.unwrap_or_else(|| {
            self.experiment
                .table
                .assign(device_id.as_bytes(), &self.experiment.key)
        })
    }
}

/// The request facts the experiments look at.
pub struct RequestView<'r> {
    pub host: Option<&'r str>,
    pub path: &'r str,
    pub query: Option<&'r str>,
    pub headers: &'r HeaderMap,
}

pub fn route<'s>(
    snapshot: &'s Snapshot,
    device: &Device,
    request: &RequestView,
    verified: &mut Verified,
) -> Routing<'s> {
    let config = &snapshot.config;
    // A new device has no pinned assignments; an old cookie was bound to another id.
    let read = Pins::read(snapshot, device, request.headers, verified);
    // Each experiment takes its pin out (moved into `next`, not copied); what is left
    // belongs to experiments that no longer exist.
    let (mut pinned, pins_known) = (read.assignments, read.known);
    let forced = config
        .qa_override
        .as_ref()
        .map(|qa| crate::experiments::qa::forced(qa, request.headers, request.query))
        .unwrap_or_default();
    let facts = RequestFacts::new(request.headers, request.query);

    let mut routing = Routing {
        upstream: None,
        applied: Vec::with_capacity(snapshot.experiments.len()),
        pins: Pins {
            assignments: Assignments::default(),
            known: pins_known,
            changed: read.changed,
            had_cookie: read.had_cookie,
        },
        newly_counted: Vec::new(),
        qa_cookie: None,
        bot_without_pins: false,
    };
    let mut next = Assignments::default();
    let mut changed = routing.pins.changed;
    let mut newly_counted = Vec::new();
    for experiment in &snapshot.experiments {
        let pinned_entry = pinned.take(&experiment.key);
        if !experiment.applies_to(request.host, request.path) {
            // Not this request's business: keep the pin as it is.
            next.entries.extend(pinned_entry);
            continue;
        }
        let inputs = Inputs {
            device_id: &device.id,
            facts: &facts,
            pinned: pinned_entry.as_ref().map(|e| e.variant.as_str()),
            forced: forced.variant_for(&experiment.key),
        };
        let decision = experiment.decide(&inputs);
        let variant = &experiment.variants[decision.variant];
        if decision.exposed {
            variant.counts.expose();
            snapshot.export(
                Kind::Exposure,
                experiment,
                decision.variant,
                &device.id,
                None,
            );
        }
        let pinned_variant = match decision.newly_assigned_in_run {
            Some(_) => Some(decision.variant),
            None => pinned_entry
                .as_ref()
                .and_then(|e| experiment.variant_index(&e.variant)),
        };
        match (decision.newly_assigned_in_run, pinned_entry) {
            (Some(run), _) => {
                let run = if pins_known { run } else { UNCOUNTED_RUN };
                if pins_known {
                    newly_counted.push((next.entries.len(), experiment, decision.variant));
                }
                next.entries.push(Entry {
                    experiment: experiment.key.clone(),
                    variant: variant.name.clone(),
                    run,
                    period: experiment.period,
                    goals: Vec::new(),
                });
                changed = true;
            }
            (None, Some(entry)) => next.entries.push(entry),
            (None, None) => {}
        }
        if routing.upstream.is_none() {
            routing.upstream = variant.upstream;
        }
        routing.applied.push(Applied {
            experiment,
            served: decision.variant,
            pinned: pinned_variant,
        });
    }
    // Pins of experiments that no longer exist are dropped.
    changed |= pinned
        .entries
        .iter()
        .any(|e| next.get(&e.experiment).is_none());
    routing.bot_without_pins = next.entries.is_empty()
        && !read.had_cookie
        && facts.device_class() == crate::config::target::DeviceClass::Bot;
    routing.pins.assignments = next;
    routing.pins.changed = changed;
    routing.newly_counted = newly_counted;
    if let (Some(value), Some(qa)) = (&forced.set_cookie, &config.qa_override) {
        let name = qa
            .query_param
            .as_deref()
            .expect("a query override comes from the query parameter");
        // A session cookie (no Max-Age): QA overrides end with the browser session.
        let mut attributes = String::from("; Path=/; HttpOnly; SameSite=Lax");
        if value.is_empty() {
            attributes.push_str("; Max-Age=0");
        }
        if config.tls.is_some() {
            attributes.push_str("; Secure");
        }
        routing.qa_cookie = Some(set_cookie(name, value, &attributes));
    }
    routing
}

/// The `X-AB-Assignments` value: `moon_mars=Mars, white_gold_btn=Gold`.
pub fn assignments_header(routing: &Routing) -> Option<HeaderValue> {
    if let [only] = routing.applied.as_slice() {
        return Some(only.experiment.variants[only.served].assignment.clone());
    }
    crate::proxy::headers::assignments_value(routing.applied.iter().map(|a| {
        (
            a.experiment.key.as_str(),
            a.experiment.variants[a.served].name.as_str(),
        )
    }))
}
