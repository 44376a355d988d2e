//! `POST /_ab/events`: client events (a click, a purchase) that may reach goals.
//!
//! The body is one event or an array of up to 100:
//! `{"event": "button_click", "ts": "2026-11-23T12:00:00Z", "params": {"button": "reserve"}}`.
//! The device comes from its `device_id` cookie; its pins (and what it already converted
//! on) from the signed assignment cookie, which the response updates. `ts` is accepted
//! for the client's own records; counting uses the time of arrival.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use serde_json::{json, Map, Value};

use crate::experiments::device::Device;
use crate::proxy::response::{plain_response, ProxyBody};
use crate::proxy::routing::Pins;
use crate::state::snapshot::Snapshot;

pub const PATH: &str = "/_ab/events";
pub const MAX_EVENTS: usize = 100;
const MAX_NAME: usize = 64;

/// One validated event.
#[derive(Debug, PartialEq)]
pub struct Event {
    pub name: String,
    pub params: Map<String, Value>,
}

pub async fn handle(
    snapshot: &Snapshot,
    device: &Device,
    request: Request<Incoming>,
) -> (Response<ProxyBody>, Vec<HeaderValue>) {
    if request.method() != Method::POST {
        let mut response = plain_response(StatusCode::METHOD_NOT_ALLOWED, "abproxy: use POST\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return (response, Vec::new());
    }
    if device.is_new {
        return (
            error(
                StatusCode::BAD_REQUEST,
                "no device_id cookie: events come from pages served through the proxy",
            ),
            Vec::new(),
        );
    }
    let headers = request.headers().clone();
    let limit = snapshot.config.limits.max_body_bytes;
    let body = match crate::transport::body::read_limited(request.into_body(), limit).await {
        Ok(body) => body,
        Err(e) => return (error(e.status(), &e.to_string()), Vec::new()),
    };
    let events = match parse(&body) {
        Ok(events) => events,
        Err(message) => return (error(StatusCode::BAD_REQUEST, &message), Vec::new()),
    };
    let mut pins = Pins::read(snapshot, device, &headers, &mut Default::default());
    let mut conversions = 0;
    for event in &events {
        snapshot.events_received.inc();
        if !crate::experiments::goals::event_is_known(&snapshot.experiments, &event.name) {
            snapshot.events_unmatched.inc();
        }
        if pins.known {
            conversions += pins.record_goals(snapshot, &device.id, |e| {
                crate::experiments::goals::reached_by_event(e, &event.name, &event.params)
            });
        }
    }
    // Written back only when it records a conversion: rewriting a lost or unreadable
    // cookie here would make a known device look new to the next page.
    let cookies = if pins.known && conversions > 0 {
        vec![pins.cookie(snapshot, device).0]
    } else {
        Vec::new()
    };
    let body = json!({ "accepted": events.len(), "conversions": conversions });
    (json_response(StatusCode::ACCEPTED, &body), cookies)
}

/// Validate the body: one event object or an array of 1–100; each with a string `event`
/// (1–64 characters, no control characters), an optional string `ts`, an optional object
/// `params` of strings, numbers, booleans or nulls. Messages name the field.
pub fn parse(body: &[u8]) -> Result<Vec<Event>, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("malformed JSON: {e}"))?;
    let (items, prefix): (Vec<Value>, &str) = match value {
        Value::Object(_) => (vec![value], ""),
        Value::Array(items) if items.is_empty() => return Err("the array holds no events".into()),
        Value::Array(items) if items.len() > MAX_EVENTS => {
            return Err(format!(
                "at most {MAX_EVENTS} events per request, got {}",
                items.len()
            ))
        }
        Value::Array(items) => (items, "events"),
        _ => return Err("expected an event object or an array of events".into()),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let at = if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}[{i}].")
            };
            let Value::Object(mut fields) = item else {
                return Err(format!("{}: expected an object", at.trim_end_matches('.')));
            };
            let name = match fields.remove("event") {
                Some(Value::String(s))
                    if !s.is_empty()
                        && s.chars().count() <= MAX_NAME
                        && !s.chars().any(char::is_control) =>
                {
                    s
                }
                Some(Value::String(_)) => {
                    return Err(format!(
                        "{at}event: must be 1–{MAX_NAME} characters, without control characters"
                    ))
                }
                Some(_) => return Err(format!("{at}event: must be a string")),
                None => return Err(format!("{at}event: missing")),
            };
            match fields.remove("ts") {
                None | Some(Value::String(_)) => {}
                Some(_) => return Err(format!("{at}ts: must be a string")),
            }
            let params = match fields.remove("params") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(params)) => {
                    if let Some((k, _)) = params
                        .iter()
                        .find(|(_, v)| matches!(v, Value::Array(_) | Value::Object(_)))
                    {
                        return Err(format!(
                            "{at}params.{k}: must be a string, number, boolean or null"
                        ));
                    }
                    params
                }
                Some(_) => return Err(format!("{at}params: must be an object")),
            };
            if let Some(unknown) = fields.keys().next() {
                return Err(format!(
                    "{at}{unknown}: unknown field (expected event, ts, params)"
                ));
            }
            Ok(Event { name, params })
        })
        .collect()
}

fn error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    json_response(status, &json!({ "error": message }))
}

fn json_response(status: StatusCode, body: &Value) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body.to_string()))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_or_an_array() {
        let one = parse(br#"{"event": "button_click", "ts": "2026-11-23T12:00:00Z", "params": {"button": "reserve", "n": 2}}"#).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].name, "button_click");
        assert_eq!(one[0].params["n"], 2);
        let many = parse(br#"[{"event": "a"}, {"event": "b", "params": null}]"#).unwrap();
        assert_eq!(
            many.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn errors_name_the_field() {
        let err = |body: &str| parse(body.as_bytes()).unwrap_err();
        assert!(err("{not json").starts_with("malformed JSON"));
        assert_eq!(err("42"), "expected an event object or an array of events");
        assert_eq!(err("[]"), "the array holds no events");
        assert_eq!(err(r#"{"ts": "x"}"#), "event: missing");
        assert_eq!(err(r#"{"event": 7}"#), "event: must be a string");
        assert_eq!(
            err(r#"{"event": ""}"#),
            "event: must be 1–64 characters, without control characters"
        );
        assert_eq!(
            err(r#"[{"event": "a"}, {"event": "b", "params": [1]}]"#),
            "events[1].params: must be an object"
        );
        assert_eq!(
            err(r#"[{"event": "a", "params": {"x": {"y": 1}}}]"#),
            "events[0].params.x: must be a string, number, boolean or null"
        );
        assert_eq!(err(r#"{"event": "a", "ts": 5}"#), "ts: must be a string");
        assert_eq!(
            err(r#"{"event": "a", "colour": "red"}"#),
            "colour: unknown field (expected event, ts, params)"
        );
        let too_many = format!("[{}]", vec![r#"{"event":"a"}"#; 101].join(","));
        assert_eq!(err(&too_many), "at most 100 events per request, got 101");
    }
}
