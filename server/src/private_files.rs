//! Files and directories only the server's own user may read: the data directory (0700), the
//! SQLite database with its `-wal`/`-shm` companions and the generated master key (0600). On
//! other systems than Unix the modes are left to the platform.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::path::Path;

#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

/// Creates `dir` and any missing parents with mode 0700. Existing directories are left as they
/// are: they may be shared ones the operator chose (`/var/lib`), not ours to change.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder.create(dir)
}

/// Creates `path` empty with mode 0600 if it is missing (SQLite accepts an empty file as a new
/// database, and gives its `-wal`/`-shm` files the database file's mode); an existing file is
/// narrowed to its owner.
pub fn ensure_private_file(path: &Path) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    options.mode(0o600);
    let file = options.open(path)?;
    restrict_to_owner(&file)
}

/// Narrows an existing file to its owner (left by an older version); a missing one is fine.
pub fn restrict_if_exists(path: &Path) -> io::Result<()> {
    match OpenOptions::new().read(true).open(path) {
        Ok(file) => restrict_to_owner(&file),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(unix)]
fn restrict_to_owner(file: &std::fs::File) -> io::Result<()> {
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7700))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict_to_owner(_file: &std::fs::File) -> io::Result<()> {
    Ok(())
}
