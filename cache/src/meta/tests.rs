use super::*;

fn meta() -> (Meta, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let meta = Meta::open(&dir.path().join("meta.redb"), &dir.path().join("meta.lock")).unwrap();
    (meta, dir)
}

fn d(s: &str) -> Digest {
    Digest::sha256_of(s.as_bytes())
}

#[test]
fn tags_put_get_list_remove() {
    let (meta, _dir) = meta();
    assert_eq!(meta.get_tag("busybox:latest").unwrap(), None);
    let a = TagRecord {
        digest: d("a"),
        created: 10,
    };
    let b = TagRecord {
        digest: d("b"),
        created: 20,
    };
    assert_eq!(meta.put_tag("busybox:latest", &a).unwrap(), None);
    assert_eq!(meta.put_tag("alpine:3", &b).unwrap(), None);
    assert_eq!(meta.put_tag("busybox:latest", &b).unwrap(), Some(a));
    assert_eq!(meta.get_tag("busybox:latest").unwrap(), Some(b.clone()));
    assert_eq!(
        meta.list_tags().unwrap(),
        vec![
            ("alpine:3".to_owned(), b.clone()),
            ("busybox:latest".to_owned(), b.clone())
        ]
    );
    assert_eq!(meta.remove_tag("alpine:3").unwrap(), Some(b));
    assert_eq!(meta.remove_tag("alpine:3").unwrap(), None);
    assert_eq!(meta.list_tags().unwrap().len(), 1);
}

#[test]
fn data_survives_reopen() {
    let (meta, dir) = meta();
    meta.put_tag("x:1", &TagRecord::now(d("x"))).unwrap();
    drop(meta);
    let again = Meta::open(&dir.path().join("meta.redb"), &dir.path().join("meta.lock")).unwrap();
    assert_eq!(again.get_tag("x:1").unwrap().unwrap().digest, d("x"));
}

#[test]
fn images_own_their_blobs_until_removed() {
    let (meta, _dir) = meta();
    let manifest = d("manifest");
    let record = ImageRecord {
        config: d("config"),
        size: 42,
        created: 1,
    };
    let layers: BTreeSet<_> = [d("l1"), d("l2")].into();
    meta.put_image(&manifest, &record, &layers).unwrap();
    assert_eq!(meta.get_image(&manifest).unwrap(), Some(record.clone()));
    assert_eq!(
        meta.list_images().unwrap(),
        vec![(manifest.clone(), record.clone())]
    );
    let want: BTreeSet<_> = [d("manifest"), d("config"), d("l1"), d("l2")].into();
    assert_eq!(meta.referenced(0).unwrap(), want);
    assert_eq!(
        meta.read(|tx| tx.refs(&RefOwner::Image(manifest.clone())))
            .unwrap(),
        want
    );
    assert_eq!(meta.remove_image(&manifest).unwrap(), Some(record));
    assert!(meta.referenced(0).unwrap().is_empty());
    assert!(meta.list_images().unwrap().is_empty());
}

#[test]
fn leases_protect_blobs_until_deleted_or_expired() {
    let (meta, _dir) = meta();
    let blobs: BTreeSet<_> = [d("x")].into();
    let missing = meta.write(|tx| tx.add_refs(&RefOwner::Lease("nope".into()), &blobs));
    assert!(matches!(missing, Err(MetaError::LeaseNotFound(id)) if id == "nope"));

    meta.create_lease("build-1", Some(100)).unwrap();
    meta.create_lease("pin", None).unwrap();
    meta.write(|tx| {
        tx.add_refs(&RefOwner::Lease("build-1".into()), &blobs)?;
        tx.add_refs(&RefOwner::Lease("pin".into()), &[d("y")].into())
    })
    .unwrap();
    assert_eq!(meta.referenced(99).unwrap(), [d("x"), d("y")].into());
    assert_eq!(meta.referenced(100).unwrap(), [d("y")].into());

    let expired = meta.write(|tx| tx.expire_leases(100)).unwrap();
    assert_eq!(expired, vec!["build-1".to_owned()]);
    assert_eq!(meta.read(|tx| tx.get_lease("build-1")).unwrap(), None);
    assert!(meta.delete_lease("pin").unwrap());
    assert!(!meta.delete_lease("pin").unwrap());
    assert!(meta.referenced(0).unwrap().is_empty());
}

#[test]
fn cache_index_is_a_byte_map_with_prefix_scan() {
    let (meta, _dir) = meta();
    meta.write(|tx| {
        tx.cache_put(b"k/1", b"one")?;
        tx.cache_put(b"k/2", b"two")?;
        tx.cache_put(b"l/1", b"other")
    })
    .unwrap();
    assert_eq!(meta.cache_get(b"k/2").unwrap(), Some(b"two".to_vec()));
    let scanned = meta.read(|tx| tx.cache_scan(b"k/")).unwrap();
    assert_eq!(
        scanned,
        vec![
            (b"k/1".to_vec(), b"one".to_vec()),
            (b"k/2".to_vec(), b"two".to_vec())
        ]
    );
    assert!(meta.cache_remove(b"k/1").unwrap());
    assert!(!meta.cache_remove(b"k/1").unwrap());
    assert_eq!(meta.cache_get(b"k/1").unwrap(), None);
}

#[test]
fn failed_write_closure_rolls_back() {
    let (meta, _dir) = meta();
    let result: Result<(), MetaError> = meta.write(|tx| {
        tx.put_tag("a:1", &TagRecord::now(d("a")))?;
        Err(MetaError::LeaseNotFound("abort".into()))
    });
    assert!(result.is_err());
    assert_eq!(meta.get_tag("a:1").unwrap(), None);
}

#[test]
fn threads_adding_tags_lose_none() {
    let (meta, _dir) = meta();
    std::thread::scope(|s| {
        for t in 0..4 {
            let meta = &meta;
            s.spawn(move || {
                for i in 0..10 {
                    meta.put_tag(&format!("t{t}:{i}"), &TagRecord::now(d("x")))
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(meta.list_tags().unwrap().len(), 40);
}

#[test]
fn garbage_database_file_is_an_open_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meta.redb");
    std::fs::write(&db, vec![7u8; 8192]).unwrap();
    let err = Meta::open(&db, &dir.path().join("meta.lock")).unwrap_err();
    assert!(matches!(err, MetaError::Open { .. }), "{err:?}");
}

#[derive(Debug)]
enum CallerError {
    Meta(MetaError),
    Refused,
}

impl From<MetaError> for CallerError {
    fn from(e: MetaError) -> CallerError {
        CallerError::Meta(e)
    }
}

#[test]
fn write_accepts_caller_error_types_and_rolls_back_on_them() {
    let (meta, _dir) = meta();
    let result = meta.write(|tx| {
        tx.put_tag("a:1", &TagRecord::now(d("a")))?;
        Err::<(), _>(CallerError::Refused)
    });
    assert!(matches!(result, Err(CallerError::Refused)));
    let read: Result<_, CallerError> = meta.read(|tx| Ok(tx.get_tag("a:1")?));
    assert!(read.unwrap().is_none());
    let failed: Result<(), CallerError> = meta.write(|tx| {
        tx.add_refs(&RefOwner::Lease("none".into()), &BTreeSet::new())?;
        Ok(())
    });
    assert!(matches!(
        failed,
        Err(CallerError::Meta(MetaError::LeaseNotFound(_)))
    ));
}
