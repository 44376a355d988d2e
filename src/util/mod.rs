//! Small helpers every layer may use: atomic file writes, randomness, HTML escaping,
//! times as Unix ms and RFC 3339.
//! Uses nothing else of the crate.

pub mod fsutil;
pub mod html;
pub mod random;
pub mod time;
