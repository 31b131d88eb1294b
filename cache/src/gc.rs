//! Garbage collection: delete blobs nothing references, and temp files that abandoned
//! ingests left behind.
//!
//! [`prune`] is the primitive and trusts its caller for exclusion; [`crate::Store::prune`]
//! runs it under the store's exclusive `gc.lock` with the database's references added to
//! the keep set.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::content::{ContentError, ContentStore, Descriptor, FsContentStore};
use crate::digest::Digest;

/// Temp files untouched for this long belong to a dead ingest: a live one writes often.
pub const DEFAULT_INGEST_MAX_AGE: Duration = Duration::from_secs(30 * 60);

/// Errors from pruning.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error("cannot remove temp file {path}")]
    RemoveTemp {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// How far pruning goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneOptions {
    /// Stop deleting unreferenced blobs once the store holds at most this many bytes;
    /// `None` deletes every unreferenced blob. Referenced blobs are never deleted.
    pub keep_storage: Option<u64>,
    /// Ingest temp files older than this are removed.
    pub ingest_max_age: Duration,
}

impl Default for PruneOptions {
    fn default() -> PruneOptions {
        PruneOptions {
            keep_storage: None,
            ingest_max_age: DEFAULT_INGEST_MAX_AGE,
        }
    }
}

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Deleted blobs, in deletion order.
    pub deleted: Vec<Descriptor>,
    /// Bytes freed by deleted blobs and temp files.
    pub reclaimed: u64,
    /// Temp files removed from `ingest-v1/`.
    pub temps_removed: Vec<PathBuf>,
    /// Bytes of blobs left in the store.
    pub remaining: u64,
}

/// Deletes blobs not in `keep`, oldest first, until `options.keep_storage` is met (or all
/// of them without a limit), then removes stale ingest temp files.
pub fn prune(
    content: &FsContentStore,
    keep: &BTreeSet<Digest>,
    options: &PruneOptions,
) -> Result<PruneReport, GcError> {
    let entries = content.entries()?;
    let mut remaining: u64 = entries.iter().map(|e| e.descriptor.size).sum();
    let mut candidates: Vec<_> = entries
        .into_iter()
        .filter(|e| !keep.contains(&e.descriptor.digest))
        .collect();
    // Oldest first so a size limit keeps what was used most recently; the digest breaks
    // ties so the order never depends on directory order.
    candidates.sort_by(|a, b| {
        (a.modified, &a.descriptor.digest).cmp(&(b.modified, &b.descriptor.digest))
    });

    let mut report = PruneReport::default();
    for entry in candidates {
        if options.keep_storage.is_some_and(|limit| remaining <= limit) {
            break;
        }
        if content.delete(&entry.descriptor.digest)? {
            remaining -= entry.descriptor.size;
            report.reclaimed += entry.descriptor.size;
            report.deleted.push(entry.descriptor);
        }
    }

    let now = SystemTime::now();
    for temp in content.ingest_temps()? {
        // A clock step backwards makes the age unknown; keep the file then.
        let stale = now
            .duration_since(temp.modified)
            .is_ok_and(|age| age >= options.ingest_max_age);
        if !stale {
            continue;
        }
        match fs::remove_file(&temp.path) {
            Ok(()) => {
                report.reclaimed += temp.size;
                report.temps_removed.push(temp.path);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(GcError::RemoveTemp {
                    path: temp.path,
                    source,
                });
            }
        }
    }
    report.remaining = remaining;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Layout;
    use std::fs::File;
    use std::io::Write;

    fn store() -> (FsContentStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create_or_open(dir.path()).unwrap();
        (FsContentStore::new(layout), dir)
    }

    /// Ingests `data` and sets its mtime `age_secs` into the past.
    fn blob(store: &FsContentStore, data: &[u8], age_secs: u64) -> Descriptor {
        let d = store.ingest(None, data).unwrap();
        let path = store.layout().blob_path(&d.digest);
        File::open(path)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(age_secs))
            .unwrap();
        d
    }

    #[test]
    fn deletes_only_unreferenced_blobs() {
        let (store, _dir) = store();
        let kept = blob(&store, b"kept", 0);
        let gone = blob(&store, b"gone", 0);
        let also_gone = blob(&store, b"also gone", 0);
        let keep = [kept.digest.clone()].into();
        let report = prune(&store, &keep, &PruneOptions::default()).unwrap();
        let deleted: BTreeSet<_> = report.deleted.iter().cloned().collect();
        assert_eq!(deleted, [gone.clone(), also_gone.clone()].into());
        assert_eq!(report.reclaimed, gone.size + also_gone.size);
        assert_eq!(report.remaining, kept.size);
        assert_eq!(store.list().unwrap(), vec![kept]);
        // Nothing left to do the second time.
        let again = prune(&store, &keep, &PruneOptions::default()).unwrap();
        assert!(again.deleted.is_empty());
    }

    #[test]
    fn keep_storage_deletes_oldest_unreferenced_first_and_stops() {
        let (store, _dir) = store();
        let referenced = blob(&store, &[0u8; 100], 5000);
        let oldest = blob(&store, &[1u8; 100], 4000);
        let middle = blob(&store, &[2u8; 100], 3000);
        let newest = blob(&store, &[3u8; 100], 2000);
        let keep = [referenced.digest.clone()].into();
        let options = PruneOptions {
            keep_storage: Some(250),
            ..PruneOptions::default()
        };
        let report = prune(&store, &keep, &options).unwrap();
        assert_eq!(report.deleted, vec![oldest, middle]);
        assert_eq!(report.remaining, 200);
        assert_eq!(store.list().unwrap().len(), 2);
        assert!(store.contains(&newest.digest).unwrap());

        // A limit below what referenced blobs need deletes every unreferenced one only.
        let options = PruneOptions {
            keep_storage: Some(0),
            ..PruneOptions::default()
        };
        let report = prune(&store, &keep, &options).unwrap();
        assert_eq!(report.deleted, vec![newest]);
        assert_eq!(store.list().unwrap(), vec![referenced]);
    }

    #[test]
    fn removes_stale_temp_files_but_not_fresh_ones() {
        let (store, _dir) = store();
        let ingest = store.layout().ingest_dir();
        let mut stale = File::create(ingest.join("ingest-dead")).unwrap();
        stale.write_all(b"half").unwrap();
        stale
            .set_modified(SystemTime::now() - Duration::from_secs(3 * 3600))
            .unwrap();
        File::create(ingest.join("ingest-live")).unwrap();
        File::create(ingest.join("unrelated")).unwrap();

        let report = prune(&store, &BTreeSet::new(), &PruneOptions::default()).unwrap();
        assert_eq!(report.temps_removed, vec![ingest.join("ingest-dead")]);
        assert_eq!(report.reclaimed, 4);
        assert!(ingest.join("ingest-live").exists());
        assert!(ingest.join("unrelated").exists());
    }
}
