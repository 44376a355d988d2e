//! Plain HTTP/1.1 without hyper, for the exchange that makes up most of the traffic: a
//! `GET` or `HEAD` without a body, from a client on the plain listener, to upstreams
//! that are all plain HTTP/1.1.
//!
//! Such a request's head is parsed here (httparse, as hyper does), goes through the
//! same routing, rewrite, counting and cookies as on hyper's path ([`service`]), and is
//! written to a bare TCP stream from the upstream's pool; the response head is parsed,
//! rewritten and written back, and its body relayed as it arrives: `Content-Length`
//! bytes as they are, `chunked` (or close-delimited) bodies decoded and chunked again,
//! trailers dropped (the client did not ask for them: a `TE` request goes to hyper).
//!
//! Anything else — a request with a body, an upgrade, `Expect`, an HTTP/1.0 client, a
//! reserved `/_ab/` path, a head this path cannot parse or that breaks a limit, a
//! snapshot with a TLS or HTTP/2 upstream — hands the connection, with the bytes read so
//! far, to hyper for the rest of its life ([`HandOff`]), which answers it exactly as it
//! would have from the first byte (400, 431, bodies, WebSockets, …).
//!
//! Why: hyper's server and client cost about a third of the proxy's CPU per request
//! (see `benches/README.md`), more than routing, signing and counting together.
//!
//! [`service`]: crate::proxy::service

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode, Version};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::counting::metrics::UpstreamErrorKind;
use crate::experiments::device::Device;
use crate::experiments::sticky::Verified;
use crate::proxy::error::ProxyError;
use crate::proxy::headers::{self, TransferCoding};
use crate::proxy::service::{
    add_cookies, count_failure, count_response, error_response, fallback_upstream,
    rewrite_for_upstream, Peer, Routed, RESERVED_PREFIX,
};
use crate::state::app::App;
use crate::state::snapshot::Snapshot;
use crate::transport::drain::Watcher;
use crate::transport::http1_pool::{Http1Pool, SendError};

/// Bytes asked of a socket per read.
const READ_CHUNK: usize = 16 * 1024;
/// Header fields parsed here; a head with more goes to hyper (which applies
/// `limits.max_headers`).
const MAX_PLAIN_HEADERS: usize = 64;
/// An upstream's response head: at most this many fields and bytes (hyper's client's
/// limits), else 502.
const MAX_RESPONSE_HEADERS: usize = 100;
const MAX_RESPONSE_HEAD: usize = 400 * 1024;
/// A chunk-size line or a trailer section longer than this is a malformed body.
const MAX_CHUNK_LINE: usize = 4 * 1024;
const MAX_TRAILERS: usize = 64 * 1024;
/// A spare field map kept for a connection's next head holds at most this many fields'
/// room (a map grows in powers of two; most heads have a few dozen fields at most).
const MAX_SPARE_FIELDS: usize = 64;

/// The connection, for hyper to serve from here on: the bytes read but not answered
/// come first.
pub struct HandOff {
    pub io: Replay,
    pub watcher: Watcher,
}

/// Serve `stream` until it closes, or until a request needs hyper ([`HandOff`]).
pub async fn serve(
    app: &App,
    peer: &Peer,
    stream: TcpStream,
    mut watcher: Watcher,
) -> Option<HandOff> {
    let mut client = Client {
        stream,
        read: Vec::with_capacity(READ_CHUNK),
    };
    let mut buffers = Buffers {
        out: Vec::with_capacity(READ_CHUNK),
        upstream: Vec::with_capacity(READ_CHUNK),
        request_fields: HeaderMap::new(),
        response_fields: HeaderMap::new(),
        verified: Verified::default(),
    };
    loop {
        let header_read = app.snapshot().config.timeouts.header_read;
        let head = tokio::select! {
            // Between requests a shutdown closes the connection, as hyper's does.
            _ = watcher.stopping() => return None,
            head = tokio::time::timeout(
                header_read,
                client.read_head(app, &mut buffers.request_fields),
            ) => head,
        };
        let (request, snapshot) = match head {
            // A head (or the next one on a kept-alive connection) that took longer than
            // `timeouts.header_read`: closed without a response.
            Err(_elapsed) => return None,
            Ok(Err(_) | Ok(Head::Closed)) => return None,
            Ok(Ok(Head::ForHyper)) => {
                return Some(HandOff {
                    io: Replay::new(client.read, client.stream),
                    watcher,
                })
            }
            Ok(Ok(Head::Plain(request, snapshot))) => (request, snapshot),
        };
        match exchange(
            &snapshot,
            peer,
            &mut client.stream,
            request,
            &mut buffers,
            &watcher,
        )
        .await
        {
            Ok(true) => {}
            _ => return None,
        }
    }
}

