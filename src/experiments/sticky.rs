//! Sticky assignments, carried by the client in a signed cookie.
//!
//! Replicas that share the secret agree on every device's variants without sharing
//! state, and a weight change moves nobody already assigned. The value is
//!
//! ```text
//! v1.<experiment>:<Variant>:<run>[/<period>][:<goal>+<goal>…]|<experiment>:<Variant>:<run>|….<tag>
//! ```
//!
//! `<period>` is the period of the run the device was assigned in (see
//! `state::runs::Period`), left out when it is 1: every replica then counts the device's
//! conversions in the period it was assigned in, and a cookie from before periods
//! existed reads as period 1.
//!
//! where `tag` is the first 128 bits (hex) of HMAC-SHA256 over a purpose label, the
//! device id and the entries. Binding the device id means a cookie copied from another
//! device (or left over from a replaced id) does not verify. Names are validated to
//! `A-Z a-z 0-9 _ -`, so `:` `|` `.` can separate them, and every byte is a valid
//! cookie-octet (RFC 6265 §4.1.1).

use std::sync::Arc;

use hmac::{Hmac, Mac};

use crate::util::random::push_hex;
use sha2::Sha256;

/// Browsers keep at least 4 096 bytes per cookie (RFC 6265 §6.1); stay below that with
/// room for the name and attributes. Entries past it are not recorded (those devices
/// are still assigned by the deterministic hash, just not pinned against weight changes).
pub const MAX_VALUE_LEN: usize = 3_600;
const VERSION: &str = "v1";
const PURPOSE: &[u8] = b"abproxy assignments v1\n";
const TAG_BYTES: usize = 16;

/// The run of a pin that belongs to no run's population: a known device whose earlier
/// pins were lost or unreadable, re-pinned without being counted again.
pub const UNCOUNTED_RUN: u32 = 0;

/// One experiment's pinned assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub experiment: String,
    pub variant: String,
    /// The run the device was assigned in.
    pub run: u32,
    /// The period of that run the device was assigned in (1 and up).
    pub period: u32,
    /// Goals this device converted on in that run (each counts once per device and run,
    /// on every replica that shares the secret).
    pub goals: Vec<String>,
}

/// A device's pinned assignments, in the order they are written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignments {
    pub entries: Vec<Entry>,
}

impl Assignments {
    pub fn get(&self, experiment: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.experiment == experiment)
    }

    /// Remove and return the entry `get` would give.
    pub fn take(&mut self, experiment: &str) -> Option<Entry> {
        let at = self
            .entries
            .iter()
            .position(|e| e.experiment == experiment)?;
        Some(self.entries.remove(at))
    }
}

/// Why a cookie was ignored (the discriminant indexes the metric's reason labels,
/// `counting::metrics::COOKIE_REJECTED_REASONS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Not of the form above (truncated, foreign, an old format).
    Malformed,
    /// Well-formed, but the tag does not match: tampered, another device's, or signed
    /// with another secret.
    BadSignature,
}

/// Signs and verifies assignment cookies with one secret.
#[derive(Clone)]
pub struct Signer {
    mac: Hmac<Sha256>,
    /// Shared by this signer's clones (one secret): what a [`Verified`] was checked by.
    key_id: Arc<()>,
}

/// The last assignment cookie a connection carried that verified, and its entries. A
/// browser's keep-alive connection carries one visitor, whose next requests bring the
/// same cookie: verified once, it is not hashed again while it stays the same (same
/// signer, same device id, same bytes).
#[derive(Default)]
pub struct Verified {
    checked: Option<Checked>,
}

struct Checked {
    key_id: Arc<()>,
    device_id: String,
    value: Vec<u8>,
    assignments: Assignments,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    pub fn new(secret: &[u8]) -> Signer {
        Signer {
            mac: Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length"),
            key_id: Arc::new(()),
        }
    }

