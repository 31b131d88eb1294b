//! Randomized mutation test: after every random change to a small context, the checksum
//! computed through the metadata cache must equal a fresh, uncached checksum. Seeded,
//! so a failure names the seed and step that reproduce it.

use std::fs::{self, File, FileTimes};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rbuild_solver::context::{Matcher, MetaCache, checksum_selection};

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }
}

const WINDOW: Duration = Duration::from_millis(20);
const DIRS: &[&str] = &["", "d1", "d2", "d1/s"];
const NAMES: &[&str] = &["a", "b.txt", "c.txt", "d.log", "e"];
const MODES: &[u32] = &[0o644, 0o600, 0o755, 0o700, 0o4755, 0o444];

#[derive(Default)]
struct Tree {
    files: Vec<PathBuf>,
    links: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

fn scan(root: &Path) -> Tree {
    fn walk(dir: &Path, t: &mut Tree) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let ft = fs::symlink_metadata(&p).unwrap().file_type();
            if ft.is_symlink() {
                t.links.push(p);
            } else if ft.is_dir() {
                t.dirs.push(p.clone());
                walk(&p, t);
            } else {
                t.files.push(p);
            }
        }
    }
    let mut t = Tree::default();
    walk(root, &mut t);
    for v in [&mut t.files, &mut t.links, &mut t.dirs] {
        v.sort();
    }
    t
}

fn random_path(rng: &mut Rng, root: &Path) -> PathBuf {
    let dir = rng.pick(DIRS).unwrap();
    let name = rng.pick(NAMES).unwrap();
    root.join(dir).join(name)
}

fn content(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| b'a' + (rng.next() % 26) as u8).collect()
}

fn set_times(path: &Path, modified: SystemTime) {
    if let Ok(f) = File::options().write(true).open(path) {
        let _ = f.set_times(FileTimes::new().set_modified(modified));
    }
}

/// Applies one random mutation; failures (e.g. renaming onto a directory) are part of
/// the game and simply leave the tree as it was. Returns a description for messages.
fn mutate(rng: &mut Rng, root: &Path) -> String {
    let t = scan(root);
    let op = rng.below(15);
    let any_file = rng.pick(&t.files).cloned();
    let any_link = rng.pick(&t.links).cloned();
    let target = random_path(rng, root);
    match (op, any_file, any_link) {
        (0, Some(f), _) => {
            // Same size, mtime restored: only ctime shows the change.
            let meta = fs::metadata(&f).unwrap();
            let data = content(rng, meta.len() as usize);
            fs::write(&f, data).unwrap();
            set_times(&f, meta.modified().unwrap());
            format!("edit keeping size and mtime {f:?}")
        }
        (1, Some(f), _) => {
            let len = rng.below(40);
            fs::write(&f, content(rng, len)).unwrap();
            format!("rewrite {f:?}")
        }
        (2, Some(f), _) => {
            let mode = *rng.pick(MODES).unwrap();
            fs::set_permissions(&f, fs::Permissions::from_mode(mode)).unwrap();
            format!("chmod {mode:o} {f:?}")
        }
        (3, _, _) => match rng.pick(&t.dirs) {
            Some(d) => {
                let mode = [0o755, 0o750, 0o700, 0o775][rng.below(4)];
                fs::set_permissions(d, fs::Permissions::from_mode(mode)).unwrap();
                format!("chmod dir {mode:o} {d:?}")
            }
            None => "no dir to chmod".into(),
        },
        (4, _, _) => {
            let len = rng.below(20);
            let ok = fs::write(&target, content(rng, len)).is_ok();
            format!("write {target:?} ({ok})")
        }
        (5, Some(f), _) => {
            fs::remove_file(&f).unwrap();
            format!("delete {f:?}")
        }
        (6, Some(f), _) => {
            let ok = fs::rename(&f, &target).is_ok();
            format!("rename {f:?} -> {target:?} ({ok})")
        }
        (7, Some(f), _) => {
            fs::remove_file(&f).unwrap();
            let to = rng.pick(NAMES).unwrap();
            symlink(to, &f).unwrap();
            format!("file -> symlink {f:?} -> {to}")
        }
        (8, _, Some(l)) => {
            fs::remove_file(&l).unwrap();
            let to = format!("../{}", rng.pick(NAMES).unwrap());
            symlink(&to, &l).unwrap();
            format!("retarget {l:?} -> {to}")
        }
        (9, _, Some(l)) => {
            let ok = fs::rename(&l, &target).is_ok();
            format!("rename link {l:?} -> {target:?} ({ok})")
        }
        (10, _, Some(l)) => {
            fs::remove_file(&l).unwrap();
            let len = rng.below(10);
            fs::write(&l, content(rng, len)).unwrap();
            format!("symlink -> file {l:?}")
        }
        (11, Some(f), _) => {
            set_times(
                &f,
                SystemTime::now() + Duration::from_secs(rng.below(1000) as u64),
            );
            format!("touch {f:?}")
        }
        (12, _, _) => {
            let d = root.join(DIRS[1 + rng.below(DIRS.len() - 1)]);
            let ok = fs::create_dir_all(&d).is_ok();
            format!("mkdir {d:?} ({ok})")
        }
        (13, Some(f), _) => {
            // A new inode with the same content, size and mtime.
            let meta = fs::metadata(&f).unwrap();
            let tmp = root.join(".tmp-replace");
            fs::copy(&f, &tmp).unwrap();
            fs::set_permissions(&tmp, meta.permissions()).unwrap();
            set_times(&tmp, meta.modified().unwrap());
            fs::rename(&tmp, &f).unwrap();
            format!("replace inode {f:?}")
        }
        (14, Some(f), _) => {
            let v = content(rng, 3);
            match xattr::set(&f, "user.rbuild.mutation", &v) {
                Ok(()) => format!("xattr {f:?}"),
                Err(e) => format!("xattr refused on {f:?}: {e}"),
            }
        }
        _ => {
            let ok = fs::write(&target, b"seed").is_ok();
            format!("fallback write {target:?} ({ok})")
        }
    }
}

