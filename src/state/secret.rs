//! The key that signs assignment cookies (and admin sessions), and the admin token.
//!
//! Replicas must share it, or each rejects the others' cookies and re-assigns by hash.
//! In order: `ABPROXY_SECRET`, then the config's `secret_file`, else a random key
//! generated once and kept in `<data_dir>/secret` (with a warning).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Shorter secrets are refused: they could be guessed.
pub const MIN_LEN: usize = 16;
pub const ENV: &str = "ABPROXY_SECRET";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Env,
    File(PathBuf),
    Generated(PathBuf),
}

/// `env` is the value of `ABPROXY_SECRET`, passed in so tests need not touch the
/// process environment.
pub fn load(
    env: Option<String>,
    secret_file: Option<&Path>,
    data_dir: &Path,
) -> Result<(Vec<u8>, Source), String> {
    if let Some(value) = env {
        let value = value.trim().as_bytes().to_vec();
        if value.len() < MIN_LEN {
            return Err(format!("{ENV} must be at least {MIN_LEN} bytes"));
        }
        return Ok((value, Source::Env));
    }
    if let Some(path) = secret_file {
        let value = std::fs::read(path)
            .map_err(|e| format!("cannot read secret_file {}: {e}", path.display()))?;
        let value = value.trim_ascii().to_vec();
        if value.len() < MIN_LEN {
            return Err(format!(
                "secret_file {} must hold at least {MIN_LEN} bytes",
                path.display()
            ));
        }
        return Ok((value, Source::File(path.to_path_buf())));
    }
    let path = data_dir.join("secret");
    match std::fs::read(&path) {
        Ok(value) if value.trim_ascii().len() >= MIN_LEN => {
            return Ok((value.trim_ascii().to_vec(), Source::Generated(path)))
        }
        Ok(_) => {
            return Err(format!(
                "{} is too short; delete it to generate a new one",
                path.display()
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let hex =
        crate::util::random::token(32).map_err(|e| format!("no randomness for a secret: {e}"))?;
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    crate::util::fsutil::write_atomically(&path, format!("{hex}\n").as_bytes(), Some(0o600))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok((hex.into_bytes(), Source::Generated(path)))
}

/// The key that signs webhook bodies (`notify.secret_file`): its bytes, trimmed. Read at
/// each load (so a bad file refuses the config) and at each delivery (so a rotated file
/// is used without a reload).
pub fn read_webhook_secret(path: &Path) -> Result<Vec<u8>, String> {
    let value = std::fs::read(path)
        .map_err(|e| format!("cannot read notify.secret_file {}: {e}", path.display()))?;
    let value = value.trim_ascii().to_vec();
    if value.len() < MIN_LEN {
        return Err(format!(
            "notify.secret_file {} must hold at least {MIN_LEN} bytes",
            path.display()
        ));
    }
    Ok(value)
}

/// Where the admin token comes from first.
pub const TOKEN_ENV: &str = "ABPROXY_ADMIN_TOKEN";
/// Shorter admin tokens are refused.
pub const MIN_TOKEN_LEN: usize = 16;

/// The configured token, kept only as its SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// `ABPROXY_ADMIN_TOKEN` (given as `env`) first, then `token_file`; `None` when
    /// neither is set.
    pub fn load(
        env: Option<String>,
        token_file: Option<&Path>,
    ) -> Result<Option<AdminToken>, String> {
        let (token, source) = match (env, token_file) {
            (Some(token), _) => (token, TOKEN_ENV.to_string()),
            (None, Some(path)) => (
                std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read admin.token_file {}: {e}", path.display()))?,
                format!("admin.token_file {}", path.display()),
            ),
            (None, None) => return Ok(None),
        };
        let token = token.trim();
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "the admin token from {source} must be at least {MIN_TOKEN_LEN} characters"
            ));
        }
        Ok(Some(AdminToken::new(token)))
    }

    pub fn new(token: &str) -> AdminToken {
        AdminToken {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Constant-time: compares digests, so neither length nor content leaks timing.
    pub fn matches(&self, candidate: &str) -> bool {
        let other: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        self.digest
            .iter()
            .zip(other.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// What admin sessions are bound to (a new token ends every session).
    pub fn fingerprint(&self) -> String {
        crate::util::random::hex(&self.digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_sources_and_length() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "file-token-0123456789\n").unwrap();
        assert!(AdminToken::load(None, None).unwrap().is_none());
        let t = AdminToken::load(None, Some(&file)).unwrap().unwrap();
        assert!(t.matches("file-token-0123456789"));
        let t = AdminToken::load(Some("env-token-0123456789".into()), Some(&file))
            .unwrap()
            .unwrap();
        assert!(t.matches("env-token-0123456789") && !t.matches("file-token-0123456789"));
        assert!(AdminToken::load(Some("short".into()), None)
            .unwrap_err()
            .contains("at least 16"));
        assert!(AdminToken::load(None, Some(&dir.path().join("missing")))
            .unwrap_err()
            .contains("cannot read"));
    }

    #[test]
    fn env_wins_then_file_then_generated_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "from-the-file-0123456789\n").unwrap();
        let (k, src) = load(
            Some("from-the-environment-xyz".into()),
            Some(&file),
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            (k.as_slice(), src),
            (&b"from-the-environment-xyz"[..], Source::Env)
        );
        let (k, src) = load(None, Some(&file), dir.path()).unwrap();
        assert_eq!(
            (k.as_slice(), src),
            (&b"from-the-file-0123456789"[..], Source::File(file.clone()))
        );

        let data = dir.path().join("data");
        let (first, src) = load(None, None, &data).unwrap();
        assert_eq!(src, Source::Generated(data.join("secret")));
        assert_eq!(first.len(), 64);
        let (again, _) = load(None, None, &data).unwrap();
        assert_eq!(first, again, "generated once, then reused");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(data.join("secret"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn short_or_missing_secrets_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(Some("short".into()), None, dir.path())
            .unwrap_err()
            .contains("at least 16"));
        assert!(load(None, Some(&dir.path().join("nope")), dir.path())
            .unwrap_err()
            .contains("cannot read secret_file"));
    }
}
