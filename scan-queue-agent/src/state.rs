//! The state file: this agent's scan agent key, kept across restarts so the agent registers
//! (`requestScanAgentKey`) once. Written `0600` whatever the umask, atomically (a temporary
//! file renamed over the old one).

use crate::secret::Secret;
use serde::Deserialize;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The largest state file read.
const MAX_STATE_BYTES: u64 = 64 * 1024;

/// What the state file holds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// The scan agent key.
    pub scan_agent_key: Secret,
    /// The server the key belongs to (a key is only valid there).
    pub server_url: String,
}

/// The key in the state file for `server_url`: `Ok(None)` when there is no file yet, or it
/// belongs to another server. A state file readable by others is made private again.
pub fn load(path: &Path, server_url: &str) -> Result<Option<Secret>, String> {
    let text = match crate::config::read_bounded(path, MAX_STATE_BYTES) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "cannot read the state file {}: {e}",
                path.display()
            ));
        }
    };
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "the state file was readable by others; made it 0600");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot chmod the state file {}: {e}", path.display()))?;
    }
    // The parser's message is not shown: it quotes the file, which holds the key.
    let state: State = toml::from_str(&text).map_err(|_| {
        format!(
            "the state file {} is damaged (expected scan_agent_key and server_url); delete it to register as a new agent",
            path.display()
        )
    })?;
    if state.server_url != server_url {
        tracing::warn!(
            path = %path.display(),
            was = %state.server_url,
            "the state file holds a key for another server; registering anew"
        );
        return Ok(None);
    }
    Ok(Some(state.scan_agent_key))
}

/// Writes the key for `server_url` to `path` (mode `0600`; the directory is created `0700`
/// when missing).
pub fn save(path: &Path, server_url: &str, key: &Secret) -> Result<(), String> {
    let fail = |what: &str, e: std::io::Error| {
        format!("cannot {what} the state file {}: {e}", path.display())
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| fail("create the directory of", e))?;
    }
    #[derive(serde::Serialize)]
    struct Out<'a> {
        scan_agent_key: &'a str,
        server_url: &'a str,
    }
    let text = toml::to_string(&Out {
        scan_agent_key: key.expose(),
        server_url,
    })
    .map_err(|e| format!("cannot encode the state: {e}"))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| fail("create", e))?;
    // The umask may have taken bits from 0600 (never added any): set it exactly.
    let written = file
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| {
            file.write_all(
                b"# scan-queue-agent state: this agent's scan agent key. Keep private.\n",
            )
        })
        .and_then(|()| file.write_all(text.as_bytes()))
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("write", e));
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_0600_and_loaded_for_the_same_server_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("state.toml");
        assert!(load(&path, "http://a").unwrap().is_none());
        save(&path, "http://a", &Secret::new("KEY123")).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode & 0o077, 0);
        assert_eq!(load(&path, "http://a").unwrap().unwrap().expose(), "KEY123");
        assert!(load(&path, "http://b").unwrap().is_none());
        // Overwrite (atomically) and reload.
        save(&path, "http://b", &Secret::new("KEY456")).unwrap();
        assert_eq!(load(&path, "http://b").unwrap().unwrap().expose(), "KEY456");
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }

    #[test]
    fn shared_file_is_made_private_and_damage_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.toml");
        std::fs::write(&path, "scan_agent_key = \"K\"\nserver_url = \"http://a\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(load(&path, "http://a").unwrap().unwrap().expose(), "K");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::write(&path, "garbage").unwrap();
        let e = load(&path, "http://a").unwrap_err();
        assert!(e.contains("delete it"), "{e}");
        assert!(!e.contains("garbage"), "{e}");
    }
}
