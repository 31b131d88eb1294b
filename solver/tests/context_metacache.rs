//! The context metadata cache: a no-op rebuild reads no file contents, and no metadata
//! trick (mtime restored, same size, new inode, fresh files within the timestamp tick)
//! ever yields a stale hash.

use std::fs::{self, File, FileTimes};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use rbuild_solver::context::metacache::CACHE_FILE;
use rbuild_solver::context::{CacheError, Checksum, Matcher, MetaCache, checksum_selection};

/// Racy window for these tests: above the kernel's timestamp tick (1–10 ms), so the
/// guarantee holds, but short enough that tests need not wait long.
const WINDOW: Duration = Duration::from_millis(30);

fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("dir/sub")).unwrap();
    fs::write(root.join("a.txt"), "hello").unwrap();
    fs::write(root.join("dir/b.txt"), "bbbb").unwrap();
    fs::write(root.join("dir/sub/c.txt"), "ccc").unwrap();
}

/// Lets every file's ctime fall outside the racy window.
fn settle() {
    std::thread::sleep(WINDOW * 2);
}

fn run(root: &Path, cache: Option<&MetaCache>) -> Checksum {
    checksum_selection(root, &["."], &Matcher::default(), cache).unwrap()
}

fn edit_keep_size_and_mtime(path: &Path, content: &str) {
    let meta = fs::metadata(path).unwrap();
    assert_eq!(meta.len() as usize, content.len());
    fs::write(path, content).unwrap();
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(
            FileTimes::new()
                .set_modified(meta.modified().unwrap())
                .set_accessed(meta.accessed().unwrap()),
        )
        .unwrap();
    assert_eq!(
        fs::metadata(path).unwrap().modified().unwrap(),
        meta.modified().unwrap()
    );
}

#[test]
fn noop_rebuild_reads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path());
    settle();
    let cache = MetaCache::new().with_racy_window(WINDOW);
    let first = run(dir.path(), Some(&cache));
    assert_eq!(first.stats.files_hashed, 3);
    assert_eq!(cache.len(), 3);
    let second = run(dir.path(), Some(&cache));
    assert_eq!(second.digest, first.digest);
    assert_eq!(second.stats.files_hashed, 0);
    assert_eq!(second.stats.bytes_read, 0);
    assert_eq!(second.stats.cache_hits, 3);
    // Cumulative counters on the cache.
    let total = cache.stats();
    assert_eq!(total.files_hashed, 3);
    assert_eq!(total.bytes_read, 12);
    assert_eq!(total.cache_hits, 3);
}

#[test]
fn edit_with_mtime_restored_is_rehashed() {
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path());
    settle();
    let cache = MetaCache::new().with_racy_window(WINDOW);
    let before = run(dir.path(), Some(&cache));
    // Size and mtime as before: only ctime tells.
    edit_keep_size_and_mtime(&dir.path().join("dir/b.txt"), "BBBB");
    let after = run(dir.path(), Some(&cache));
    assert_eq!(after.stats.files_hashed, 1);
    assert_eq!(after.stats.cache_hits, 2);
    assert_ne!(after.digest, before.digest);
    assert_eq!(after.digest, run(dir.path(), None).digest);
}

#[test]
fn edit_right_after_hashing_is_never_missed() {
    // Edits landing in the same timestamp tick as the hashed version (equal ctime at
    // coarse granularity) must still be seen; the racy window keeps such hashes out of
    // the cache. A tight loop, so that on kernels with coarse ctime some edits do fall
    // within one tick (Linux 6.13+ gives a fine-grained ctime to the first change after
    // a stat, where the race cannot happen but the loop still checks the ctime key).
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path());
    let cache = MetaCache::new().with_racy_window(WINDOW);
    let p = dir.path().join("dir/b.txt");
    let sum = |cache: Option<&MetaCache>| {
        checksum_selection(dir.path(), &["dir/b.txt"], &Matcher::default(), cache)
            .unwrap()
            .digest
    };
    sum(Some(&cache));
    for i in 0..100u32 {
        let v1 = format!("{:08}", 2 * i);
        let v2 = format!("{:08}", 2 * i + 1);
        fs::write(&p, &v1).unwrap();
        sum(Some(&cache));
        edit_keep_size_and_mtime(&p, &v2);
        assert_eq!(sum(Some(&cache)), sum(None), "stale hash at iteration {i}");
    }
}

#[test]
fn racy_files_are_not_remembered() {
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path());
    // Everything changed within the last hour is racy with this window.
    let cache = MetaCache::new().with_racy_window(Duration::from_secs(3600));
    assert_eq!(run(dir.path(), Some(&cache)).stats.files_hashed, 3);
    assert!(cache.is_empty());
    let again = run(dir.path(), Some(&cache));
    assert_eq!(again.stats.files_hashed, 3);
    assert_eq!(again.stats.cache_hits, 0);
}

