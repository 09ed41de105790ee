//! What the server keeps beside the queue: uploaded result files (on disk, under the data
//! directory) and scan agent configuration documents (in memory, per application and scanner).
//!
//! Layout of the data directory:
//! - `incoming/`: uploads being received; emptied at start-up (a crash mid-upload leaves
//!   only files nobody refers to);
//! - `results/task-{id}-{nonce}-{name}`: the result file of each completed task, moved there
//!   (same file system, so a rename) *before* the completion is applied, and removed again if
//!   the completion is refused or was a retry of one already applied;
//! - `configs/config-{id:020}.cfg`: each current scan configuration document (when the server
//!   is durable): one JSON line (application, scanner, the ThreadFix object) then the bytes,
//!   written atomically (a `.tmp` file, synced, renamed, the directory synced) before
//!   `setTaskConfig` answers;
//! - `journal/`: the queue's events and snapshots (see `journal.rs`).

use crate::wire::{SCAN_CONFIG_TYPE, ScanConfigObject};
use scan_queue::{ApplicationId, ScanConfigId, TaskId};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The data directory.
#[derive(Debug)]
pub(crate) struct DataDir {
    incoming: PathBuf,
    results: PathBuf,
    /// Distinguishes uploads (with the start-up time, so names are not reused after a restart).
    nonce: AtomicU64,
    boot_ms: u64,
}

impl DataDir {
    /// Creates the directories and empties `incoming/`.
    pub(crate) fn open(root: &Path, boot_ms: u64) -> std::io::Result<DataDir> {
        let incoming = root.join("incoming");
        let results = root.join("results");
        std::fs::create_dir_all(&incoming)?;
        std::fs::create_dir_all(&results)?;
        for entry in std::fs::read_dir(&incoming)? {
            let path = entry?.path();
            if path.is_file() {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(DataDir {
            incoming,
            results,
            nonce: AtomicU64::new(0),
            boot_ms,
        })
    }

    fn next_nonce(&self) -> String {
        format!(
            "{}x{}",
            self.boot_ms,
            self.nonce.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// A fresh path under `incoming/`.
    pub(crate) fn incoming_path(&self) -> PathBuf {
        self.incoming.join(format!("{}.part", self.next_nonce()))
    }

    /// A fresh path under `results/` for a result of `task` uploaded as `file_name`.
    pub(crate) fn result_path(&self, task: TaskId, file_name: Option<&str>) -> PathBuf {
        let name = sanitize(file_name.unwrap_or(""));
        self.results
            .join(format!("task-{task}-{}-{name}", self.next_nonce()))
    }

    /// The results directory.
    pub(crate) fn results_dir(&self) -> &Path {
        &self.results
    }
}

/// A file name safe on every file system: `[A-Za-z0-9._-]`, at most 64 bytes, never empty or
/// a dot name.
fn sanitize(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = base
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(64)
        .collect();
    if clean.trim_matches('.').is_empty() {
        "upload".to_owned()
    } else {
        clean
    }
}

/// A file on disk that is removed when this guard is dropped, unless [`kept`](Self::keep).
/// Every refusal, early return, panic or dropped connection therefore removes the upload.
#[derive(Debug)]
pub(crate) struct StoredFile {
    path: Option<PathBuf>,
    /// Bytes written.
    pub(crate) len: u64,
    /// The name the client gave it.
    pub(crate) file_name: Option<String>,
}

impl StoredFile {
    pub(crate) fn new(path: PathBuf, file_name: Option<String>) -> StoredFile {
        StoredFile {
            path: Some(path),
            len: 0,
            file_name,
        }
    }

    /// Where it is now.
    pub(crate) fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// Moves it (a rename: same file system), and syncs the directory it moved to, so that a
    /// completion acknowledged after this never loses its file (`incoming/` is emptied at
    /// start-up).
    pub(crate) async fn move_to(&mut self, to: PathBuf) -> std::io::Result<()> {
        if let Some(from) = &self.path {
            tokio::fs::rename(from, &to).await?;
            self.path = Some(to.clone());
            if let Some(dir) = to.parent().map(Path::to_owned) {
                tokio::task::spawn_blocking(move || crate::journal::sync_dir(&dir))
                    .await
                    .map_err(std::io::Error::other)??;
            }
        }
        Ok(())
    }

    /// Keeps the file: it is no longer removed on drop. Returns its path.
    pub(crate) fn keep(mut self) -> PathBuf {
        self.path.take().unwrap_or_default()
    }
}

impl Drop for StoredFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take()
            && let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!(path = %path.display(), error = %e, "could not remove a refused upload");
        }
    }
}

/// One scan agent configuration document.
#[derive(Debug)]
pub(crate) struct ScanConfigDoc {
    pub(crate) object: ScanConfigObject,
    pub(crate) bytes: Vec<u8>,
}

/// The scan configuration documents, per (application, scanner display name). Setting one
/// again replaces it (with a new id); a task that named the old id then has none.
#[derive(Debug, Default)]
pub(crate) struct ConfigStore {
    next_id: u64,
    by_id: HashMap<u64, Arc<ScanConfigDoc>>,
    current: HashMap<(ApplicationId, String), u64>,
    /// Where documents are persisted (`None`: in memory only), and whether to sync them.
    persist: Option<(PathBuf, bool)>,
}

/// Why a document was not stored.
#[derive(Debug)]
pub(crate) enum ConfigRefused {
    /// [`ConfigStore::MAX_DOCUMENTS`] pairs already have one.
    Full,
    /// It could not be written to disk (the error is logged).
    Io,
}

impl std::fmt::Display for ConfigRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigRefused::Full => write!(
                f,
                "Limit reached for scan configs: at most {} application and scanner pairs.",
                ConfigStore::MAX_DOCUMENTS
            ),
            ConfigRefused::Io => write!(f, "Could not store the scan config; see the server log."),
        }
    }
}