    fn tag(&self, device_id: &str, payload: &str) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(PURPOSE);
        mac.update(device_id.as_bytes());
        mac.update(b"\n");
        mac.update(payload.as_bytes());
        mac
    }

    /// A hex MAC of `message` for another `purpose` (admin sessions, CSRF tokens): the
    /// same secret, separated by the purpose label.
    pub fn mac_hex(&self, purpose: &str, message: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(b"abproxy ");
        mac.update(purpose.as_bytes());
        mac.update(b"\n");
        mac.update(message.as_bytes());
        let mut out = String::with_capacity(64);
        push_hex(&mut out, &mac.finalize().into_bytes());
        out
    }

    /// The cookie value for `assignments` of `device_id`, and how many entries it holds:
    /// entries that would push it past [`MAX_VALUE_LEN`] are left out (the first ones
    /// are kept). On the path of every new visitor: built in one buffer, no `format!`.
    pub fn encode(&self, device_id: &str, assignments: &Assignments) -> (String, usize) {
        let budget = MAX_VALUE_LEN - TAG_BYTES * 2 - 1;
        let mut value = String::with_capacity(64 + 48 * assignments.entries.len());
        value.push_str(VERSION);
        value.push('.');
        let start = value.len();
        let mut kept = 0;
        let (mut run, mut period) = (itoa_buf(), itoa_buf());
        for e in &assignments.entries {
            let run = run.format(e.run);
            let period = (e.period != 1).then(|| period.format(e.period));
            let goals_len: usize = e.goals.iter().map(|g| g.len() + 1).sum();
            let needed = e.experiment.len()
                + e.variant.len()
                + run.len()
                + period.as_ref().map_or(0, |p| p.len() + 1)
                + 2
                + goals_len
                + usize::from(kept > 0);
            if value.len() + needed > budget {
                break;
            }
            if kept > 0 {
                value.push('|');
            }
            value.push_str(&e.experiment);
            value.push(':');
            value.push_str(&e.variant);
            value.push(':');
            value.push_str(run);
            if let Some(period) = period {
                value.push('/');
                value.push_str(period);
            }
            for (i, goal) in e.goals.iter().enumerate() {
                value.push(if i == 0 { ':' } else { '+' });
                value.push_str(goal);
            }
            kept += 1;
        }
        let tag = self.tag(device_id, &value[start..]).finalize().into_bytes();
        value.push('.');
        push_hex(&mut value, &tag[..TAG_BYTES]);
        (value, kept)
    }

    /// [`Signer::decode`], answered from `verified` when it holds this very cookie.
    pub fn decode_remembered(
        &self,
        device_id: &str,
        value: &[u8],
        verified: &mut Verified,
    ) -> Result<Assignments, Rejected> {
        if let Some(checked) = &verified.checked {
            if Arc::ptr_eq(&checked.key_id, &self.key_id)
                && checked.device_id == device_id
                && checked.value == value
            {
                return Ok(checked.assignments.clone());
            }
        }
        let assignments = self.decode(device_id, value)?;
        verified.checked = Some(Checked {
            key_id: self.key_id.clone(),
            device_id: device_id.to_string(),
            value: value.to_vec(),
            assignments: assignments.clone(),
        });
        Ok(assignments)
    }

    /// Verify and parse a cookie value for `device_id`.
    pub fn decode(&self, device_id: &str, value: &[u8]) -> Result<Assignments, Rejected> {
        let value = std::str::from_utf8(value).map_err(|_| Rejected::Malformed)?;
        let rest = value
            .strip_prefix(VERSION)
            .and_then(|r| r.strip_prefix('.'))
            .ok_or(Rejected::Malformed)?;
        let (payload, hex) = rest.rsplit_once('.').ok_or(Rejected::Malformed)?;
        let tag = decode_tag(hex).ok_or(Rejected::Malformed)?;
        // Constant-time comparison of the truncated tag.
        self.tag(device_id, payload)
            .verify_truncated_left(&tag)
            .map_err(|_| Rejected::BadSignature)?;
        let mut assignments = Assignments::default();
        if payload.is_empty() {
            return Ok(assignments);
        }
        for item in payload.split('|') {
            let mut parts = item.split(':');
            let (Some(experiment), Some(variant), Some(run), goals, None) = (
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
            ) else {
                return Err(Rejected::Malformed);
            };
            let (run, period) = match run.split_once('/') {
                None => (run, "1"),
                Some(both) => both,
            };
            let run = run.parse().map_err(|_| Rejected::Malformed)?;
            let period = period
                .parse()
                .ok()
                .filter(|&p| p >= 1)
                .ok_or(Rejected::Malformed)?;
            let goals = goals
                .map(|g| g.split('+').map(String::from).collect())
                .unwrap_or_default();
            assignments.entries.push(Entry {
                experiment: experiment.into(),
                variant: variant.into(),
                run,
                period,
                goals,
            });
        }
        Ok(assignments)
    }
}

