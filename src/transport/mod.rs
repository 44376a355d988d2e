//! The connections under the proxy: upstream connection pools and their connector
//! ([`upstream_client`]), TLS termination with certificate rotation ([`tls`]), draining
//! connections on shutdown ([`drain`]), and request bodies ([`body`]).
//!
//! May use `config` and `counting`; knows nothing of experiments.

pub mod body;
pub mod drain;
pub mod tls;
pub mod upstream_client;
