//! [`LocalStore`]: the data directory (or, in memory, a private temporary directory).
//!
//! Layout of the data directory, every file `0600` and directory `0700`:
//! - `journal/`: the log of records and its snapshots (see `journal/mod.rs`);
//! - `incoming/`: uploads being received; emptied at start-up;
//! - `results/task-{id}-{nonce}-{name}`: result files, moved there (a rename, then the
//!   directory synced) before the record that refers to them is appended. At start-up a file
//!   no record refers to is removed (a crash left it); once, on a data directory from before
//!   result records, such a file of a completed task becomes that task's result instead;
//! - `configs/`: scan configuration documents as an earlier version kept them; imported into
//!   the journal at start-up, then removed.

use super::journal::{self, Durability, Journal, recovery};
use super::upload::{Kept, Upload, hex};
use super::{BoxFuture, ResultSource, Storage, fs};
use crate::state::{Record, ResultRecord, State};
use scan_queue::{Config, KeySource, TaskId, TaskStatus};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The data directory as a [`Storage`].
#[derive(Debug)]
pub(crate) struct LocalStore {
    /// `None`: in memory, nothing kept across a restart.
    journal: Option<Journal>,
    incoming: PathBuf,
    results: PathBuf,
    /// Whether moves into `results/` are synced.
    sync: bool,
    /// Distinguishes uploads (with the start-up time, so names are not reused after a restart).
    nonce: AtomicU64,
    boot_ms: u64,
    /// In memory: the private temporary directory that holds the files, removed on drop.
    _temp: Option<tempfile::TempDir>,
}

impl LocalStore {
    /// Opens the data directory at `root` and recovers the state it holds (`durability`
    /// `None`: a fresh state, files in a temporary directory).
    pub(crate) fn open(
        root: &Path,
        durability: Option<Durability>,
        config: Config,
        keys: KeySource,
        now_ms: u64,
    ) -> std::io::Result<(LocalStore, State)> {
        let Some(durability) = durability else {
            let temp = tempfile::Builder::new().prefix("scan-queue-").tempdir()?;
            let state = State::new(config, keys).map_err(std::io::Error::other)?;
            let store = LocalStore::with_dirs(temp.path(), false, None, now_ms)?;
            return Ok((
                LocalStore {
                    _temp: Some(temp),
                    ..store
                },
                state,
            ));
        };
        fs::data_root(root)?;
        let dir = root.join("journal");
        fs::private_dir(&dir)?;
        let lock = journal::lock(&dir)?;
        let recovered = recovery::recover(&dir, config, keys)?;
        let mut state = recovered.state;
        let mut changed = legacy_configs(&root.join("configs"), &mut state)?;
        let store = LocalStore::with_dirs(root, durability.fsync.syncs(), None, now_ms)?;
        changed |= store.reconcile_results(&mut state)?;
        // What start-up changed is in the snapshot taken now, not in records.
        drop(state.take_records());
        tracing::info!(
            snapshot = recovered.snapshot_seq,
            replayed = recovered.replayed,
            last_seq = recovered.last_seq,
            "journal: recovered"
        );
        let snapshot_now =
            changed || recovered.replayed > 0 || recovered.snapshot_seq != Some(recovered.last_seq);
        let journal = Journal::start(
            &dir,
            durability,
            lock,
            recovered.last_seq,
            &state,
            snapshot_now,
        )?;
        let configs = root.join("configs");
        if configs.exists() {
            std::fs::remove_dir_all(&configs)?;
        }
        Ok((
            LocalStore {
                journal: Some(journal),
                ..store
            },
            state,
        ))
    }

    fn with_dirs(
        root: &Path,
        sync: bool,
        journal: Option<Journal>,
        boot_ms: u64,
    ) -> std::io::Result<LocalStore> {
        let incoming = root.join("incoming");
        let results = root.join("results");
        fs::private_dir(&incoming)?;
        fs::private_dir(&results)?;
        for path in fs::files_in(&incoming)? {
            std::fs::remove_file(&path)?;
        }
        Ok(LocalStore {
            journal,
            incoming,
            results,
            sync,
            nonce: AtomicU64::new(0),
            boot_ms,
            _temp: None,
        })
    }

    /// Where result files are.
    pub(crate) fn results_dir(&self) -> &Path {
        &self.results
    }

    fn next_nonce(&self) -> String {
        let n = self.nonce.fetch_add(1, Ordering::Relaxed);
        format!("{}x{n}", self.boot_ms)
    }