#[test]
fn mode_and_inode_are_part_of_the_key() {
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path());
    settle();
    let cache = MetaCache::new().with_racy_window(WINDOW);
    run(dir.path(), Some(&cache));
    fs::set_permissions(dir.path().join("a.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    // Same content, size and mtime under a new inode.
    let c = dir.path().join("dir/sub/c.txt");
    let mtime = fs::metadata(&c).unwrap().modified().unwrap();
    let tmp = dir.path().join("dir/sub/.tmp");
    fs::write(&tmp, "ccc").unwrap();
    File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_times(FileTimes::new().set_modified(mtime))
        .unwrap();
    fs::rename(&tmp, &c).unwrap();
    let after = run(dir.path(), Some(&cache));
    assert_eq!(after.stats.files_hashed, 2);
    assert_eq!(after.stats.cache_hits, 1);
}

#[test]
fn save_and_load_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    let state = dir.path().join("state");
    fs::create_dir_all(&ctx).unwrap();
    fs::create_dir_all(&state).unwrap();
    make_tree(&ctx);
    settle();
    let cache = MetaCache::new().with_racy_window(WINDOW);
    let first = run(&ctx, Some(&cache));
    cache.save(&state).unwrap();
    // Only the cache file is left behind (the temporary file was renamed).
    let names: Vec<_> = fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [CACHE_FILE]);
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(state.join(CACHE_FILE)).unwrap()).unwrap();
    assert_eq!(json["version"], 1);
    assert_eq!(json["entries"].as_object().unwrap().len(), 3);

    let loaded = MetaCache::load(&state).unwrap().with_racy_window(WINDOW);
    assert_eq!(loaded.len(), 3);
    let second = run(&ctx, Some(&loaded));
    assert_eq!(second.digest, first.digest);
    assert_eq!(second.stats.bytes_read, 0);
    assert_eq!(second.stats.files_hashed, 0);
    // Nothing learnt: nothing written back.
    assert!(!loaded.save_if_changed(&state).unwrap());
    // A changed file is learnt, and then written; pruning a deleted one also counts.
    settle();
    fs::write(ctx.join("a.txt"), "changed").unwrap();
    settle();
    run(&ctx, Some(&loaded));
    assert!(loaded.save_if_changed(&state).unwrap());
    assert!(!loaded.save_if_changed(&state).unwrap());
    fs::remove_file(ctx.join("dir/sub/c.txt")).unwrap();
    loaded.prune_stale();
    assert!(loaded.save_if_changed(&state).unwrap());
    assert_eq!(MetaCache::load(&state).unwrap().len(), 2);
}

#[test]
fn missing_damaged_or_foreign_cache_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    assert!(MetaCache::load(dir.path()).unwrap().is_empty());
    fs::write(dir.path().join(CACHE_FILE), "{not json").unwrap();
    assert!(MetaCache::load(dir.path()).unwrap().is_empty());
    fs::write(
        dir.path().join(CACHE_FILE),
        r#"{"version":99,"entries":{"/x":{"dev":1,"ino":2,"size":3,"mtime_ns":4,"ctime_ns":5,"mode":6,"blake3":"00"}}}"#,
    )
    .unwrap();
    assert!(MetaCache::load(dir.path()).unwrap().is_empty());
    // A cache directory that is a file is an error, not an empty cache.
    let file = dir.path().join("plain");
    fs::write(&file, "").unwrap();
    assert!(matches!(
        MetaCache::load(&file),
        Err(CacheError::Read { .. })
    ));
    assert!(matches!(
        MetaCache::new().save(&file),
        Err(CacheError::Write { .. })
    ));
}

#[test]
fn prune_stale_drops_changed_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path());
    settle();
    let cache = MetaCache::new().with_racy_window(WINDOW);
    run(dir.path(), Some(&cache));
    assert_eq!(cache.len(), 3);
    fs::remove_file(dir.path().join("dir/sub/c.txt")).unwrap();
    fs::write(dir.path().join("a.txt"), "changed").unwrap();
    cache.prune_stale();
    assert_eq!(cache.len(), 1);
}

#[test]
fn xattr_change_on_cached_file_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path());
    settle();
    let cache = MetaCache::new().with_racy_window(WINDOW);
    let before = run(dir.path(), Some(&cache));
    if let Err(e) = xattr::set(dir.path().join("a.txt"), "user.rbuild.test", b"1") {
        println!("skipping xattr_change_on_cached_file_is_seen: no user xattrs: {e}");
        return;
    }
    // The xattr digest is cached with the content hash; setxattr moves ctime.
    let after = run(dir.path(), Some(&cache));
    assert_eq!(after.stats.files_hashed, 1);
    assert_ne!(after.digest, before.digest);
    assert_eq!(after.digest, run(dir.path(), None).digest);
}
