//! One behavioural suite that every [`ContentStore`] backend must pass.

use std::collections::BTreeSet;
use std::io::{Read, Write};

use super::{BlobWriter, ContentError, ContentStore, Descriptor};
use crate::digest::Digest;

fn read_all<S: ContentStore>(store: &S, digest: &Digest) -> Vec<u8> {
    let mut out = Vec::new();
    store.open(digest).unwrap().read_to_end(&mut out).unwrap();
    out
}

/// Deterministic, non-repeating-looking test data of a given size.
fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

pub(super) fn roundtrip<S: ContentStore>(store: &S) {
    let big = data(300_000, 1);
    for blob in [&b""[..], b"hello", &big] {
        let want = Descriptor::of(blob);
        assert!(!store.contains(&want.digest).unwrap());
        let got = store.ingest(None, blob).unwrap();
        assert_eq!(got, want);
        assert!(store.contains(&want.digest).unwrap());
        assert_eq!(store.info(&want.digest).unwrap(), want);
        assert_eq!(read_all(store, &want.digest), blob);
        assert_eq!(store.verify(&want.digest).unwrap(), want);
    }
    // Expected descriptor that matches is accepted.
    let small = data(1000, 2);
    assert_eq!(
        store
            .ingest(Some(&Descriptor::of(&small)), &small[..])
            .unwrap(),
        Descriptor::of(&small)
    );
}

pub(super) fn writer_streams_in_chunks<S: ContentStore>(store: &S) {
    let blob = data(200_000, 3);
    let mut w = store.writer().unwrap();
    for chunk in blob.chunks(7_001) {
        w.write_all(chunk).unwrap();
    }
    assert_eq!(w.written(), blob.len() as u64);
    let d = w.commit(Some(&Descriptor::of(&blob))).unwrap();
    assert_eq!(read_all(store, &d.digest), blob);
}

pub(super) fn caller_hashed_writer_stores_and_checks_size<S: ContentStore>(store: &S) {
    let blob = data(150_000, 4);
    let mut w = store.writer_hashed_by_caller().unwrap();
    for chunk in blob.chunks(9_999) {
        w.write_all(chunk).unwrap();
    }
    assert_eq!(w.written(), blob.len() as u64);
    let d = w.commit(Some(&Descriptor::of(&blob))).unwrap();
    assert_eq!(d, Descriptor::of(&blob));
    assert_eq!(read_all(store, &d.digest), blob);
    assert_eq!(store.verify(&d.digest).unwrap(), d);
    // A wrong size is refused and leaves nothing.
    let other = data(5_000, 5);
    let mut w = store.writer_hashed_by_caller().unwrap();
    w.write_all(&other[..4_000]).unwrap();
    let claimed = Descriptor::of(&other);
    assert!(matches!(
        w.commit(Some(&claimed)),
        Err(ContentError::SizeMismatch { .. })
    ));
    assert!(!store.contains(&claimed.digest).unwrap());
}