/// Formats a u32 without allocating.
struct ItoaBuf([u8; 10]);

fn itoa_buf() -> ItoaBuf {
    ItoaBuf([0; 10])
}

impl ItoaBuf {
    fn format(&mut self, mut n: u32) -> &str {
        let mut i = self.0.len();
        loop {
            i -= 1;
            self.0[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        std::str::from_utf8(&self.0[i..]).expect("ASCII digits")
    }
}

/// The tag's bytes from exactly `2 * TAG_BYTES` hex digits.
fn decode_tag(hex: &str) -> Option<[u8; TAG_BYTES]> {
    // from_str_radix would also take a sign: one tag must have one spelling.
    if hex.len() != 2 * TAG_BYTES || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut tag = [0u8; TAG_BYTES];
    for (i, byte) in tag.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(e: &str, v: &str, run: u32) -> Entry {
        Entry {
            experiment: e.into(),
            variant: v.into(),
            run,
            period: 1,
            goals: Vec::new(),
        }
    }

    fn sample() -> Assignments {
        Assignments {
            entries: vec![
                entry("moon_mars", "Mars", 2),
                entry("white_gold_btn", "Gold", 1),
            ],
        }
    }

    #[test]
    fn round_trip() {
        let s = Signer::new(b"secret-one-secret-one");
        let (value, kept) = s.encode("dev-1", &sample());
        assert_eq!(kept, 2);
        assert!(
            value.starts_with("v1.moon_mars:Mars:2|white_gold_btn:Gold:1."),
            "{value}"
        );
        assert_eq!(s.decode("dev-1", value.as_bytes()), Ok(sample()));
        let (empty, _) = s.encode("dev-1", &Assignments::default());
        assert_eq!(
            s.decode("dev-1", empty.as_bytes()),
            Ok(Assignments::default())
        );
    }

    #[test]
    fn converted_goals_round_trip() {
        let s = Signer::new(b"secret-one-secret-one");
        let mut a = sample();
        a.entries[0].goals = vec!["click".into(), "checkout".into()];
        let (value, _) = s.encode("dev-1", &a);
        assert!(
            value.starts_with("v1.moon_mars:Mars:2:click+checkout|white_gold_btn:Gold:1."),
            "{value}"
        );
        assert_eq!(s.decode("dev-1", value.as_bytes()), Ok(a));
    }

    #[test]
    fn a_period_after_the_first_is_carried_and_the_first_is_left_out() {
        let s = Signer::new(b"secret-one-secret-one");
        let mut a = sample();
        a.entries[0].period = 12;
        a.entries[0].goals = vec!["click".into()];
        let (value, _) = s.encode("dev-1", &a);
        assert!(
            value.starts_with("v1.moon_mars:Mars:2/12:click|white_gold_btn:Gold:1."),
            "{value}"
        );
        assert_eq!(s.decode("dev-1", value.as_bytes()), Ok(a));
        // Signed but not a period: refused as malformed, never read as period 1.
        for bad in [
            "moon_mars:Mars:2/0",
            "moon_mars:Mars:2/x",
            "moon_mars:Mars:2/",
        ] {
            let mut v = format!("v1.{bad}.");
            push_hex(
                &mut v,
                &s.tag("dev-1", bad).finalize().into_bytes()[..TAG_BYTES],
            );
            assert_eq!(
                s.decode("dev-1", v.as_bytes()),
                Err(Rejected::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn tampered_foreign_and_truncated_cookies_are_rejected() {
        let s = Signer::new(b"secret-one-secret-one");
        let (value, _) = s.encode("dev-1", &sample());
        let tampered = value.replace("Mars", "Moon");
        assert_eq!(
            s.decode("dev-1", tampered.as_bytes()),
            Err(Rejected::BadSignature)
        );
        assert_eq!(
            s.decode("dev-2", value.as_bytes()),
            Err(Rejected::BadSignature),
            "bound to the device"
        );
        let other = Signer::new(b"another-secret-entirely");
        assert_eq!(
            other.decode("dev-1", value.as_bytes()),
            Err(Rejected::BadSignature),
            "another secret"
        );
        assert_eq!(
            s.decode("dev-1", &value.as_bytes()[..value.len() - 1]),
            Err(Rejected::Malformed)
        );
        assert_eq!(
            s.decode("dev-1", &value.as_bytes()[..10]),
            Err(Rejected::Malformed)
        );
        for junk in [
            &b""[..],
            b"v1",
            b"v1..",
            b"v2.a:B:1.00",
            b"\xff\xfe",
            b"v1.a:B:x.0011223344556677889900aabbccddeeff",
        ] {
            assert!(s.decode("dev-1", junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn a_remembered_cookie_answers_only_for_the_same_signer_device_and_bytes() {
        let s = Signer::new(b"secret-one-secret-one");
        let (value, _) = s.encode("dev-1", &sample());
        let mut verified = Verified::default();
        for _ in 0..2 {
            assert_eq!(
                s.decode_remembered("dev-1", value.as_bytes(), &mut verified),
                Ok(sample())
            );
        }
        // Each differs from what was remembered, so each is checked afresh.
        let tampered = value.replace("Mars", "Moon");
        assert_eq!(
            s.decode_remembered("dev-1", tampered.as_bytes(), &mut verified),
            Err(Rejected::BadSignature)
        );
        assert_eq!(
            s.decode_remembered("dev-1", value.as_bytes(), &mut verified),
            Ok(sample()),
            "a rejected cookie does not replace the remembered one"
        );
        assert_eq!(
            s.decode_remembered("dev-2", value.as_bytes(), &mut verified),
            Err(Rejected::BadSignature),
            "bound to the device"
        );
        let other = Signer::new(b"another-secret-entirely");
        assert_eq!(
            other.decode_remembered("dev-1", value.as_bytes(), &mut verified),
            Err(Rejected::BadSignature),
            "another secret"
        );
        // A clone holds the same secret: what it verified stands.
        assert_eq!(
            s.clone()
                .decode_remembered("dev-1", value.as_bytes(), &mut verified),
            Ok(sample())
        );
    }

    #[test]
    fn numbers_and_hex_are_formatted_exactly() {
        let mut buf = itoa_buf();
        for n in [0u32, 7, 10, 99, 100, 4_294_967_295] {
            assert_eq!(buf.format(n), n.to_string());
        }
        let s = Signer::new(b"k");
        let big = Assignments {
            entries: vec![entry("e", "V", u32::MAX)],
        };
        assert_eq!(s.decode("d", s.encode("d", &big).0.as_bytes()), Ok(big));
    }

    #[test]
    fn size_is_bounded() {
        let s = Signer::new(b"k");
        let many = Assignments {
            entries: (0..200)
                .map(|i| {
                    entry(
                        &format!("experiment_{i:03}_{}", "x".repeat(40)),
                        &"V".repeat(60),
                        i,
                    )
                })
                .collect(),
        };
        let (value, kept) = s.encode("d", &many);
        assert!(value.len() <= MAX_VALUE_LEN, "{}", value.len());
        let decoded = s.decode("d", value.as_bytes()).unwrap();
        assert_eq!(decoded.entries.len(), kept);
        assert!(!decoded.entries.is_empty() && decoded.entries.len() < 200);
        assert_eq!(
            decoded.entries[..],
            many.entries[..decoded.entries.len()],
            "the first entries are kept"
        );
    }
}