    /// Makes `results/` agree with the result records (see the module docs); returns whether
    /// the state changed.
    fn reconcile_results(&self, state: &mut State) -> std::io::Result<bool> {
        let adopting = !state.results_tracked;
        state.results_tracked = true;
        let referenced: std::collections::HashSet<String> =
            state.result_files().map(str::to_owned).collect();
        let mut files = fs::files_in(&self.results)?;
        files.sort();
        let (mut adopted, mut removed) = (0, 0);
        for path in files {
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            if referenced.contains(&name) {
                continue;
            }
            let orphan_of =
                parse_result_name(&name)
                    .filter(|_| adopting)
                    .and_then(|(id, original)| {
                        let task = state.queue.task(id)?;
                        (task.status() == TaskStatus::CompleteSuccessful
                            && state.result(id).is_none())
                        .then(|| (task.clone(), original))
                    });
            if let Some((task, original)) = orphan_of {
                let mut hasher = Sha256::new();
                let size = std::io::copy(&mut std::fs::File::open(&path)?, &mut hasher)?;
                // What the report is, never refusing (the file was accepted back then).
                let inspection = crate::report::inspect(
                    std::io::BufReader::new(std::fs::File::open(&path)?),
                    "",
                    crate::report::ResultCheck::None,
                )
                .ok();
                let record = ResultRecord {
                    task: task.id(),
                    application: task.application(),
                    scanner: task.scanner().to_owned(),
                    file: name,
                    file_name: Some(original),
                    content_type: None,
                    size,
                    sha256: hex(&hasher.finalize()),
                    received_ms: task.end_ms().unwrap_or(0),
                    report: inspection
                        .as_ref()
                        .and_then(|i| i.report)
                        .map(|k| k.name().to_owned()),
                    findings: inspection.as_ref().and_then(|i| i.findings),
                };
                if state.adopt_result(record).is_ok() {
                    adopted += 1;
                    continue;
                }
            }
            std::fs::remove_file(&path)?;
            removed += 1;
        }
        if removed > 0 {
            tracing::warn!(
                removed,
                "results/: files no result record names (left by a crash) removed"
            );
        }
        if adopted > 0 {
            tracing::info!(
                adopted,
                "results/: result files of an earlier version given records"
            );
        }
        Ok(adopting)
    }
}

/// The task id and the uploaded name in `task-{id}-{nonce}-{name}`.
fn parse_result_name(name: &str) -> Option<(TaskId, String)> {
    let rest = name.strip_prefix("task-")?;
    let (id, rest) = rest.split_once('-')?;
    let (_, original) = rest.split_once('-')?;
    Some((TaskId(id.parse().ok()?), original.to_owned()))
}

/// A file name safe on every file system: `[A-Za-z0-9._-]`, at most 64 bytes, never empty or
/// a dot name.
pub(super) fn sanitize(name: &str) -> String {
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

/// Imports the scan configuration documents an earlier version kept in `configs/` (one JSON
/// header line — application, scanner, the ThreadFix object — then the bytes, per file); returns
/// whether it found any.
fn legacy_configs(dir: &Path, state: &mut State) -> std::io::Result<bool> {
    #[derive(serde::Deserialize)]
    struct Header {
        application: scan_queue::ApplicationId,
        scanner: String,
        object: crate::wire::ScanConfigObject,
    }
    if !dir.is_dir() {
        return Ok(false);
    }
    let mut files: Vec<PathBuf> = fs::files_in(dir)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cfg"))
        .collect();
    files.sort();
    for path in &files {
        let bad = |what: String| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("scan config file {} is corrupt: {what}", path.display()),
            )
        };
        let bytes = std::fs::read(path)?;
        let split = bytes
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| bad("no header line".into()))?;
        let header: Header =
            serde_json::from_slice(&bytes[..split]).map_err(|e| bad(e.to_string()))?;
        let doc = crate::state::ScanConfigDoc {
            application: header.application,
            scanner: header.scanner,
            object: header.object,
            bytes: bytes[split + 1..].to_vec(),
        };
        state.import_config(doc).map_err(|e| bad(e.to_string()))?;
    }
    Ok(!files.is_empty())
}

impl Storage for LocalStore {
    fn append(&self, records: Vec<Record>, state: &State) -> u64 {
        match &self.journal {
            Some(journal) => journal.append(records, state),
            None => 0,
        }
    }