pub(super) fn digest_mismatch_is_rejected_and_invisible<S: ContentStore>(store: &S) {
    let claimed = Descriptor::new(Digest::sha256_of(b"other!"), 6);
    let err = store.ingest(Some(&claimed), &b"actual"[..]).unwrap_err();
    match err {
        ContentError::DigestMismatch { expected, actual } => {
            assert_eq!(expected, claimed.digest);
            assert_eq!(actual, Digest::sha256_of(b"actual"));
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(!store.contains(&claimed.digest).unwrap());
    assert!(!store.contains(&Digest::sha256_of(b"actual")).unwrap());
    assert!(store.list().unwrap().is_empty());

    let mut w = store.writer().unwrap();
    w.write_all(b"actual").unwrap();
    assert!(matches!(
        w.commit(Some(&claimed)),
        Err(ContentError::DigestMismatch { .. })
    ));
    assert!(store.list().unwrap().is_empty());
}

pub(super) fn size_mismatch_is_rejected_and_invisible<S: ContentStore>(store: &S) {
    let blob = b"twelve bytes";
    let digest = Digest::sha256_of(blob);
    let short = Descriptor::new(digest.clone(), 5);
    assert!(matches!(
        store.ingest(Some(&short), &blob[..]),
        Err(ContentError::TooLarge { expected: 5, .. })
    ));
    let long = Descriptor::new(digest.clone(), 20);
    assert!(matches!(
        store.ingest(Some(&long), &blob[..]),
        Err(ContentError::SizeMismatch {
            expected: 20,
            actual: 12,
            ..
        })
    ));
    let mut w = store.writer().unwrap();
    w.write_all(blob).unwrap();
    assert!(matches!(
        w.commit(Some(&short)),
        Err(ContentError::SizeMismatch { actual: 12, .. })
    ));
    assert!(!store.contains(&digest).unwrap());
    assert!(store.list().unwrap().is_empty());
}

pub(super) fn reingest_is_idempotent<S: ContentStore>(store: &S) {
    let blob = data(5000, 4);
    let want = Descriptor::of(&blob);
    let first = store.ingest(None, &blob[..]).unwrap();
    let second = store.ingest(None, &blob[..]).unwrap();
    // Known blob with an expected descriptor: the reader is not consulted at all.
    let third = store.ingest(Some(&want), FailingReader).unwrap();
    assert_eq!((&first, &second, &third), (&want, &want, &want));
    assert_eq!(store.list().unwrap(), vec![want.clone()]);
    assert_eq!(store.total_size().unwrap(), blob.len() as u64);
    assert_eq!(read_all(store, &want.digest), blob);
}

pub(super) fn concurrent_ingest_of_one_blob<S: ContentStore>(store: &S) {
    let blob = data(500_000, 5);
    let want = Descriptor::of(&blob);
    let results: Vec<Descriptor> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let blob = &blob;
                let want = &want;
                scope.spawn(move || {
                    let expected = (i % 2 == 0).then_some(want);
                    let mut w = store.writer().unwrap();
                    for chunk in blob.chunks(4096 + i) {
                        w.write_all(chunk).unwrap();
                    }
                    w.commit(expected).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.iter().all(|d| *d == want));
    assert_eq!(store.list().unwrap(), vec![want.clone()]);
    assert_eq!(read_all(store, &want.digest), blob);
}

pub(super) fn delete_removes_only_that_blob<S: ContentStore>(store: &S) {
    let a = store.ingest(None, &b"a"[..]).unwrap();
    let b = store.ingest(None, &b"b"[..]).unwrap();
    assert!(store.delete(&a.digest).unwrap());
    assert!(!store.delete(&a.digest).unwrap());
    assert!(!store.contains(&a.digest).unwrap());
    assert!(store.open(&a.digest).err().unwrap().is_not_found());
    assert_eq!(store.list().unwrap(), vec![b.clone()]);
    // A deleted blob can be ingested again.
    assert_eq!(store.ingest(None, &b"a"[..]).unwrap(), a);
}

pub(super) fn list_is_sorted_and_total_size_adds_up<S: ContentStore>(store: &S) {
    assert!(store.list().unwrap().is_empty());
    assert_eq!(store.total_size().unwrap(), 0);
    let mut want = BTreeSet::new();
    for i in 0..20u8 {
        let blob = data(100 + usize::from(i) * 10, i);
        want.insert(store.ingest(None, &blob[..]).unwrap());
    }
    let listed = store.list().unwrap();
    assert_eq!(listed, want.iter().cloned().collect::<Vec<_>>());
    let total: u64 = want.iter().map(|d| d.size).sum();
    assert_eq!(store.total_size().unwrap(), total);
}

pub(super) fn missing_blob_is_not_found<S: ContentStore>(store: &S) {
    let missing = Digest::sha256_of(b"never stored");
    for err in [
        store.open(&missing).err().unwrap(),
        store.info(&missing).unwrap_err(),
        store.verify(&missing).unwrap_err(),
    ] {
        assert!(matches!(&err, ContentError::NotFound(d) if *d == missing));
        assert_eq!(err.to_string(), format!("blob {missing} not found"));
    }
    assert!(!store.contains(&missing).unwrap());
    assert!(!store.delete(&missing).unwrap());
}

pub(super) fn read_error_aborts_ingest<S: ContentStore>(store: &S) {
    assert!(matches!(
        store.ingest(None, FailingReader),
        Err(ContentError::Read(_))
    ));
    assert!(store.list().unwrap().is_empty());
}

pub(super) fn dropped_writer_leaves_nothing<S: ContentStore>(store: &S) {
    let blob = data(100_000, 6);
    let mut w = store.writer().unwrap();
    w.write_all(&blob[..50_000]).unwrap();
    drop(w);
    assert!(!store.contains(&Digest::sha256_of(&blob)).unwrap());
    assert!(!store.contains(&Digest::sha256_of(&blob[..50_000])).unwrap());
    assert!(store.list().unwrap().is_empty());
}

/// A reader that fails, to prove a path never reads or that read errors propagate.
struct FailingReader;

impl Read for FailingReader {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("reader must not be used"))
    }
}

/// Instantiates every conformance check as a `#[test]` for one backend. `$make` yields
/// `(store, guard)`; the guard keeps whatever backs the store alive for the test.
macro_rules! conformance_suite {
    ($module:ident, $make:expr) => {
        mod $module {
            conformance_suite!(@tests $make;
                roundtrip,
                writer_streams_in_chunks,
                caller_hashed_writer_stores_and_checks_size,
                digest_mismatch_is_rejected_and_invisible,
                size_mismatch_is_rejected_and_invisible,
                reingest_is_idempotent,
                concurrent_ingest_of_one_blob,
                delete_removes_only_that_blob,
                list_is_sorted_and_total_size_adds_up,
                missing_blob_is_not_found,
                read_error_aborts_ingest,
                dropped_writer_leaves_nothing
            );
        }
    };
    (@tests $make:expr; $($check:ident),+) => {
        $(
            #[test]
            fn $check() {
                let (store, _guard) = $make;
                super::$check(&store);
            }
        )+
    };
}

conformance_suite!(fs_backend, {
    let dir = tempfile::tempdir().unwrap();
    let layout = crate::layout::Layout::create_or_open(dir.path()).unwrap();
    (super::super::FsContentStore::new(layout), dir)
});

conformance_suite!(mem_backend, (super::super::MemContentStore::new(), ()));