struct Client {
    stream: TcpStream,
    /// Read from the client, not yet answered (pipelined requests wait here).
    read: Vec<u8>,
}

/// Reused from request to request of a connection.
struct Buffers {
    /// What is written next: a request head, or a response head and body bytes.
    out: Vec<u8>,
    /// Read from the upstream.
    upstream: Vec<u8>,
    /// The last request's and response's field maps, emptied, for the next ones (see
    /// [`reuse`]).
    request_fields: HeaderMap,
    response_fields: HeaderMap,
    /// The visitor's assignment cookie, verified once for the connection.
    verified: Verified,
}

/// A field map with room for `fields` fields, made from the spare one an earlier head of
/// the connection left: a map's two allocations are a request's largest, and a
/// connection's heads are much alike.
fn reuse(spare: &mut HeaderMap, fields: usize) -> HeaderMap {
    let mut map = std::mem::take(spare);
    map.reserve(fields);
    map
}

/// Keep `map`'s room for the connection's next head, unless it grew past what most
/// heads need (a connection that once sent many fields does not keep their room).
fn keep_spare(spare: &mut HeaderMap, mut map: HeaderMap) {
    if map.capacity() <= MAX_SPARE_FIELDS {
        map.clear();
        *spare = map;
    }
}

// Moved once per request: a box would cost an allocation each time.
#[allow(clippy::large_enum_variant)]
enum Head {
    /// With the snapshot in force when the head was in: the one it is answered by.
    Plain(PlainRequest, Arc<Snapshot>),
    ForHyper,
    Closed,
}

/// A request this path answers.
struct PlainRequest {
    parts: http::request::Parts,
    /// The client asked to close the connection after the response.
    close: bool,
}

impl Client {
    /// Read until a whole head is in, or it is clear hyper must have the connection.
    async fn read_head(&mut self, app: &App, spare: &mut HeaderMap) -> io::Result<Head> {
        loop {
            if !self.read.is_empty() {
                let snapshot = app.snapshot();
                let limits = snapshot.config.limits;
                match parse_request(&self.read, &snapshot, spare) {
                    Parsed::Plain(request, len) => {
                        self.read.drain(..len);
                        return Ok(Head::Plain(request, snapshot));
                    }
                    Parsed::ForHyper => return Ok(Head::ForHyper),
                    // hyper answers 431 to a head past the limit.
                    Parsed::Partial if self.read.len() >= limits.max_header_bytes => {
                        return Ok(Head::ForHyper)
                    }
                    Parsed::Partial => {}
                }
            }
            self.read.reserve(READ_CHUNK);
            if self.stream.read_buf(&mut self.read).await? == 0 {
                return Ok(Head::Closed);
            }
        }
    }
}

#[allow(clippy::large_enum_variant)]
enum Parsed {
    /// With the head's length.
    Plain(PlainRequest, usize),
    ForHyper,
    Partial,
}

fn parse_request(read: &[u8], snapshot: &Snapshot, spare: &mut HeaderMap) -> Parsed {
    let limits = snapshot.config.limits;
    let mut fields = [httparse::EMPTY_HEADER; MAX_PLAIN_HEADERS];
    let room = limits.max_headers.min(MAX_PLAIN_HEADERS);
    let mut head = httparse::Request::new(&mut fields[..room]);
    let len = match head.parse(read) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        // Malformed, or more fields than room: hyper says which (400, 431).
        Err(_) => return Parsed::ForHyper,
    };
    if len > limits.max_header_bytes || !snapshot.upstreams.iter().all(|u| u.http1.is_some()) {
        return Parsed::ForHyper;
    }
    // One copy of the head, which the fields' values and the target then share.
    let shared = Bytes::copy_from_slice(&read[..len]);
    let fields = reuse(spare, head.headers.len() + 6);
    match plain_request(
        &head,
        &Shared {
            bytes: &shared,
            base: read,
        },
        fields,
    ) {
        Some(request) => Parsed::Plain(request, len),
        None => Parsed::ForHyper,
    }
}

