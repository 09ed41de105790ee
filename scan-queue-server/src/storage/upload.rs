//! Files on their way in: an [`Upload`] being received (hashed as it arrives), and a [`Kept`]
//! result file. Both are guards: dropped without being handed on (a refusal, an early return,
//! a dropped connection, a panic), they remove their file.

use sha2::{Digest, Sha256};
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

/// An upload being received into a private staging file.
#[derive(Debug)]
pub(crate) struct Upload {
    file: Option<tokio::fs::File>,
    path: Removal,
    hasher: Sha256,
    /// Bytes received.
    pub(crate) len: u64,
    /// Its SHA-256 once finished.
    sha256: Option<String>,
    /// The name the client gave it.
    pub(crate) file_name: Option<String>,
    /// The content type the client gave it.
    pub(crate) content_type: Option<String>,
}

impl Upload {
    /// A new, empty upload at `path` (created private).
    pub(crate) async fn create(
        path: PathBuf,
        file_name: Option<String>,
    ) -> std::io::Result<Upload> {
        let removal = Removal(Some(path.clone()));
        let file = tokio::task::spawn_blocking(move || super::fs::create_private(&path))
            .await
            .map_err(std::io::Error::other)??;
        Ok(Upload {
            file: Some(tokio::fs::File::from_std(file)),
            path: removal,
            hasher: Sha256::new(),
            len: 0,
            sha256: None,
            file_name,
            content_type: None,
        })
    }

    /// Appends bytes.
    pub(crate) async fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        let file = self.file.as_mut().ok_or_else(finished)?;
        file.write_all(chunk).await?;
        self.hasher.update(chunk);
        self.len += chunk.len() as u64;
        Ok(())
    }

    /// Ends the upload (again: no effect): its bytes are flushed and synced. Returns its
    /// SHA-256, lowercase hex.
    pub(crate) async fn finish(&mut self) -> std::io::Result<String> {
        if let Some(sha256) = &self.sha256 {
            return Ok(sha256.clone());
        }
        let mut file = self.file.take().ok_or_else(finished)?;
        file.flush().await?;
        file.sync_data().await?;
        let sha256 = hex(&self.hasher.clone().finalize());
        self.sha256 = Some(sha256.clone());
        Ok(sha256)
    }

    /// Where it is staged (to read it back once finished).
    pub(crate) fn path(&self) -> &std::path::Path {
        self.path.0.as_deref().unwrap_or(std::path::Path::new(""))
    }

    /// Takes the staged file over (it is no longer removed on drop).
    pub(crate) fn into_path(mut self) -> PathBuf {
        self.path.0.take().unwrap_or_default()
    }
}

fn finished() -> std::io::Error {
    std::io::Error::other("the upload was already finished")
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A result file kept by the storage, that no record refers to yet.
#[derive(Debug)]
pub(crate) struct Kept {
    /// Its name in the storage.
    pub(crate) file: String,
    path: Removal,
    /// Bytes.
    pub(crate) size: u64,
    /// SHA-256, lowercase hex.
    pub(crate) sha256: String,
    /// The name the client gave it.
    pub(crate) file_name: Option<String>,
    /// The content type the client gave it.
    pub(crate) content_type: Option<String>,
}

impl Kept {
    pub(crate) fn new(file: String, path: PathBuf, upload: &Upload, sha256: String) -> Kept {
        Kept {
            file,
            path: Removal(Some(path)),
            size: upload.len,
            sha256,
            file_name: upload.file_name.clone(),
            content_type: upload.content_type.clone(),
        }
    }

    /// A record now refers to it: it stays.
    pub(crate) fn referenced(mut self) {
        self.path.0 = None;
    }

    /// Takes the file over for removal.
    pub(crate) fn into_path(mut self) -> PathBuf {
        self.path.0.take().unwrap_or_default()
    }
}

/// Removes a file when dropped, unless emptied first. On the calling thread: an unlink
/// without a sync takes microseconds, and a refused call's file is then gone by the time the
/// refusal is answered.
#[derive(Debug)]
struct Removal(Option<PathBuf>);

impl Drop for Removal {
    fn drop(&mut self) {
        if let Some(path) = self.0.take()
            && let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!(path = %path.display(), error = %e, "could not remove an unused upload");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_and_removes_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.part");
        let mut upload = Upload::create(path.clone(), None).await.unwrap();
        upload.write(b"abc").await.unwrap();
        assert_eq!(
            upload.finish().await.unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"abc");
        drop(upload);
        assert!(!path.exists(), "a dropped upload removes its file");
    }
}
