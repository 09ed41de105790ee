//! File-system helpers for the data directory: everything is created private (files `0600`,
//! directories `0700`, whatever the umask), written atomically where it must be whole, and
//! synced where an acknowledged change depends on it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Owner read and write only.
#[cfg(unix)]
const FILE_MODE: u32 = 0o600;
/// Owner only.
#[cfg(unix)]
const DIR_MODE: u32 = 0o700;

/// Creates `dir` (and its parents) if needed and makes it private. The data directory holds
/// keys, so its permissions are set explicitly: the umask could leave it readable.
pub(crate) fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// Opens the data directory itself: created private if it does not exist. One that exists is
/// the operator's and keeps its mode (it could be shared, `/tmp` say), with a warning when
/// others may read it; everything the server creates inside is private anyway.
pub(crate) fn data_root(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        return private_dir(dir);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(dir = %dir.display(), mode = format!("{:o}", mode & 0o777), "the data directory may be read by others; its files are private, but consider chmod 700");
        }
    }
    Ok(())
}

/// The options for a private file (`0600` at creation; [`make_private`] makes sure).
pub(crate) fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    options
}

/// Sets `0600` on an open file: a umask can only take bits away from the mode it was created
/// with, so this is what makes the mode exact.
pub(crate) fn make_private(file: &File) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

/// Creates (or truncates) a private file.
pub(crate) fn create_private(path: &Path) -> std::io::Result<File> {
    let file = private_options().truncate(true).open(path)?;
    make_private(&file)?;
    Ok(file)
}

/// Syncs a directory, so that files created, renamed or removed in it stay so.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes `bytes` to `path` atomically: a private `.tmp` file, synced, renamed, the directory
/// synced (the syncs only when `sync`).
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = create_private(&tmp)?;
    file.write_all(bytes)?;
    if sync {
        file.sync_all()?;
    }
    drop(file);
    std::fs::rename(&tmp, path)?;
    if sync && let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// The regular files directly in `dir`.
pub(crate) fn files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    Ok(files)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_private() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        private_dir(&sub).unwrap();
        assert_eq!(mode(&sub), 0o700);
        let file = sub.join("f");
        write_atomically(&file, b"x", true).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(std::fs::read(&file).unwrap(), b"x");
        assert_eq!(files_in(&sub).unwrap(), vec![file]);
    }

    #[test]
    fn an_existing_data_directory_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        data_root(&shared).unwrap();
        assert_eq!(
            mode(&shared),
            0o755,
            "an operator's directory is not chmodded"
        );
        let fresh = dir.path().join("fresh");
        data_root(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
    }
}
