//! Advisory file locks shared between processes using one store.
//!
//! Built on [`std::fs::File::lock`] (`flock` on Linux). Each lock is taken on its own open
//! file description, so two threads of one process exclude each other just like two
//! processes do. The lock is released when the guard is dropped, or by the kernel when a
//! process dies, so a killed build never leaves a store locked.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// Errors from taking a lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot open lock file {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Whether a lock excludes everyone or only exclusive holders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct LockGuard {
    // The lock lives as long as this open file description.
    _file: File,
    path: PathBuf,
    mode: LockMode,
}

impl LockGuard {
    /// Blocks until the lock at `path` is held in `mode`, creating the file if needed.
    pub fn acquire(path: &Path, mode: LockMode) -> Result<LockGuard, LockError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|source| LockError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let locked = match mode {
            LockMode::Shared => file.lock_shared(),
            LockMode::Exclusive => file.lock(),
        };
        locked.map_err(|source| LockError::Lock {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(LockGuard {
            _file: file,
            path: path.to_path_buf(),
            mode,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn mode(&self) -> LockMode {
        self.mode
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    #[test]
    fn exclusive_lock_excludes_other_descriptions_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let guard = LockGuard::acquire(&path, LockMode::Exclusive).unwrap();
        assert_eq!(guard.mode(), LockMode::Exclusive);
        let other = File::open(&path).unwrap();
        assert!(other.try_lock_shared().is_err());
        drop(guard);
        other.try_lock().unwrap();
    }

    #[test]
    fn shared_locks_coexist_and_block_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let a = LockGuard::acquire(&path, LockMode::Shared).unwrap();
        let b = LockGuard::acquire(&path, LockMode::Shared).unwrap();
        let other = File::open(&path).unwrap();
        assert!(other.try_lock().is_err());
        drop((a, b));
        other.try_lock().unwrap();
    }

    #[test]
    fn missing_directory_is_an_open_error() {
        let dir = tempfile::tempdir().unwrap();
        let err =
            LockGuard::acquire(&dir.path().join("no/such.lock"), LockMode::Shared).unwrap_err();
        assert!(matches!(err, LockError::Open { .. }));
    }
}
