//! Randomness and hex text, in one place: tokens from the operating system's generator
//! (secrets, session nonces, temporary-file names), and a small seeded generator for
//! reproducible simulations.

/// Append `bytes` as lower-case hex, without a `format!` per byte (on the path of every
/// new visitor's assignment cookie).
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
}

pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 * bytes.len());
    push_hex(&mut out, bytes);
    out
}

/// `n` random bytes from the operating system, as hex.
pub fn token(n: usize) -> Result<String, getrandom::Error> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes)?;
    Ok(hex(&bytes))
}

/// A random seed for [`SplitMix`] (0 if the system has no randomness to give).
pub fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// SplitMix64: a seeded, reproducible generator for simulations (not for secrets).
pub struct SplitMix(pub u64);

impl SplitMix {
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_tokens() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        let (a, b) = (token(16).unwrap(), token(16).unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn splitmix_is_reproducible_and_in_range() {
        let draws = |seed| {
            (0..1000)
                .map(|_| 0)
                .scan(SplitMix(seed), |r, _: i32| Some(r.next_f64()))
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
        assert!(draws(7).iter().all(|x| (0.0..1.0).contains(x)));
    }
}