    fn durable(&self, seq: u64) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            match &self.journal {
                Some(journal) => journal.durable(seq).await,
                None => true,
            }
        })
    }

    fn failed(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            match &self.journal {
                Some(journal) => journal.failed().await,
                None => std::future::pending().await,
            }
        })
    }

    fn has_failed(&self) -> bool {
        self.journal.as_ref().is_some_and(Journal::has_failed)
    }

    fn stage(&self, file_name: Option<String>) -> BoxFuture<'_, std::io::Result<Upload>> {
        let path = self.incoming.join(format!("{}.part", self.next_nonce()));
        Box::pin(Upload::create(path, file_name))
    }

    fn keep(&self, mut upload: Upload, task: TaskId) -> BoxFuture<'_, std::io::Result<Kept>> {
        let name = format!(
            "task-{task}-{}-{}",
            self.next_nonce(),
            sanitize(upload.file_name.as_deref().unwrap_or(""))
        );
        let to = self.results.join(&name);
        let sync = self.sync;
        Box::pin(async move {
            let sha256 = upload.finish().await?;
            let kept = Kept::new(name, to.clone(), &upload, sha256);
            let from = upload.into_path();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = std::fs::rename(&from, &to) {
                    let _ = std::fs::remove_file(&from);
                    return Err(e);
                }
                match to.parent() {
                    Some(dir) if sync => fs::sync_dir(dir),
                    _ => Ok(()),
                }
            })
            .await
            .map_err(std::io::Error::other)??;
            Ok(kept)
        })
    }

    fn result_source(&self, file: &str) -> ResultSource {
        // Names come from records the server made (`task-{id}-{nonce}-{sanitized}`): no
        // separator, never a dot name.
        ResultSource::File(self.results.join(file))
    }

    fn remove_results(&self, files: Vec<String>) -> BoxFuture<'_, ()> {
        let paths: Vec<PathBuf> = files.iter().map(|f| self.results.join(f)).collect();
        Box::pin(async move {
            let removed = tokio::task::spawn_blocking(move || {
                for path in paths {
                    if let Err(e) = std::fs::remove_file(&path)
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        tracing::error!(path = %path.display(), error = %e, "could not remove a deleted result's file");
                    }
                }
            })
            .await;
            if removed.is_err() {
                tracing::error!("removing deleted results' files panicked");
            }
        })
    }

    fn discard(&self, kept: Kept) -> BoxFuture<'_, ()> {
        let path = kept.into_path();
        Box::pin(async move {
            let removed = tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await;
            if let Ok(Err(e)) = removed {
                tracing::error!(error = %e, "could not remove an unused result file");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scan_queue::{ApplicationId, NewScan};

    /// A state whose task 1 is COMPLETE_SUCCESSFUL without a result record, and a store whose
    /// `results/` holds a file for it and one for a task that does not exist.
    fn completed_without_record(dir: &Path, tracked: bool) -> (LocalStore, State) {
        let mut state = State::new(Config::default(), KeySource::from_seed([1; 32])).unwrap();
        let q = &mut state.queue;
        let agent = q.register_agent(1).unwrap().key.expose_secret().to_owned();
        q.queue_scan(1, NewScan::new(ApplicationId(1), "zap"))
            .unwrap();
        let task = q.request_task(1, &agent, &["zap"], "").unwrap().unwrap();
        let key = task
            .assignment()
            .unwrap()
            .task_key()
            .expose_secret()
            .to_owned();
        q.complete_task(2, TaskId(1), &agent, &key).unwrap();
        drop(state.take_records());
        state.results_tracked = tracked;
        let store = LocalStore::with_dirs(dir, false, None, 1).unwrap();
        std::fs::write(dir.join("results/task-1-9x0-r.xml"), b"<r/>").unwrap();
        std::fs::write(dir.join("results/task-7-9x1-r.xml"), b"<r/>").unwrap();
        (store, state)
    }

    #[test]
    fn files_without_a_record_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut state) = completed_without_record(dir.path(), true);
        assert!(!store.reconcile_results(&mut state).unwrap());
        assert!(
            fs::files_in(&dir.path().join("results"))
                .unwrap()
                .is_empty()
        );
        assert!(state.result(TaskId(1)).is_none());
    }

    #[test]
    fn an_earlier_versions_files_of_completed_tasks_are_adopted_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut state) = completed_without_record(dir.path(), false);
        assert!(store.reconcile_results(&mut state).unwrap());
        let kept = fs::files_in(&dir.path().join("results")).unwrap();
        assert_eq!(kept, vec![dir.path().join("results/task-1-9x0-r.xml")]);
        let record = state.result(TaskId(1)).unwrap();
        assert_eq!(
            (record.size, record.file_name.as_deref()),
            (4, Some("r.xml"))
        );
        assert!(state.results_tracked);
    }

    #[test]
    fn names() {
        assert_eq!(sanitize("C:\\path\\to\\scanResults.xml"), "scanResults.xml");
        assert_eq!(sanitize("../../etc/passwd"), "passwd");
        assert_eq!(sanitize(".."), "upload");
        assert_eq!(sanitize(""), "upload");
        assert_eq!(sanitize("a b$c.xml"), "abc.xml");
        assert_eq!(sanitize(&"x".repeat(200)).len(), 64);
        assert_eq!(
            parse_result_name("task-12-99x3-scan-results.xml"),
            Some((TaskId(12), "scan-results.xml".to_owned()))
        );
        assert_eq!(parse_result_name("task-x-1-a"), None);
    }
}