/// The request as `http` parts, if it is one this path answers.
/// `fields` is empty, with room for the head's fields.
fn plain_request(
    head: &httparse::Request<'_, '_>,
    shared: &Shared<'_>,
    mut fields: HeaderMap,
) -> Option<PlainRequest> {
    if head.version != Some(1) {
        return None;
    }
    let method = match head.method? {
        "GET" => Method::GET,
        "HEAD" => Method::HEAD,
        _ => return None,
    };
    let path = head.path?;
    // The origin form only; `/_ab/` is abproxy's own, answered on hyper's path.
    if !path.starts_with('/') || path.starts_with(RESERVED_PREFIX) {
        return None;
    }
    let uri = http::Uri::from_maybe_shared(shared.slice(path.as_bytes())).ok()?;
    let mut close = false;
    for field in head.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::UPGRADE
            || name == header::EXPECT
            || name == header::TE
        {
            return None;
        }
        if name == header::CONNECTION {
            for option in std::str::from_utf8(field.value).ok()?.split(',') {
                match option.trim() {
                    o if o.eq_ignore_ascii_case("close") => close = true,
                    o if o.eq_ignore_ascii_case("keep-alive") || o.is_empty() => {}
                    // Another field named hop-by-hop: hyper's path knows what to drop.
                    _ => return None,
                }
            }
        }
        fields.append(
            name,
            HeaderValue::from_maybe_shared(shared.slice(field.value)).ok()?,
        );
    }
    if crate::proxy::client_request::check_head(&method, Version::HTTP_11, &fields).is_err() {
        // Refused on hyper's path, where the refusal is counted.
        return None;
    }
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    parts.headers = fields;
    Some(PlainRequest { parts, close })
}

/// Answer one request. `Ok(true)` if the connection can take another.
async fn exchange(
    snapshot: &Snapshot,
    peer: &Peer,
    client: &mut TcpStream,
    request: PlainRequest,
    buffers: &mut Buffers,
    watcher: &Watcher,
) -> io::Result<bool> {
    let PlainRequest { parts, mut close } = request;
    let device = Device::from_headers(&parts.headers, &snapshot.config.cookie.name);
    let mut routed = Routed::new(
        snapshot,
        &device,
        &parts.method,
        &parts.uri,
        &parts.headers,
        &mut buffers.verified,
    );
    let is_head = parts.method == Method::HEAD;
    let fetched = match routed.upstream(snapshot) {
        Some(upstream) => {
            let fetched = fetch(
                snapshot,
                peer,
                &device,
                &mut routed,
                upstream,
                parts,
                buffers,
            );
            tokio::select! {
                biased;
                fetched = fetched => fetched,
                // Nobody to answer: the upstream's connection is dropped with the unread
                // answer, as hyper's server drops the request when its client leaves.
                () = client_gone(client) => return Ok(false),
            }
        }
        None => Err(ProxyError::NoRoute),
    };
    // A shutdown that started while the upstream answered: this response is the
    // connection's last, and says so (as hyper's graceful shutdown does).
    close |= watcher.is_stopping();
    let mut upstream = match fetched {
        Ok(upstream) => upstream,
        Err(err) => {
            let (mut head, body) = error_response(&err).into_parts();
            let cookies = routed.finish(snapshot, &device, head.status, &head.headers);
            add_cookies(snapshot, &device, cookies, &mut head.headers);
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            head.headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            let out = &mut buffers.out;
            out.clear();
            write_response_head(out, head.status, &head.headers, false, close);
            if !is_head {
                out.extend_from_slice(&body);
            }
            client.write_all(out).await?;
            return Ok(!close);
        }
    };
    let cookies = routed.finish(snapshot, &device, upstream.status, &upstream.headers);
    add_cookies(snapshot, &device, cookies, &mut upstream.headers);
    let chunked = matches!(upstream.framing, Framing::Chunked | Framing::UntilClose);
    buffers.out.clear();
    write_response_head(
        &mut buffers.out,
        upstream.status,
        &upstream.headers,
        chunked,
        close,
    );
    keep_spare(
        &mut buffers.response_fields,
        std::mem::take(&mut upstream.headers),
    );
    match relay(client, &mut upstream, buffers).await? {
        BodyEnd::Whole { reusable } => {
            if reusable {
                upstream.pool.checkin_stream(upstream.stream);
            }
            Ok(!close)
        }
        BodyEnd::Cut => {
            // The client's connection closes mid-body, so it cannot take the truncated
            // body for a whole one (as on hyper's path).
            upstream.cut.inc();
            Ok(false)
        }
    }
}

/// Resolves when the client has closed its connection (or it failed) while its answer
/// is on the way, so a request nobody waits for does not hold an upstream connection and
/// a place under `limits.max_connections`. Bytes the client sends meanwhile (a pipelined
/// request) stay unread: after them, nothing more can be learnt until they are.
async fn client_gone(client: &TcpStream) {
    let mut byte = [0u8; 1];
    match client.peek(&mut byte).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// An upstream's response whose head is in.
struct Fetched<'s> {
    pool: &'s Http1Pool,
    stream: TcpStream,
    status: StatusCode,
    /// Rewritten for the client: hop-by-hop fields gone.
    headers: HeaderMap,
    framing: Framing,
    /// Where in [`Buffers::upstream`] the body starts.
    body_start: usize,
    /// The upstream keeps the connection open after this response.
    keep_alive: bool,
    /// `abproxy_upstream_errors_total{kind="body"}` of the upstream.
    cut: prometheus::IntCounter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body: a `HEAD`, a 204, a 304.
    Empty,
    Length(u64),
    Chunked,
    /// Neither a length nor `chunked`: the body ends when the upstream closes.
    UntilClose,
}

