//! The connections under the proxy: plain HTTP/1.1 upstream connections driven by the
//! requests that hold them ([`http1_pool`]), the pooled client and its connector for TLS,
//! HTTP/2 and upgrades ([`upstream_client`]), TLS termination with certificate rotation ([`tls`]), draining
//! connections on shutdown ([`drain`]), the request body streamed upstream and watched
//! for the client's faults ([`request_body`]), bodies abproxy reads itself ([`body`]),
//! JSON fetched over HTTP for `analyze` and the bandits ([`json_get`]), records
//! POSTed to a webhook with retries ([`webhook`]), and the worker threads client
//! connections run on ([`workers`]).
//!
//! May use `config` and `counting`; knows nothing of experiments.

pub mod body;
pub mod drain;
pub mod http1_pool;
pub mod json_get;
pub mod request_body;
pub mod tls;
pub mod upstream_client;
pub mod webhook;
pub mod workers;
