//! The proxy listener and one request's way through it.
//!
//! - [`server`]: the listeners (proxy and admin), connections, graceful shutdown;
//! - [`client_request`]: what a client's request must be before it is forwarded;
//! - [`service`]: the request's phases — device id → experiments → upstream → rewrite
//!   → forward → Set-Cookie → count;
//! - [`plain_http1`]: the same phases without hyper, for bodiless `GET`/`HEAD` requests
//!   on the plain listener to plain HTTP/1.1 upstreams; anything else goes to hyper;
//! - [`routing`]: one request against every experiment (shared with `/_ab/assignments`);
//! - [`events`], [`frontend`]: `POST /_ab/events`; `/_ab/assignments` and `/_ab/sdk.js`;
//! - [`headers`]: header rewriting, pure;
//! - [`response`]: the response body type and abproxy's own short responses;
//! - [`upgrade`]: WebSocket tunnels;
//! - [`error`]: why a request failed, and its response.
//!
//! May use every layer below, the admin listener included (the server runs it).

pub mod client_request;
pub mod error;
pub mod events;
pub mod frontend;
pub mod headers;
pub mod plain_http1;
pub mod response;
pub mod routing;
pub mod server;
pub mod service;
pub mod upgrade;
