//! Where the store lives and how it is laid out on disk.
//!
//! ```text
//! <root>/layout-version        "1"; written last when the store is created
//! <root>/blobs-v1/sha256/<hex> verified, read-only blobs
//! <root>/ingest-v1/            temp files of ingests in progress
//! <root>/meta-v1/meta.redb     the metadata database
//! <root>/locks-v1/             lock files (meta.lock, gc.lock)
//! ```
//!
//! Every directory name carries its own version so a later format can live next to this
//! one during a migration.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Algorithm, Digest};

/// The layout version this code reads and writes.
pub const LAYOUT_VERSION: u32 = 1;

const VERSION_FILE: &str = "layout-version";
const BLOBS_DIR: &str = "blobs-v1";
const INGEST_DIR: &str = "ingest-v1";
const META_DIR: &str = "meta-v1";
const LOCKS_DIR: &str = "locks-v1";
const VERSION_TMP_PREFIX: &str = ".layout-version.";

/// Errors from resolving, creating or opening a store layout.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot choose a store root: set --root, RBUILD_ROOT, XDG_DATA_HOME or HOME")]
    NoRoot,
    #[error(
        "unsupported store layout version {found:?} in {path} (this rbuild knows {LAYOUT_VERSION})"
    )]
    UnknownVersion { path: PathBuf, found: String },
    #[error("{path} is not an rbuild store and is not empty")]
    NotAStore { path: PathBuf },
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl LayoutError {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LayoutError {
        let path = path.to_path_buf();
        move |source| LayoutError::Io {
            action,
            path,
            source,
        }
    }
}

/// Chooses the store root: the `--root` flag, else `$RBUILD_ROOT`, else `/var/lib/rbuild`
/// for uid 0, else `$XDG_DATA_HOME/rbuild`, else `$HOME/.local/share/rbuild`.
///
/// Pure: the environment and uid are inputs, so every branch is testable. Empty variables
/// count as unset, and a relative `XDG_DATA_HOME` is ignored as the XDG spec requires.
pub fn resolve_root(
    flag: Option<&Path>,
    env: impl Fn(&str) -> Option<OsString>,
    euid: u32,
) -> Result<PathBuf, LayoutError> {
    if let Some(flag) = flag.filter(|p| !p.as_os_str().is_empty()) {
        return Ok(flag.to_path_buf());
    }
    let var = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(root) = var("RBUILD_ROOT") {
        return Ok(root);
    }
    if euid == 0 {
        return Ok(PathBuf::from("/var/lib/rbuild"));
    }
    if let Some(data) = var("XDG_DATA_HOME").filter(|p| p.is_absolute()) {
        return Ok(data.join("rbuild"));
    }
    if let Some(home) = var("HOME") {
        return Ok(home.join(".local/share/rbuild"));
    }
    Err(LayoutError::NoRoot)
}

/// [`resolve_root`] with this process's environment and effective uid.
pub fn root_from_env(flag: Option<&Path>) -> Result<PathBuf, LayoutError> {
    resolve_root(
        flag,
        |name| std::env::var_os(name),
        rustix::process::geteuid().as_raw(),
    )
}

