//! The reserved `/_ab/` paths on the main listener: what the frontend reads.
//!
//! - `GET /_ab/assignments[?path=/page]`: the caller's groups, as JSON, for every
//!   experiment that applies to that page path (default `/`), decided exactly as a
//!   proxied request would be (and counted the same way);
//! - `GET /_ab/sdk.js`: a small dependency-free script, `abproxy.assignments()` and
//!   `abproxy.group(key)`.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{Either, Full};

use crate::experiments::device::Device;
use crate::proxy::response::{plain_response, ProxyBody};
use crate::proxy::routing::{route, RequestView};
use crate::state::snapshot::Snapshot;

pub const SDK_JS: &str = include_str!("sdk.js");

/// The response to a `/_ab/` request and the cookies it sets.
pub fn respond<B>(
    snapshot: &Snapshot,
    device: &Device,
    request: &Request<B>,
) -> (Response<ProxyBody>, Vec<HeaderValue>) {
    let path = request.uri().path();
    let get = request.method() == Method::GET || request.method() == Method::HEAD;
    match path {
        "/_ab/assignments" if get => assignments(snapshot, device, request),
        "/_ab/sdk.js" if get => {
            let mut response = body_response(
                StatusCode::OK,
                "text/javascript; charset=utf-8",
                Bytes::from_static(SDK_JS.as_bytes()),
            );
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            );
            (response, Vec::new())
        }
        "/_ab/assignments" | "/_ab/sdk.js" => {
            let mut response = plain_response(StatusCode::METHOD_NOT_ALLOWED, "abproxy: use GET\n");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            (response, Vec::new())
        }
        _ => (
            plain_response(
                StatusCode::NOT_FOUND,
                "abproxy: no such endpoint under /_ab/\n",
            ),
            Vec::new(),
        ),
    }
}

fn assignments<B>(
    snapshot: &Snapshot,
    device: &Device,
    request: &Request<B>,
) -> (Response<ProxyBody>, Vec<HeaderValue>) {
    let query = request.uri().query();
    let page = query
        .and_then(|q| crate::experiments::targeting::query_param(q, "path"))
        .filter(|p| p.starts_with('/'));
    let view = RequestView {
        host: crate::proxy::headers::request_host(request.uri(), request.headers()),
        path: page.as_deref().unwrap_or("/"),
        query,
        headers: request.headers(),
    };
    let routing = route(snapshot, device, &view, &mut Default::default());
    let mut body = serde_json::Map::new();
    for a in &routing.applied {
        let e = a.experiment;
        body.insert(
            e.key.clone(),
            serde_json::json!({
                "group": e.variants[a.served].name,
                "assigned": e.variants[a.assigned(&device.id)].name,
                "state": e.state.as_str(),
                "fallback": e.variants[e.fallback].name,
            }),
        );
    }
    let json =
        serde_json::to_vec(&serde_json::Value::Object(body)).expect("JSON of strings serialises");
    let mut response = body_response(StatusCode::OK, "application/json", Bytes::from(json));
    // Per visitor: never cached by a shared cache.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    let cookies = routing.finish(snapshot, device);
    (response, cookies)
}

fn body_response(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
