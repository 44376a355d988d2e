//! The assignment hash of `PRODUCT.md`, fixed so that other implementations (the
//! original Python demo, a warehouse job) reproduce it exactly:
//!
//! ```text
//! h       = SHA-256(device_id + ":" + experiment_key), a 256-bit big-endian integer
//! bucket  = h mod (sum of the variants' weights)
//! variant = walk the variants sorted by name (byte order), adding weights; the first
//!           whose running total exceeds bucket
//! ```

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// An experiment's variants in hash order with their running weight totals, built once
/// per config snapshot so a request does no sorting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightTable {
    /// (running total after this variant, index of the variant in config order),
    /// sorted by variant name. Zero-weight variants are left out: no bucket reaches them.
    steps: Vec<(u64, usize)>,
    total: u64,
}

impl WeightTable {
    /// `variants` are (name, weight) in config order; the result picks indexes into it.
    /// Returns `None` when the weights sum to 0 (config validation refuses that).
    pub fn new<'a>(variants: impl IntoIterator<Item = (&'a str, u32)>) -> Option<WeightTable> {
        let mut by_name: Vec<(&str, u32, usize)> = variants
            .into_iter()
            .enumerate()
            .map(|(i, (name, w))| (name, w, i))
            .collect();
        by_name.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut total = 0u64;
        let mut steps = Vec::with_capacity(by_name.len());
        for (_, weight, index) in by_name {
            if weight > 0 {
                total += weight as u64;
                steps.push((total, index));
            }
        }
        (total > 0).then_some(WeightTable { steps, total })
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// The weight of each variant (config-order index) of `variants`.
    pub fn weights(&self, variants: usize) -> Vec<u32> {
        let mut weights = vec![0; variants];
        let mut before = 0;
        for &(running_total, index) in &self.steps {
            weights[index] = (running_total - before) as u32;
            before = running_total;
        }
        weights
    }

    /// The variant (config-order index) for a bucket in `0..total`.
    pub fn pick(&self, bucket: u64) -> usize {
        debug_assert!(bucket < self.total);
        // Few variants: a linear walk is what the spec says and is faster than bisecting.
        for &(running_total, index) in &self.steps {
            if running_total > bucket {
                return index;
            }
        }
        unreachable!("bucket {bucket} is below the total weight {}", self.total)
    }

    /// The full assignment: hash, bucket, walk.
    pub fn assign(&self, device_id: &[u8], experiment_key: &str) -> usize {
        self.pick(bucket(device_id, experiment_key, self.total))
    }
}

/// The share of new devices each weight gives its variant: the weight over their sum (all
/// 0 when they sum to 0).
pub fn shares(weights: &BTreeMap<String, u32>) -> BTreeMap<String, f64> {
    let total: u64 = weights.values().map(|&w| u64::from(w)).sum();
    weights
        .iter()
        .map(|(name, &w)| {
            let share = if total == 0 {
                0.0
            } else {
                f64::from(w) / total as f64
            };
            (name.clone(), share)
        })
        .collect()
}

/// SHA-256 of `device_id:salt`, read as a 256-bit big-endian integer, mod `modulus`.
pub fn bucket(device_id: &[u8], salt: &str, modulus: u64) -> u64 {
    assert!(modulus > 0, "bucket modulus must be positive");
    let digest = Sha256::new()
        .chain_update(device_id)
        .chain_update(b":")
        .chain_update(salt.as_bytes())
        .finalize();
    // Horner's rule 64 bits at a time: (r·2⁶⁴ + chunk) mod m, with r < m < 2⁶⁴ so the
    // intermediate fits in u128. Equal to the big integer's remainder.
    let m = modulus as u128;
    digest.chunks_exact(8).fold(0u128, |r, chunk| {
        let chunk = u64::from_be_bytes(chunk.try_into().expect("8-byte chunk")) as u128;
        ((r << 64) | chunk) % m
    }) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_is_the_big_endian_integer_mod_m() {
        // SHA-256("a:b") = c2b5c7... ; python3 -c "import hashlib;
        // print(int.from_bytes(hashlib.sha256(b'a:b').digest(),'big') % 1000003)"
        let h = Sha256::digest(b"a:b");
        // Independent check with a byte-at-a-time reduction.
        let slow = h.iter().fold(0u64, |r, &b| {
            ((r as u128 * 256 + b as u128) % 1_000_003) as u64
        });
        assert_eq!(bucket(b"a", "b", 1_000_003), slow);
        assert_eq!(bucket(b"a", "b", 1), 0);
    }

    #[test]
    fn walk_is_by_name_not_config_order() {
        // Config order Moon, Mars; hash order Mars (0..30), Moon (30..100).
        let t = WeightTable::new([("Moon", 70), ("Mars", 30)]).unwrap();
        assert_eq!(t.total(), 100);
        assert_eq!(t.pick(0), 1);
        assert_eq!(t.pick(29), 1);
        assert_eq!(t.pick(30), 0);
        assert_eq!(t.pick(99), 0);
    }

    #[test]
    fn zero_weight_variants_get_nothing() {
        let t = WeightTable::new([("A", 0), ("B", 5), ("C", 0)]).unwrap();
        for b in 0..5 {
            assert_eq!(t.pick(b), 1);
        }
        assert!(WeightTable::new([("A", 0)]).is_none());
    }

    #[test]
    fn byte_order_puts_uppercase_first() {
        // "Zeta" < "alpha" in byte order.
        let t = WeightTable::new([("alpha", 1), ("Zeta", 1)]).unwrap();
        assert_eq!(t.pick(0), 1);
        assert_eq!(t.pick(1), 0);
    }
}