/// The header line of a persisted document.
#[derive(serde::Serialize, serde::Deserialize)]
struct ConfigHeader {
    application: ApplicationId,
    scanner: String,
    object: ScanConfigObject,
}

fn config_file(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("config-{id:020}.cfg"))
}

impl ConfigStore {
    /// How many (application, scanner) pairs may have a document.
    pub(crate) const MAX_DOCUMENTS: usize = 4096;

    /// A store persisted under `dir` (created if needed), with the documents found there.
    /// Where a crash left two documents for one pair, the newer wins and the other is removed.
    pub(crate) fn open(dir: &Path, sync: bool) -> std::io::Result<ConfigStore> {
        std::fs::create_dir_all(dir)?;
        let mut store = ConfigStore {
            persist: Some((dir.to_owned(), sync)),
            ..ConfigStore::default()
        };
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                std::fs::remove_file(&path)?;
            } else if path.extension().is_some_and(|e| e == "cfg") {
                found.push(path);
            }
        }
        found.sort();
        for path in found {
            let bad = |what: String| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("scan config file {} is corrupt: {what}", path.display()),
                )
            };
            let bytes = std::fs::read(&path)?;
            let split = bytes
                .iter()
                .position(|b| *b == b'\n')
                .ok_or_else(|| bad("no header line".into()))?;
            let header: ConfigHeader =
                serde_json::from_slice(&bytes[..split]).map_err(|e| bad(e.to_string()))?;
            let id = header.object.id;
            if path != config_file(dir, id) {
                return Err(bad("its id differs from its name".into()));
            }
            let doc = Arc::new(ScanConfigDoc {
                object: header.object,
                bytes: bytes[split + 1..].to_vec(),
            });
            store.next_id = store.next_id.max(id);
            // Files are in id order: a later one replaces an earlier one of the same pair.
            if let Some(old) = store
                .current
                .insert((header.application, header.scanner), id)
            {
                store.by_id.remove(&old);
                std::fs::remove_file(config_file(dir, old))?;
            }
            store.by_id.insert(id, doc);
        }
        Ok(store)
    }

    /// Stores a document (on disk first, when persisted); refused when
    /// [`MAX_DOCUMENTS`](Self::MAX_DOCUMENTS) pairs already have one and this pair does not.
    pub(crate) fn set(
        &mut self,
        application: ApplicationId,
        scanner: &str,
        short_name: &str,
        content_type: Option<&str>,
        bytes: Vec<u8>,
        now_ms: u64,
    ) -> Result<Arc<ScanConfigDoc>, ConfigRefused> {
        let key = (application, scanner.to_owned());
        if !self.current.contains_key(&key) && self.current.len() >= Self::MAX_DOCUMENTS {
            return Err(ConfigRefused::Full);
        }
        let id = self.next_id + 1;
        let doc = Arc::new(ScanConfigDoc {
            object: ScanConfigObject {
                id,
                active: true,
                name: short_name.to_owned(),
                kind: SCAN_CONFIG_TYPE.to_owned(),
                content_type: content_type
                    .filter(|c| !c.is_empty() && c.len() <= 255)
                    .unwrap_or("application/octet-stream")
                    .to_owned(),
                uploaded_date: now_ms,
            },
            bytes,
        });
        if let Some((dir, sync)) = &self.persist {
            let header = ConfigHeader {
                application,
                scanner: scanner.to_owned(),
                object: doc.object.clone(),
            };
            let mut file = serde_json::to_vec(&header).map_err(|_| ConfigRefused::Io)?;
            file.push(b'\n');
            file.extend_from_slice(&doc.bytes);
            crate::journal::write_atomically(&config_file(dir, id), &file, *sync).map_err(|e| {
                tracing::error!(error = %e, "could not persist a scan config");
                ConfigRefused::Io
            })?;
        }
        self.next_id = id;
        if let Some(old) = self.current.insert(key, id) {
            self.by_id.remove(&old);
            if let Some((dir, _)) = &self.persist
                && let Err(e) = std::fs::remove_file(config_file(dir, old))
            {
                tracing::warn!(error = %e, "could not remove a replaced scan config");
            }
        }
        self.by_id.insert(id, Arc::clone(&doc));
        Ok(doc)
    }

    /// A document by id.
    pub(crate) fn get(&self, id: ScanConfigId) -> Option<Arc<ScanConfigDoc>> {
        self.by_id.get(&id.0).cloned()
    }

    /// The document that applies to a task: the one it names, else the current one of its
    /// application and scanner.
    pub(crate) fn for_task(
        &self,
        named: Option<ScanConfigId>,
        application: ApplicationId,
        scanner: &str,
    ) -> Option<Arc<ScanConfigDoc>> {
        match named {
            Some(id) => self.get(id),
            None => {
                let id = self.current.get(&(application, scanner.to_owned()))?;
                self.by_id.get(id).cloned()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized() {
        assert_eq!(sanitize("C:\\path\\to\\scanResults.xml"), "scanResults.xml");
        assert_eq!(sanitize("../../etc/passwd"), "passwd");
        assert_eq!(sanitize(".."), "upload");
        assert_eq!(sanitize(""), "upload");
        assert_eq!(sanitize("a b$c.xml"), "abc.xml");
        assert_eq!(sanitize(&"x".repeat(200)).len(), 64);
    }

    #[test]
    fn configs_replace_and_resolve() {
        let mut store = ConfigStore::default();
        let app = ApplicationId(1);
        let a = store
            .set(app, "Burp Suite Pro", "burp", None, b"one".to_vec(), 5)
            .unwrap();
        assert_eq!(a.object.id, 1);
        assert_eq!(a.object.content_type, "application/octet-stream");
        let found = store.for_task(None, app, "Burp Suite Pro").unwrap();
        assert_eq!(found.bytes, b"one");
        let b = store
            .set(
                app,
                "Burp Suite Pro",
                "burp",
                Some("text/xml"),
                b"two".to_vec(),
                6,
            )
            .unwrap();
        assert_eq!(b.object.id, 2);
        assert!(store.get(ScanConfigId(1)).is_none());
        assert_eq!(
            store
                .for_task(Some(ScanConfigId(2)), ApplicationId(7), "x")
                .unwrap()
                .bytes,
            b"two"
        );
        assert!(
            store
                .for_task(None, ApplicationId(2), "Burp Suite Pro")
                .is_none()
        );
    }
}
