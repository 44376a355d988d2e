//! The key that signs assignment cookies (and admin sessions).
//!
//! Replicas must share it, or each rejects the others' cookies and re-assigns by hash.
//! In order: `ABPROXY_SECRET`, then the config's `secret_file`, else a random key
//! generated once and kept in `<data_dir>/secret` (with a warning).

use std::path::{Path, PathBuf};

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

#[cfg(test)]
mod tests {
    use super::*;

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
