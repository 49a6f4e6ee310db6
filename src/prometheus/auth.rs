//! Credentials sent to Prometheus: a bearer token read from a file, or basic auth.
//!
//! Every secret is held as a [`SecretString`], whose `Debug` prints `[REDACTED]`, so no
//! `{:?}`, log field or panic message can show one. Error texts name the file, never its
//! content.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use secrecy::{ExposeSecret, SecretString};

/// How the client proves who it is to Prometheus.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `Authorization: Bearer …`, from a file that is re-read before each query.
    Bearer(BearerToken),
    /// `Authorization: Basic …`.
    Basic {
        /// The user name, which is not a secret.
        username: String,
        /// The password.
        password: SecretString,
    },
}

/// Why a credential file gave no usable secret. The texts name the path and never the content.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The file is missing or not ours to read.
    #[error("cannot read {}: {}", path.display(), file_problem(*reason))]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error's kind, such as `NotFound`.
        reason: std::io::ErrorKind,
    },
    /// Only whitespace, which would send an empty credential.
    #[error("{} is empty", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// Control characters or non-ASCII text, which an HTTP header cannot carry.
    #[error("{} holds characters an HTTP header cannot carry", path.display())]
    NotHeaderSafe {
        /// The file.
        path: PathBuf,
    },
}

/// Reads a credential file and trims surrounding whitespace, since files written by hand or by
/// `echo` end with a newline that is not part of the secret.
pub fn read_secret_file(path: &Path) -> Result<SecretString, CredentialError> {
    let text = std::fs::read_to_string(path).map_err(|e| unreadable(path, &e))?;
    check_secret(path, text)
}

async fn read_secret_file_async(path: &Path) -> Result<SecretString, CredentialError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| unreadable(path, &e))?;
    check_secret(path, text)
}

/// Why a file could not be read, in the words people use for files rather than the standard
/// library's ("entity not found"), and without the OS error number.
pub fn file_problem(kind: std::io::ErrorKind) -> String {
    use std::io::ErrorKind;
    match kind {
        ErrorKind::NotFound => "no such file".to_owned(),
        ErrorKind::PermissionDenied => "permission denied".to_owned(),
        ErrorKind::IsADirectory => "it is a directory, not a file".to_owned(),
        ErrorKind::InvalidData => "it is not UTF-8 text".to_owned(),
        other => other.to_string(),
    }
}

fn unreadable(path: &Path, error: &std::io::Error) -> CredentialError {
    CredentialError::Unreadable {
        path: path.to_owned(),
        reason: error.kind(),
    }
}

fn check_secret(path: &Path, text: String) -> Result<SecretString, CredentialError> {
    // Held as a secret from the start, so that the untrimmed copy is wiped on drop too.
    let text = SecretString::from(text);
    let secret = SecretString::from(text.expose_secret().trim());
    let value = secret.expose_secret();
    if value.is_empty() {
        return Err(CredentialError::Empty {
            path: path.to_owned(),
        });
    }
    if !value.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return Err(CredentialError::NotHeaderSafe {
            path: path.to_owned(),
        });
    }
    Ok(secret)
}

/// A bearer token that follows its file.
///
/// Kubernetes rotates projected service-account tokens by swapping a `..data` symlink, so
/// the modification time of the path we open need not change and a file watch on it can miss
/// the swap. Reading a small file once per query is cheap and cannot miss a rotation. When a
/// read fails the last good token is kept, since an expiring token still beats none.
#[derive(Clone)]
pub struct BearerToken {
    inner: Arc<TokenFile>,
}

struct TokenFile {
    path: PathBuf,
    current: ArcSwap<SecretString>,
    failing: AtomicBool,
}

impl BearerToken {
    /// Reads the token from `path`; failing here is a configuration error.
    pub fn load(path: &Path) -> Result<Self, CredentialError> {
        let token = read_secret_file(path)?;
        Ok(BearerToken {
            inner: Arc::new(TokenFile {
                path: path.to_owned(),
                current: ArcSwap::from_pointee(token),
                failing: AtomicBool::new(false),
            }),
        })
    }

    /// The file the token is read from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Re-reads the file and returns its token, or the last good one if the read failed.
    pub async fn fresh(&self) -> Arc<SecretString> {
        let file = &self.inner;
        match read_secret_file_async(&file.path).await {
            Ok(token) => {
                if file.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(path = %file.path.display(), "bearer token file readable again");
                }
                let changed = token.expose_secret() != file.current.load().expose_secret();
                if changed {
                    tracing::debug!(path = %file.path.display(), "bearer token changed");
                    file.current.store(Arc::new(token));
                }
            }
            Err(error) => {
                if !file.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %error, "cannot re-read the bearer token; sending the last good one");
                }
            }
        }
        file.current.load_full()
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerToken")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_token_is_trimmed_followed_and_kept_when_its_file_goes_away() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("token");
        std::fs::write(&path, "first-token\n").expect("write token");
        let token = BearerToken::load(&path).expect("token loads");
        assert_eq!(token.fresh().await.expose_secret(), "first-token");

        std::fs::write(&path, "second-token").expect("rotate token");
        assert_eq!(token.fresh().await.expose_secret(), "second-token");

        std::fs::remove_file(&path).expect("remove token");
        assert_eq!(token.fresh().await.expose_secret(), "second-token");
    }

    #[test]
    fn errors_and_debug_name_the_file_never_the_secret() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("token");
        std::fs::write(&path, "hunter2\u{7}").expect("write token");

        let error = BearerToken::load(&path).expect_err("a bell is not header-safe");
        assert!(error.to_string().contains("token"), "{error}");
        assert!(!error.to_string().contains("hunter2"), "{error}");

        std::fs::write(&path, "hunter2").expect("write token");
        let auth = Auth::Bearer(BearerToken::load(&path).expect("token loads"));
        let basic = Auth::Basic {
            username: "admin".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{auth:?} {basic:?}").contains("hunter2"));
    }

    #[test]
    fn a_missing_or_blank_file_is_refused() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let missing = read_secret_file(&dir.path().join("nope")).expect_err("missing");
        assert!(
            missing.to_string().ends_with("nope: no such file"),
            "{missing}"
        );

        let blank = dir.path().join("blank");
        std::fs::write(&blank, " \n").expect("write blank");
        let empty = read_secret_file(&blank).expect_err("blank");
        assert!(empty.to_string().ends_with("blank is empty"), "{empty}");
    }
}