/// Forward to `upstream`, falling back (per `upstream_down`) when it is down.
async fn fetch<'s>(
    snapshot: &'s Snapshot,
    peer: &Peer,
    device: &Device,
    routed: &mut Routed<'s>,
    upstream: usize,
    parts: http::request::Parts,
    buffers: &mut Buffers,
) -> Result<Fetched<'s>, ProxyError> {
    let variant = routed.variant_metrics();
    let fallback = fallback_upstream(&routed.routing).map(|f| (f, parts.clone()));
    let assignments = routed.assignments.take();
    let first = attempt(
        snapshot,
        peer,
        &device.id,
        upstream,
        parts,
        assignments.clone(),
        variant,
        buffers,
    )
    .await;
    match (first, fallback) {
        (Err(err), Some(((upstream, served), parts))) if err.upstream_is_down() => {
            served.inc();
            tracing::debug!(error = %err, "serving the fallback's upstream");
            attempt(
                snapshot,
                peer,
                &device.id,
                upstream,
                parts,
                assignments,
                None,
                buffers,
            )
            .await
        }
        (first, _) => first,
    }
}

/// One try at one upstream, counted like [`crate::proxy::service`]'s `forward`.
#[allow(clippy::too_many_arguments)]
async fn attempt<'s>(
    snapshot: &'s Snapshot,
    peer: &Peer,
    device_id: &str,
    index: usize,
    mut parts: http::request::Parts,
    assignments: Option<HeaderValue>,
    variant: Option<&crate::counting::metrics::VariantMetrics>,
    buffers: &mut Buffers,
) -> Result<Fetched<'s>, ProxyError> {
    let upstream = &snapshot.upstreams[index];
    let pool = upstream
        .http1
        .as_deref()
        .expect("this path only serves snapshots whose upstreams are plain HTTP/1.1");
    rewrite_for_upstream(
        &mut parts,
        upstream,
        snapshot.host_policy(),
        device_id,
        assignments,
        peer,
    );
    buffers.out.clear();
    write_request_head(&mut buffers.out, &parts);
    let timeouts = snapshot.config.timeouts;
    let started = Instant::now();
    keep_spare(
        &mut buffers.request_fields,
        std::mem::take(&mut parts.headers),
    );
    let sent = send(
        pool,
        &buffers.out,
        &mut buffers.upstream,
        &mut buffers.response_fields,
    );
    let outcome = match tokio::time::timeout(timeouts.upstream_response, sent).await {
        Ok(Ok(sent)) => Ok(sent),
        Ok(Err(Failure::Connect(err))) => Err(ProxyError::from_http1_pool(
            &upstream.name,
            err,
            timeouts.connect,
        )),
        Ok(Err(Failure::Io(err))) => Err(ProxyError::UpstreamFailed {
            upstream: upstream.name.clone(),
            source: err.into(),
        }),
        Ok(Err(Failure::Malformed(what))) => Err(ProxyError::UpstreamMalformed {
            upstream: upstream.name.clone(),
            source: what.into(),
        }),
        Err(_) => Err(ProxyError::UpstreamTimeout {
            upstream: upstream.name.clone(),
            timeout: timeouts.upstream_response,
        }),
    };
    let (stream, head) = match outcome {
        Ok(sent) => sent,
        Err(err) => {
            count_failure(snapshot, upstream, variant, &err);
            return Err(err);
        }
    };
    let ResponseHead {
        status,
        mut headers,
        len,
        version,
    } = head;
    let keep_alive = version == Version::HTTP_11 && !has_close(&headers);
    // Framed by the head as it came: a `Connection` option naming `Transfer-Encoding`
    // or `Content-Length` must not change how the body is read, or the rest of it would
    // be taken for the next response. (`remove_hop_by_hop` reads the coding before it
    // removes what `Connection` names, and drops a length beside a coding.)
    let length = content_length(&headers);
    let coding = headers::remove_hop_by_hop(&mut headers);
    let length = match length {
        Ok(length) => length,
        // hyper's client refuses such a head: counted as a failed request, not as the
        // status it claimed.
        Err(_) if coding != TransferCoding::None => None,
        Err(what) => {
            let err = ProxyError::UpstreamMalformed {
                upstream: upstream.name.clone(),
                source: what.into(),
            };
            count_failure(snapshot, upstream, variant, &err);
            return Err(err);
        }
    };
    count_response(upstream, variant, status, started);
    let no_body = parts.method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = match (coding, length) {
        _ if no_body => Framing::Empty,
        (TransferCoding::Chunked, _) => Framing::Chunked,
        (TransferCoding::Other, _) => {
            // We would pass on still-encoded bytes with nothing saying how they are encoded.
            let err = ProxyError::UpstreamTransferCoding {
                upstream: upstream.name.clone(),
            };
            upstream.metrics.count_error(err.upstream_error_kind());
            return Err(err);
        }
        (TransferCoding::None, Some(length)) => {
            if !headers.contains_key(header::CONTENT_LENGTH) {
                // Named by `Connection` and so removed: the client still needs it.
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            }
            Framing::Length(length)
        }
        (TransferCoding::None, None) => Framing::UntilClose,
    };
    Ok(Fetched {
        pool,
        stream,
        status,
        headers,
        framing,
        body_start: len,
        keep_alive,
        cut: upstream.metrics.errors[UpstreamErrorKind::Body as usize].clone(),
    })
}

