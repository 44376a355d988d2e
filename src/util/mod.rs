//! Small helpers every layer may use: atomic file writes, randomness, HTML escaping.
//! Uses nothing else of the crate.

pub mod fsutil;
pub mod html;
pub mod random;