fn run_seed(seed: u64, steps: usize) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in ["d1/s", "d2"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    for (p, c) in [
        ("a", "alpha"),
        ("d1/b.txt", "bravo"),
        ("d1/s/c.txt", "charlie"),
    ] {
        fs::write(root.join(p), c).unwrap();
    }
    symlink("../a", root.join("d1/e")).unwrap();

    let selections: &[&[&str]] = &[&["."], &["d1", "*.txt"], &["d?/*", "a"]];
    let matchers = [
        Matcher::default(),
        Matcher::from_ignore_text("*.log\nd2\n").unwrap(),
        Matcher::from_ignore_text("d1\n!d1/s/c.txt\n!**/e\n").unwrap(),
    ];
    let cache = MetaCache::new().with_racy_window(WINDOW);
    let mut rng = Rng(seed);
    let mut fresh_hashed = 0;
    for step in 0..steps {
        let what = mutate(&mut rng, root);
        // Half the time let the change age past the racy window so the cache is used;
        // otherwise check again right away.
        if rng.below(2) == 0 {
            std::thread::sleep(WINDOW + Duration::from_millis(5));
        }
        let sources = selections[rng.below(selections.len())];
        let matcher = &matchers[rng.below(matchers.len())];
        let cached = checksum_selection(root, sources, matcher, Some(&cache));
        let fresh = checksum_selection(root, sources, matcher, None);
        if let Ok(f) = &fresh {
            fresh_hashed += f.stats.files_hashed;
        }
        assert_eq!(
            cached.map(|c| c.digest).map_err(|e| e.to_string()),
            fresh.map(|c| c.digest).map_err(|e| e.to_string()),
            "seed {seed} step {step}: after {what}, sources {sources:?}"
        );
    }
    (cache.stats().cache_hits, fresh_hashed)
}

#[test]
fn cached_checksum_always_equals_fresh() {
    let (hits, fresh_hashed) = run_seed(0x5eed_cafe_f00d_0001, 200);
    // The cache must actually have been used, or the comparison proves nothing.
    assert!(hits > 0, "no cache hits");
    assert!(fresh_hashed > 0);
}

#[test]
fn cached_checksum_always_equals_fresh_second_seed() {
    let (hits, _) = run_seed(0x0123_4567_89ab_cdef, 120);
    assert!(hits > 0, "no cache hits");
}