/// Why an upstream gave no usable response head.
enum Failure {
    Connect(SendError),
    Io(io::Error),
    Malformed(&'static str),
}

struct ResponseHead {
    status: StatusCode,
    headers: HeaderMap,
    /// The head's length in bytes: the body follows.
    len: usize,
    version: Version,
}

/// Send `head` on a pooled stream or a new one, and read the response head into
/// `read`.
async fn send(
    pool: &Http1Pool,
    head: &[u8],
    read: &mut Vec<u8>,
    spare: &mut HeaderMap,
) -> Result<(TcpStream, ResponseHead), Failure> {
    let mut pooled = pool.checkout_stream();
    loop {
        let reused = pooled.is_some();
        let mut stream = match pooled.take() {
            Some(stream) => stream,
            // Boxed: the connect is rare, and its state would otherwise be part of
            // every request's future.
            None => Box::pin(pool.connect_stream())
                .await
                .map_err(Failure::Connect)?,
        };
        match round_trip(&mut stream, head, read, spare).await {
            Ok(head) => return Ok((stream, head)),
            // The upstream closed a pooled connection before answering anything. The
            // request is a GET or a HEAD, idempotent, so a fresh connection takes it
            // again (as nginx does).
            Err(RoundTrip::NothingBack(_)) if reused => continue,
            Err(RoundTrip::NothingBack(err) | RoundTrip::Io(err)) => return Err(Failure::Io(err)),
            Err(RoundTrip::Malformed(what)) => return Err(Failure::Malformed(what)),
        }
    }
}

enum RoundTrip {
    /// Failed before a byte of the response came.
    NothingBack(io::Error),
    Io(io::Error),
    Malformed(&'static str),
}

async fn round_trip(
    stream: &mut TcpStream,
    head: &[u8],
    read: &mut Vec<u8>,
    spare: &mut HeaderMap,
) -> Result<ResponseHead, RoundTrip> {
    read.clear();
    stream
        .write_all(head)
        .await
        .map_err(RoundTrip::NothingBack)?;
    // Anything at all came back (an interim response, dropped from `read`, counts).
    let mut answered = false;
    loop {
        read.reserve(READ_CHUNK);
        match stream.read_buf(read).await {
            Ok(0) if !answered => {
                return Err(RoundTrip::NothingBack(io::ErrorKind::UnexpectedEof.into()))
            }
            Ok(0) => return Err(RoundTrip::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(_) => answered = true,
            Err(err) if !answered => return Err(RoundTrip::NothingBack(err)),
            Err(err) => return Err(RoundTrip::Io(err)),
        }
        // Interim responses (100 Continue, 103 Early Hints) are dropped, as hyper's
        // client drops them; the final one follows.
        while let Some(head) = parse_response(read, spare)? {
            if head.status.is_informational() {
                if head.status == StatusCode::SWITCHING_PROTOCOLS {
                    return Err(RoundTrip::Malformed(
                        "101 to a request that asked no upgrade",
                    ));
                }
                read.drain(..head.len);
                continue;
            }
            return Ok(head);
        }
        if read.len() > MAX_RESPONSE_HEAD {
            return Err(RoundTrip::Malformed("response head too large"));
        }
    }
}

fn parse_response(read: &[u8], spare: &mut HeaderMap) -> Result<Option<ResponseHead>, RoundTrip> {
    if read.is_empty() {
        return Ok(None);
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut head = httparse::Response::new(&mut fields);
    let len = match head.parse(read) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(RoundTrip::Malformed("not an HTTP/1.1 response head")),
    };
    let malformed = || RoundTrip::Malformed("invalid status or header field");
    let bytes = Bytes::copy_from_slice(&read[..len]);
    let shared = Shared {
        bytes: &bytes,
        base: read,
    };
    let status = head
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(malformed)?;
    let mut headers = reuse(spare, head.headers.len() + 4);
    for field in head.headers.iter() {
        headers.append(
            HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| malformed())?,
            HeaderValue::from_maybe_shared(shared.slice(field.value)).map_err(|_| malformed())?,
        );
    }
    let version = if head.version == Some(1) {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    Ok(Some(ResponseHead {
        status,
        headers,
        len,
        version,
    }))
}

/// A copy of a head read into `base`: the parsed parts of `base` as slices of the
/// copy, so a head costs one allocation rather than one per field.
struct Shared<'a> {
    bytes: &'a Bytes,
    base: &'a [u8],
}

impl Shared<'_> {
    fn slice(&self, part: &[u8]) -> Bytes {
        let start = part.as_ptr() as usize - self.base.as_ptr() as usize;
        self.bytes.slice(start..start + part.len())
    }
}

fn has_close(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|option| option.trim().eq_ignore_ascii_case("close"))
}