/// Paths inside an opened store root.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Opens the layout at `root`, creating it if the directory is new or empty.
    ///
    /// Creation makes every directory first and writes `layout-version` last through a
    /// rename, so a crash half-way leaves a directory that the next open completes.
    pub fn create_or_open(root: &Path) -> Result<Layout, LayoutError> {
        fs::create_dir_all(root).map_err(LayoutError::io("create", root))?;
        let layout = Layout {
            root: root.to_path_buf(),
        };
        let version_path = layout.version_file();
        // Two passes at most: when another process finishes creating the store between our
        // read of the version file and our look at the directory, read its version instead.
        for _ in 0..2 {
            match fs::read_to_string(&version_path) {
                Ok(found) => {
                    if found.trim() != LAYOUT_VERSION.to_string() {
                        return Err(LayoutError::UnknownVersion {
                            path: version_path,
                            found: found.trim().to_owned(),
                        });
                    }
                    // Recreate directories someone may have removed by hand; cheap when present.
                    layout.create_dirs()?;
                    return Ok(layout);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if layout.check_only_ours()? == VersionSeen::Yes {
                        continue;
                    }
                    layout.create_dirs()?;
                    layout.write_version()?;
                    return Ok(layout);
                }
                Err(e) => return Err(LayoutError::io("read", &version_path)(e)),
            }
        }
        Err(LayoutError::NotAStore {
            path: layout.root.clone(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn version_file(&self) -> PathBuf {
        self.root.join(VERSION_FILE)
    }

    /// `blobs-v1/`, holding one directory per digest algorithm.
    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join(BLOBS_DIR)
    }

    pub fn blobs_algorithm_dir(&self, algorithm: Algorithm) -> PathBuf {
        self.blobs_dir().join(algorithm.as_str())
    }

    /// `blobs-v1/<algorithm>/<hex>`.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_algorithm_dir(digest.algorithm())
            .join(digest.hex())
    }

    pub fn ingest_dir(&self) -> PathBuf {
        self.root.join(INGEST_DIR)
    }

    pub fn meta_dir(&self) -> PathBuf {
        self.root.join(META_DIR)
    }

    pub fn meta_db(&self) -> PathBuf {
        self.meta_dir().join("meta.redb")
    }

    pub fn locks_dir(&self) -> PathBuf {
        self.root.join(LOCKS_DIR)
    }

    /// Serialises access to the metadata database across processes.
    pub fn meta_lock(&self) -> PathBuf {
        self.locks_dir().join("meta.lock")
    }

    /// Held shared by writers that add blobs and exclusively by garbage collection.
    pub fn gc_lock(&self) -> PathBuf {
        self.locks_dir().join("gc.lock")
    }

    fn create_dirs(&self) -> Result<(), LayoutError> {
        for dir in [
            self.blobs_algorithm_dir(Algorithm::Sha256),
            self.ingest_dir(),
            self.meta_dir(),
            self.locks_dir(),
        ] {
            fs::create_dir_all(&dir).map_err(LayoutError::io("create", &dir))?;
        }
        Ok(())
    }

    /// Refuses to turn a directory with foreign files into a store; leftovers of an
    /// interrupted creation are fine.
    /// Refuses to turn a directory with foreign files into a store. The version file may
    /// appear while we look (a concurrent first open): that is reported, not refused.
    fn check_only_ours(&self) -> Result<VersionSeen, LayoutError> {
        let mut seen = VersionSeen::No;
        let entries = fs::read_dir(&self.root).map_err(LayoutError::io("read", &self.root))?;
        for entry in entries {
            let entry = entry.map_err(LayoutError::io("read", &self.root))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name == VERSION_FILE {
                seen = VersionSeen::Yes;
                continue;
            }
            let ours = [BLOBS_DIR, INGEST_DIR, META_DIR, LOCKS_DIR].contains(&name.as_ref())
                || name.starts_with(VERSION_TMP_PREFIX);
            if !ours {
                return Err(LayoutError::NotAStore {
                    path: self.root.clone(),
                });
            }
        }
        Ok(seen)
    }

    fn write_version(&self) -> Result<(), LayoutError> {
        let mut tmp = tempfile::Builder::new()
            .prefix(VERSION_TMP_PREFIX)
            .tempfile_in(&self.root)
            .map_err(LayoutError::io("create a temp file in", &self.root))?;
        let path = self.version_file();
        writeln!(tmp, "{LAYOUT_VERSION}")
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(LayoutError::io("write", &path))?;
        tmp.persist(&path)
            .map_err(|e| LayoutError::io("write", &path)(e.error))?;
        sync_dir(&self.root).map_err(LayoutError::io("sync", &self.root))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VersionSeen {
    Yes,
    No,
}

/// Makes a rename or unlink inside `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: BTreeMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn root_resolution_follows_precedence() {
        let all = env(&[
            ("RBUILD_ROOT", "/env/root"),
            ("XDG_DATA_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ]);
        let flag = Path::new("/flag");
        assert_eq!(resolve_root(Some(flag), &all, 1000).unwrap(), flag);
        assert_eq!(
            resolve_root(None, &all, 1000).unwrap(),
            Path::new("/env/root")
        );
        assert_eq!(resolve_root(None, &all, 0).unwrap(), Path::new("/env/root"));

        let no_rbuild = env(&[("XDG_DATA_HOME", "/xdg"), ("HOME", "/home/u")]);
        assert_eq!(
            resolve_root(None, &no_rbuild, 0).unwrap(),
            Path::new("/var/lib/rbuild")
        );
        assert_eq!(
            resolve_root(None, &no_rbuild, 1000).unwrap(),
            Path::new("/xdg/rbuild")
        );
    }

    #[test]
    fn root_resolution_falls_back_to_home_and_ignores_empty_or_relative() {
        let home_only = env(&[
            ("RBUILD_ROOT", ""),
            ("XDG_DATA_HOME", "relative/dir"),
            ("HOME", "/home/u"),
        ]);
        assert_eq!(
            resolve_root(Some(Path::new("")), &home_only, 1000).unwrap(),
            Path::new("/home/u/.local/share/rbuild")
        );
        assert!(matches!(
            resolve_root(None, env(&[("HOME", "")]), 1000),
            Err(LayoutError::NoRoot)
        ));
    }

    #[test]
    fn creates_layout_and_reopens_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let layout = Layout::create_or_open(&root).unwrap();
        assert_eq!(fs::read_to_string(layout.version_file()).unwrap(), "1\n");
        for d in [
            layout.blobs_algorithm_dir(Algorithm::Sha256),
            layout.ingest_dir(),
            layout.meta_dir(),
            layout.locks_dir(),
        ] {
            assert!(d.is_dir(), "{}", d.display());
        }
        let again = Layout::create_or_open(&root).unwrap();
        let digest = Digest::sha256_of(b"");
        assert_eq!(
            again.blob_path(&digest),
            root.join("blobs-v1/sha256").join(digest.hex())
        );
    }

    #[test]
    fn unknown_version_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("layout-version"), "7\n").unwrap();
        let err = Layout::create_or_open(dir.path()).unwrap_err();
        assert!(matches!(&err, LayoutError::UnknownVersion { found, .. } if found == "7"));
        assert!(err.to_string().contains("unsupported store layout version"));
    }

    #[test]
    fn refuses_foreign_directory_but_completes_interrupted_creation() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        assert!(matches!(
            Layout::create_or_open(dir.path()),
            Err(LayoutError::NotAStore { .. })
        ));

        let partial = tempfile::tempdir().unwrap();
        fs::create_dir_all(partial.path().join("blobs-v1")).unwrap();
        fs::create_dir_all(partial.path().join("ingest-v1")).unwrap();
        let layout = Layout::create_or_open(partial.path()).unwrap();
        assert!(layout.version_file().is_file());
        assert!(layout.locks_dir().is_dir());
    }
}
