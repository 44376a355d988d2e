//! The name rules of `PRODUCT.md`. They are what makes a name safe to put in a metric
//! label, an RFC 8941 dictionary key/token and a cookie without escaping.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// 1–64 of `a-z 0-9 _ -`, starting with a letter (an RFC 8941 dictionary key).
    Experiment,
    /// 1–64 of `A-Z a-z 0-9 _ -`, starting with a letter (an RFC 8941 token).
    Variant,
    /// Same alphabet as variants.
    Upstream,
}

const MAX_LEN: usize = 64;

pub fn check_name(name: &str, kind: NameKind) -> Result<(), String> {
    let (what, lower_only) = match kind {
        NameKind::Experiment => ("experiment key", true),
        NameKind::Variant => ("variant name", false),
        NameKind::Upstream => ("upstream name", false),
    };
    let bytes = name.as_bytes();
    let first_ok = bytes.first().is_some_and(|b| {
        if lower_only {
            b.is_ascii_lowercase()
        } else {
            b.is_ascii_alphabetic()
        }
    });
    let rest_ok = bytes.iter().all(|&b| {
        (if lower_only {
            b.is_ascii_lowercase()
        } else {
            b.is_ascii_alphabetic()
        }) || b.is_ascii_digit()
            || b == b'_'
            || b == b'-'
    });
    if first_ok && rest_ok && bytes.len() <= MAX_LEN {
        Ok(())
    } else if lower_only {
        Err(format!(
            "`{name}` is not a valid {what}: use 1–64 of a-z 0-9 _ -, starting with a letter"
        ))
    } else {
        Err(format!(
            "`{name}` is not a valid {what}: use 1–64 of A-Z a-z 0-9 _ -, starting with a letter"
        ))
    }
}

/// 1–64 of `A-Z a-z 0-9 _ -`: a device id we accept from a cookie (anything else,
/// including what could smuggle CR/LF or `;` into a header, is replaced by a new id),
/// and a cookie name we accept in the config (a safe subset of an RFC 6265 token).
pub fn is_token(text: &[u8]) -> bool {
    !text.is_empty()
        && text.len() <= MAX_LEN
        && text
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A host name as the config takes it (no port, no scheme): `A-Z a-z 0-9 . -`, not empty.
pub fn is_host_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn experiment_keys() {
        assert!(check_name("moon_mars", NameKind::Experiment).is_ok());
        assert!(check_name("a-1", NameKind::Experiment).is_ok());
        assert!(check_name("Moon", NameKind::Experiment).is_err());
        assert!(check_name("1abc", NameKind::Experiment).is_err());
        assert!(check_name("", NameKind::Experiment).is_err());
        assert!(check_name(&"a".repeat(64), NameKind::Experiment).is_ok());
        assert!(check_name(&"a".repeat(65), NameKind::Experiment).is_err());
        assert!(check_name("a.b", NameKind::Experiment).is_err());
    }

    #[test]
    fn variant_names() {
        assert!(check_name("Mars", NameKind::Variant).is_ok());
        assert!(check_name("white-Gold_2", NameKind::Variant).is_ok());
        assert!(check_name("_x", NameKind::Variant).is_err());
        assert!(check_name("Ma rs", NameKind::Variant).is_err());
    }

    #[test]
    fn host_names() {
        assert!(is_host_name("shop.example-1.com"));
        assert!(!is_host_name(""));
        assert!(!is_host_name("example.com:8080"));
        assert!(!is_host_name("x.com; Secure"));
    }

    #[test]
    fn device_ids() {
        assert!(is_token(b"0b9f8a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"));
        assert!(is_token(b"A"));
        assert!(!is_token(b""));
        assert!(!is_token(&[b'a'; 65]));
        assert!(!is_token(b"abc\r\nSet-Cookie: x"));
        assert!(!is_token(b"a;b"));
        assert!(!is_token("é".as_bytes()));
    }
}