/// `Content-Length`, if there is one; several must agree (RFC 9112 §6.3).
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, &'static str> {
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for item in value
            .to_str()
            .map_err(|_| "invalid Content-Length")?
            .split(',')
        {
            let item = item.trim();
            if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
                return Err("invalid Content-Length");
            }
            let n: u64 = item.parse().map_err(|_| "invalid Content-Length")?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting Content-Length values");
            }
            length = Some(n);
        }
    }
    Ok(length)
}

fn write_request_head(out: &mut Vec<u8>, parts: &http::request::Parts) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_fields(out, &parts.headers);
}

fn write_response_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    fields: &HeaderMap,
    chunked: bool,
    close: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !fields.contains_key(header::DATE) {
        // As hyper's server adds one (RFC 9110 §6.6.1).
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    write_fields(out, fields);
}

/// The fields, then the empty line that ends a head.
fn write_fields(out: &mut Vec<u8>, fields: &HeaderMap) {
    for (name, value) in fields {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

enum BodyEnd {
    /// The body reached the client whole; the upstream stream can be reused if
    /// `reusable`.
    Whole { reusable: bool },
    /// The upstream failed or closed before the body's end.
    Cut,
}

/// Write the response head in `buffers.out` and the body after it, as it arrives.
/// `Err` only for the client's side.
async fn relay(
    client: &mut TcpStream,
    upstream: &mut Fetched<'_>,
    buffers: &mut Buffers,
) -> io::Result<BodyEnd> {
    let Buffers {
        out,
        upstream: read,
        ..
    } = buffers;
    let start = upstream.body_start;
    match upstream.framing {
        Framing::Empty => {
            client.write_all(out).await?;
            Ok(BodyEnd::Whole {
                reusable: upstream.keep_alive && read.len() == start,
            })
        }
        Framing::Length(length) => {
            let mut left = length;
            let mut extra = false;
            let mut arrived = &read[start..];
            loop {
                let take = arrived
                    .len()
                    .min(usize::try_from(left).unwrap_or(usize::MAX));
                out.extend_from_slice(&arrived[..take]);
                extra |= arrived.len() > take;
                left -= take as u64;
                client.write_all(out).await?;
                out.clear();
                if left == 0 {
                    return Ok(BodyEnd::Whole {
                        reusable: upstream.keep_alive && !extra,
                    });
                }
                read.clear();
                read.reserve(READ_CHUNK);
                match read_body(upstream, read, client).await? {
                    Ok(0) | Err(_) => return Ok(BodyEnd::Cut),
                    Ok(_) => arrived = &read[..],
                }
            }
        }
        Framing::Chunked | Framing::UntilClose => {
            let mut decoder = (upstream.framing == Framing::Chunked).then(ChunkedDecoder::default);
            let mut arrived_from = start;
            loop {
                let arrived = &read[arrived_from..];
                let ended = match &mut decoder {
                    Some(decoder) => match decoder.decode(arrived, out) {
                        Ok(ended) => ended.map(|used| used == arrived.len()),
                        Err(_) => {
                            client.write_all(out).await?;
                            return Ok(BodyEnd::Cut);
                        }
                    },
                    None => {
                        put_chunk(out, arrived);
                        None
                    }
                };
                if let Some(nothing_after) = ended {
                    out.extend_from_slice(b"0\r\n\r\n");
                    client.write_all(out).await?;
                    return Ok(BodyEnd::Whole {
                        reusable: upstream.keep_alive && nothing_after,
                    });
                }
                client.write_all(out).await?;
                out.clear();
                read.clear();
                read.reserve(READ_CHUNK);
                arrived_from = 0;
                match read_body(upstream, read, client).await? {
                    // A close-delimited body ends here, whole.
                    Ok(0) if decoder.is_none() => {
                        client.write_all(b"0\r\n\r\n").await?;
                        return Ok(BodyEnd::Whole { reusable: false });
                    }
                    Ok(0) | Err(_) => return Ok(BodyEnd::Cut),
                    Ok(_) => {}
                }
            }
        }
    }
}

/// The next bytes of the body from the upstream (the inner result); `Err` if the client
/// left meanwhile (a slow or idle stream would otherwise hold on for nobody).
async fn read_body(
    upstream: &mut Fetched<'_>,
    read: &mut Vec<u8>,
    client: &TcpStream,
) -> io::Result<io::Result<usize>> {
    tokio::select! {
        biased;
        read = upstream.stream.read_buf(read) => Ok(read),
        () = client_gone(client) => Err(io::ErrorKind::ConnectionAborted.into()),
    }
}

/// `data` as one chunk of a chunked body.
fn put_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Reads a `chunked` body (RFC 9112 §7.1) as it arrives, writing its data as chunks
/// again (extensions and trailers are dropped). Pure: fed bytes, it says where the body
/// ended.
#[derive(Debug, Default)]
struct ChunkedDecoder {
    state: ChunkState,
    /// The chunk-size line or trailer line read so far.
    line: Vec<u8>,
    trailer_bytes: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataCr,
    DataLf,
    Trailers,
}

impl ChunkedDecoder {
    /// Decode `input` into `out`. `Ok(Some(n))`: the body ended after `n` bytes of it.
    fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Option<usize>, &'static str> {
        let mut at = 0;
        while at < input.len() {
            match self.state {
                ChunkState::Size => {
                    let (line_done, used) = self.take_line(&input[at..]);
                    at += used;
                    if self.line.len() > MAX_CHUNK_LINE {
                        return Err("chunk-size line too long");
                    }
                    if line_done {
                        // At least one hex digit and a CRLF: `\r\n` alone is not a last
                        // chunk, and a decoder that took it for one would read the rest as
                        // the next response (as hyper's decoder refuses it).
                        if !self.line.first().is_some_and(u8::is_ascii_hexdigit)
                            || !self.line.ends_with(b"\r\n")
                        {
                            return Err("invalid chunk size");
                        }
                        let size = match httparse::parse_chunk_size(&self.line) {
                            Ok(httparse::Status::Complete((_, size))) => size,
                            _ => return Err("invalid chunk size"),
                        };
                        self.line.clear();
                        self.state = if size == 0 {
                            ChunkState::Trailers
                        } else {
                            ChunkState::Data(size)
                        };
                    }
                }
                ChunkState::Data(left) => {
                    let take = (input.len() - at).min(usize::try_from(left).unwrap_or(usize::MAX));
                    put_chunk(out, &input[at..at + take]);
                    at += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataCr
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::DataCr | ChunkState::DataLf => {
                    let want = if self.state == ChunkState::DataCr {
                        b'\r'
                    } else {
                        b'\n'
                    };
                    if input[at] != want {
                        return Err("chunk data not followed by CRLF");
                    }
                    at += 1;
                    self.state = if want == b'\r' {
                        ChunkState::DataLf
                    } else {
                        ChunkState::Size
                    };
                }
                ChunkState::Trailers => {
                    let (line_done, used) = self.take_line(&input[at..]);
                    at += used;
                    self.trailer_bytes += used;
                    if self.trailer_bytes > MAX_TRAILERS {
                        return Err("trailer section too long");
                    }
                    if line_done {
                        if !self.line.ends_with(b"\r\n") {
                            return Err("trailer line not ended by CRLF");
                        }
                        let empty = self.line == b"\r\n";
                        self.line.clear();
                        if empty {
                            return Ok(Some(at));
                        }
                    }
                }
            }
        }
        Ok(None)
    }

    /// Move bytes up to and including a line feed into `line`: (whether the line is
    /// complete, bytes used).
    fn take_line(&mut self, input: &[u8]) -> (bool, usize) {
        match input.iter().position(|&b| b == b'\n') {
            Some(end) => {
                self.line.extend_from_slice(&input[..=end]);
                (true, end + 1)
            }
            None => {
                self.line.extend_from_slice(input);
                (false, input.len())
            }
        }
    }
}

/// A client connection handed to hyper: the bytes already read are read again first.
pub struct Replay {
    read: Vec<u8>,
    at: usize,
    stream: TcpStream,
}

impl Replay {
    fn new(read: Vec<u8>, stream: TcpStream) -> Replay {
        Replay {
            read,
            at: 0,
            stream,
        }
    }
}

impl AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.read.len() {
            let n = buf.remaining().min(this.read.len() - this.at);
            buf.put_slice(&this.read[this.at..this.at + n]);
            this.at += n;
            if this.at == this.read.len() {
                this.read = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode `pieces` in turn: the data re-chunked, and where the body ended.
    type Ended = Result<Option<(usize, usize)>, &'static str>;

    fn decode(pieces: &[&[u8]]) -> (Vec<u8>, Ended) {
        let mut decoder = ChunkedDecoder::default();
        let mut out = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            match decoder.decode(piece, &mut out) {
                Ok(Some(used)) => return (out, Ok(Some((i, used)))),
                Ok(None) => {}
                Err(err) => return (out, Err(err)),
            }
        }
        (out, Ok(None))
    }

    /// The data of chunks `5\r\nhello\r\n…` (no last chunk).
    fn unchunk(mut chunks: &[u8]) -> Vec<u8> {
        let mut data = Vec::new();
        while !chunks.is_empty() {
            let line_end = chunks.iter().position(|&b| b == b'\n').unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&chunks[..line_end - 1]).unwrap(), 16)
                    .unwrap();
            data.extend_from_slice(&chunks[line_end + 1..line_end + 1 + size]);
            assert_eq!(&chunks[line_end + 1 + size..line_end + 3 + size], b"\r\n");
            chunks = &chunks[line_end + 3 + size..];
        }
        data
    }

    #[test]
    fn a_chunked_body_is_chunked_again_without_extensions_or_trailers() {
        let body: &[u8] = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: 1\r\n\r\nNEXT";
        let (out, ended) = decode(&[body]);
        assert_eq!(out, b"5\r\nhello\r\n6\r\n world\r\n");
        assert_eq!(
            ended,
            Ok(Some((0, body.len() - 4))),
            "ends before the next bytes"
        );
    }

    #[test]
    fn a_body_split_anywhere_decodes_the_same() {
        let body: &[u8] = b"a\r\n0123456789\r\n3\r\nabc\r\n0\r\n\r\n";
        for cut in 1..body.len() {
            let (out, ended) = decode(&[&body[..cut], &body[cut..]]);
            let data = unchunk(&out);
            assert_eq!(
                data,
                b"0123456789abc",
                "cut at {cut}: {:?}",
                String::from_utf8_lossy(&out)
            );
            assert_eq!(ended, Ok(Some((1, body.len() - cut))), "cut at {cut}");
        }
    }

    #[test]
    fn an_unfinished_body_has_not_ended() {
        assert_eq!(decode(&[b"5\r\nhel"]).1, Ok(None));
        assert_eq!(
            decode(&[b"5\r\nhello\r\n0\r\n"]).1,
            Ok(None),
            "the trailer section is open"
        );
    }

    #[test]
    fn malformed_chunks_are_refused() {
        assert!(decode(&[b"zz\r\nhello\r\n"]).1.is_err(), "not hex");
        let long = vec![b'1'; MAX_CHUNK_LINE + 10];
        // hyper's decoder refuses the last five too: taken for a last chunk, the bytes
        // after them would be read as the next response on a reused connection.
        for (body, what) in [
            (&b"5\r\nhelloXX0\r\n\r\n"[..], "no CRLF after the data"),
            (&long, "an endless size line"),
            (b"1\r\nZ\r\n\r\n\r\n", "a size line without digits"),
            (b";ext\r\n\r\n", "an extension, no size"),
            (b"5\nhello\r\n0\r\n\r\n", "bare LF after a size"),
            (b"0\r\n\n", "a bare LF ends no trailers"),
            (b"0\r\nx: y\n\r\n", "a trailer line ended by a bare LF"),
        ] {
            assert!(decode(&[body]).1.is_err(), "{what}");
        }
    }

    #[test]
    fn content_length_values_must_agree() {
        let mut h = HeaderMap::new();
        assert_eq!(content_length(&h), Ok(None));
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert_eq!(content_length(&h), Ok(Some(12)));
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("12, 12"));
        assert_eq!(content_length(&h), Ok(Some(12)));
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("13"));
        assert!(content_length(&h).is_err());
        let mut h = HeaderMap::new();
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("-1"));
        assert!(content_length(&h).is_err());
    }

    fn request(text: &str) -> Option<PlainRequest> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_PLAIN_HEADERS];
        let mut head = httparse::Request::new(&mut fields);
        assert!(head.parse(text.as_bytes()).unwrap().is_complete());
        let bytes = Bytes::copy_from_slice(text.as_bytes());
        plain_request(
            &head,
            &Shared {
                bytes: &bytes,
                base: text.as_bytes(),
            },
            HeaderMap::new(),
        )
    }

    #[test]
    fn only_bodiless_get_and_head_without_options_are_served_here() {
        let plain =
            request("GET /a?b=1 HTTP/1.1\r\nHost: x\r\nCookie: device_id=1\r\n\r\n").unwrap();
        assert_eq!(plain.parts.uri, "/a?b=1");
        assert_eq!(plain.parts.headers.len(), 2);
        assert!(!plain.close);
        assert!(
            request("HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap()
                .close
        );
        assert!(request("GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n").is_some());
        for other in [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: x-secret\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: x\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /_ab/assignments HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        ] {
            assert!(request(other).is_none(), "{other:?} is hyper's");
        }
    }
}
