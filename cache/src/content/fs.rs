//! The on-disk content store under `blobs-v1/` and `ingest-v1/`.

use std::fs::{self, File, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::SystemTime;

use tempfile::NamedTempFile;

use super::{BlobWriter, ContentError, ContentStore, Descriptor, verify};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::layout::{Layout, sync_dir};

/// Temp files of ingests in progress start with this, so prune knows what it may remove.
pub(crate) const INGEST_PREFIX: &str = "ingest-";

// Large enough that io::copy's 8 KiB chunks become few, big writes.
const WRITE_BUFFER: usize = 256 * 1024;

/// Blobs as read-only files at `blobs-v1/<algorithm>/<hex>`.
///
/// An ingest writes to a fresh temp file in `ingest-v1/` while hashing, fsyncs it, and
/// renames it into place, then fsyncs the directory. A killed process leaves at most a temp
/// file, which is never visible as a blob and is removed by prune.
#[derive(Debug, Clone)]
pub struct FsContentStore {
    layout: Layout,
}

impl FsContentStore {
    pub fn new(layout: Layout) -> FsContentStore {
        FsContentStore { layout }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Every stored blob with its modification time, sorted by digest.
    pub fn entries(&self) -> Result<Vec<BlobEntry>, ContentError> {
        let dir = self.layout.blobs_algorithm_dir(Algorithm::Sha256);
        let read = fs::read_dir(&dir).map_err(ContentError::io("read", &dir))?;
        let mut out = Vec::new();
        for entry in read {
            let entry = entry.map_err(ContentError::io("read", &dir))?;
            let name = entry.file_name();
            // Anything that is not a well-formed digest name is not a blob of ours.
            let Some(digest) = name
                .to_str()
                .and_then(|hex| Digest::parse(&format!("sha256:{hex}")).ok())
            else {
                continue;
            };
            let meta = match entry.metadata() {
                Ok(m) if m.is_file() => m,
                Ok(_) => continue,
                // Deleted between readdir and stat by a concurrent prune.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ContentError::io("stat", entry.path())(e)),
            };
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            out.push(BlobEntry {
                descriptor: Descriptor::new(digest, meta.len()),
                modified: mtime,
            });
        }
        out.sort_by(|a, b| a.descriptor.cmp(&b.descriptor));
        Ok(out)
    }

    /// Temp files of ingests in progress (or abandoned by a killed process).
    pub fn ingest_temps(&self) -> Result<Vec<IngestTemp>, ContentError> {
        let dir = self.layout.ingest_dir();
        let read = fs::read_dir(&dir).map_err(ContentError::io("read", &dir))?;
        let mut out = Vec::new();
        for entry in read {
            let entry = entry.map_err(ContentError::io("read", &dir))?;
            if !entry
                .file_name()
                .to_string_lossy()
                .starts_with(INGEST_PREFIX)
            {
                continue;
            }
            match entry.metadata() {
                Ok(m) if m.is_file() => out.push(IngestTemp {
                    path: entry.path(),
                    modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    size: m.len(),
                }),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(ContentError::io("stat", entry.path())(e)),
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}

/// A stored blob and when it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEntry {
    pub descriptor: Descriptor,
    pub modified: SystemTime,
}

/// A temp file in `ingest-v1/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestTemp {
    pub path: PathBuf,
    pub modified: SystemTime,
    pub size: u64,
}

impl ContentStore for FsContentStore {
    type Reader = File;
    type Writer = FsBlobWriter;

    fn info(&self, digest: &Digest) -> Result<Descriptor, ContentError> {
        let path = self.layout.blob_path(digest);
        match fs::metadata(&path) {
            Ok(m) => Ok(Descriptor::new(digest.clone(), m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(ContentError::NotFound(digest.clone()))
            }
            Err(e) => Err(ContentError::io("stat", path)(e)),
        }
    }

    fn open(&self, digest: &Digest) -> Result<File, ContentError> {
        let path = self.layout.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ContentError::NotFound(digest.clone()),
            _ => ContentError::io("open", path)(e),
        })
    }

    fn writer(&self) -> Result<FsBlobWriter, ContentError> {
        let dir = self.layout.ingest_dir();
        let temp = tempfile::Builder::new()
            .prefix(INGEST_PREFIX)
            .tempfile_in(&dir)
            .map_err(ContentError::io("create a temp file in", &dir))?;
        Ok(FsBlobWriter {
            file: BufWriter::with_capacity(WRITE_BUFFER, temp),
            hasher: Some(Hasher::new()),
            written: 0,
            layout: self.layout.clone(),
        })
    }

    fn writer_hashed_by_caller(&self) -> Result<FsBlobWriter, ContentError> {
        let mut w = self.writer()?;
        w.hasher = None;
        Ok(w)
    }

    fn delete(&self, digest: &Digest) -> Result<bool, ContentError> {
        let path = self.layout.blob_path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(ContentError::io("remove", path)(e)),
        }
    }

    fn list(&self) -> Result<Vec<Descriptor>, ContentError> {
        Ok(self.entries()?.into_iter().map(|e| e.descriptor).collect())
    }
}

/// A streaming ingest into a temp file; see [`FsContentStore`].
#[derive(Debug)]
pub struct FsBlobWriter {
    // NamedTempFile deletes the file when dropped, which is how an abandoned ingest
    // cleans up after itself.
    file: BufWriter<NamedTempFile>,
    /// `None` when the caller hashes ([`ContentStore::writer_hashed_by_caller`]).
    hasher: Option<Hasher>,
    written: u64,
    layout: Layout,
}

impl Write for FsBlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter for FsBlobWriter {
    fn written(&self) -> u64 {
        self.written
    }

    fn commit_new(self, expected: Option<&Descriptor>) -> Result<(Descriptor, bool), ContentError> {
        let FsBlobWriter {
            file,
            hasher,
            written,
            layout,
        } = self;
        let temp = file
            .into_inner()
            .map_err(|e| ContentError::Write(e.into_error()))?;
        let digest = match (hasher, expected) {
            (Some(h), _) => h.finish(),
            // The caller saw every byte written and hashed them: its digest names the
            // blob; the size is still checked below.
            (None, Some(want)) => want.digest.clone(),
            (None, None) => return Err(ContentError::NoCallerDigest),
        };
        let actual = Descriptor::new(digest, written);
        verify(&actual, expected)?;

        let target = layout.blob_path(&actual.digest);
        // Idempotent: an intact blob is already there, so keep it and drop the temp file.
        if let Ok(m) = fs::metadata(&target)
            && m.len() == actual.size
        {
            return Ok((actual, false));
        }
        let temp_path = temp.path().to_path_buf();
        temp.as_file()
            .set_permissions(Permissions::from_mode(0o444))
            .and_then(|()| temp.as_file().sync_all())
            .map_err(ContentError::io("sync", &temp_path))?;
        // rename(2) is atomic: readers see no blob or the whole blob, and two writers of the
        // same content simply replace one complete file with another.
        temp.persist(&target)
            .map_err(|e| ContentError::io("rename into", &target)(e.error))?;
        let dir = layout.blobs_algorithm_dir(actual.digest.algorithm());
        sync_dir(&dir).map_err(ContentError::io("sync", &dir))?;
        Ok((actual, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn store() -> (FsContentStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create_or_open(dir.path()).unwrap();
        (FsContentStore::new(layout), dir)
    }

    fn ingest_dir_entries(store: &FsContentStore) -> usize {
        fs::read_dir(store.layout().ingest_dir()).unwrap().count()
    }

    #[test]
    fn a_caller_hashed_blob_needs_the_callers_digest() {
        let (store, _dir) = store();
        let mut w = store.writer_hashed_by_caller().unwrap();
        w.write_all(b"data").unwrap();
        assert!(matches!(w.commit(None), Err(ContentError::NoCallerDigest)));
        assert_eq!(ingest_dir_entries(&store), 0);
    }

    #[test]
    fn blob_lands_at_layout_path_read_only() {
        let (store, _dir) = store();
        let d = store.ingest(None, &b"layer"[..]).unwrap();
        let path = store.layout().blob_path(&d.digest);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o444);
        assert_eq!(fs::read(path).unwrap(), b"layer");
        assert_eq!(ingest_dir_entries(&store), 0);
    }

    #[test]
    fn failed_and_abandoned_ingests_leave_no_temp_files() {
        let (store, _dir) = store();
        let wrong = Descriptor::of(b"other");
        assert!(store.ingest(Some(&wrong), &b"mine!"[..]).is_err());
        let mut w = store.writer().unwrap();
        w.write_all(b"half a blo").unwrap();
        assert_eq!(ingest_dir_entries(&store), 1);
        drop(w);
        assert_eq!(ingest_dir_entries(&store), 0);
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn truncated_blob_on_disk_is_replaced_by_a_new_ingest() {
        let (store, _dir) = store();
        let d = store.ingest(None, &b"full content"[..]).unwrap();
        let path = store.layout().blob_path(&d.digest);
        fs::remove_file(&path).unwrap();
        fs::write(&path, b"full").unwrap();
        let again = store.ingest(None, &b"full content"[..]).unwrap();
        assert_eq!(again, d);
        let mut got = Vec::new();
        store
            .open(&d.digest)
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got, b"full content");
    }

    #[test]
    fn verify_detects_a_blob_changed_on_disk() {
        let (store, _dir) = store();
        let d = store.ingest(None, &b"original"[..]).unwrap();
        assert_eq!(store.verify(&d.digest).unwrap(), d);
        let path = store.layout().blob_path(&d.digest);
        fs::remove_file(&path).unwrap();
        fs::write(&path, b"tampered").unwrap();
        assert!(matches!(
            store.verify(&d.digest),
            Err(ContentError::DigestMismatch { .. })
        ));
        fs::write(&path, b"short").unwrap();
        assert!(
            matches!(
                store.verify(&d.digest),
                Err(ContentError::SizeMismatch { .. })
            ) || matches!(
                store.verify(&d.digest),
                Err(ContentError::DigestMismatch { .. })
            )
        );
    }

    #[test]
    fn foreign_files_in_blob_dir_are_not_listed() {
        let (store, _dir) = store();
        let dir = store.layout().blobs_algorithm_dir(Algorithm::Sha256);
        fs::write(dir.join("README"), b"x").unwrap();
        fs::write(dir.join("a".repeat(64).to_uppercase()), b"x").unwrap();
        store.ingest(None, &b"real"[..]).unwrap();
        assert_eq!(store.list().unwrap(), vec![Descriptor::of(b"real")]);
    }
}
