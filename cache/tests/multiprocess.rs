//! Several processes on one store: the test binary re-executes itself in a child role
//! (chosen by `RBUILD_CACHE_TEST_ROLE`) and checks what the children left behind,
//! including children killed with SIGKILL in the middle of an ingest or a transaction.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use rbuild_cache::{ContentStore, Descriptor, Digest, MetaError, PruneOptions, Store, TagRecord};

const ROLE: &str = "RBUILD_CACHE_TEST_ROLE";
const COUNTER: &[u8] = b"test/counter";

fn main() {
    match std::env::var(ROLE).ok().as_deref() {
        Some("tagger") => tagger(),
        Some("killed-writer") => killed_writer(),
        Some("killed-in-transaction") => killed_in_transaction(),
        Some(other) => panic!("unknown role {other}"),
        None => {
            run(
                "processes_adding_tags_lose_none",
                processes_adding_tags_lose_none,
            );
            run(
                "killed_ingest_leaves_nothing_visible",
                killed_ingest_leaves_nothing_visible,
            );
            run(
                "killed_transaction_is_rolled_back",
                killed_transaction_is_rolled_back,
            );
        }
    }
}

fn run(name: &str, test: fn()) {
    print!("test {name} ... ");
    std::io::stdout().flush().unwrap();
    test();
    println!("ok");
}

fn arg(i: usize) -> String {
    std::env::args().nth(i).expect("child role argument")
}

fn child(role: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(ROLE, role).args(args);
    cmd
}

/// Child: adds `n` blobs and tags under `prefix`, and bumps a shared counter with a
/// read-modify-write in one transaction each time (a lost update would show).
fn tagger() {
    let store = Store::open(Path::new(&arg(1))).unwrap();
    let prefix = arg(2);
    let n: usize = arg(3).parse().unwrap();
    for i in 0..n {
        let _gc = store.gc_guard().unwrap();
        let data = format!("{prefix}-{i}");
        let d = store.content().ingest(None, data.as_bytes()).unwrap();
        store
            .meta()
            .write(|tx| {
                tx.put_tag(&format!("{prefix}:{i}"), &TagRecord::now(d.digest.clone()))?;
                let count = tx
                    .cache_get(COUNTER)?
                    .map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap()));
                tx.cache_put(COUNTER, &(count + 1).to_le_bytes())
            })
            .unwrap();
    }
}

/// Child: starts an ingest, reports `ready`, then waits to be killed.
fn killed_writer() {
    let store = Store::open(Path::new(&arg(1))).unwrap();
    let mut w = store.content().writer().unwrap();
    w.write_all(&vec![7u8; 1 << 20]).unwrap();
    w.flush().unwrap();
    wait_for_kill();
}

/// Child: writes tags inside a transaction, reports `ready`, then waits to be killed
/// before the commit.
fn killed_in_transaction() {
    let store = Store::open(Path::new(&arg(1))).unwrap();
    let _: Result<(), MetaError> = store.meta().write(|tx| {
        for i in 0..100 {
            tx.put_tag(
                &format!("doomed:{i}"),
                &TagRecord::now(Digest::sha256_of(b"x")),
            )?;
        }
        wait_for_kill();
        Ok(())
    });
}

fn wait_for_kill() {
    println!("ready");
    std::io::stdout().flush().unwrap();
    // Blocks until the parent kills us; the parent never writes to our stdin.
    let _ = std::io::stdin().read(&mut [0u8; 1]);
    panic!("parent closed stdin instead of killing this process");
}

/// Spawns `role` and SIGKILLs it once it reports ready.
fn kill_when_ready(role: &str, root: &Path) {
    let mut c: Child = child(role, &[root.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(c.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    c.kill().unwrap();
    let status = c.wait().unwrap();
    assert!(!status.success());
}

fn temp_root() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    (dir, root)
}

fn processes_adding_tags_lose_none() {
    let (_dir, root) = temp_root();
    let (procs, per) = (3, 25);
    let children: Vec<_> = (0..procs)
        .map(|p| {
            child(
                "tagger",
                &[root.to_str().unwrap(), &format!("p{p}"), &per.to_string()],
            )
            .spawn()
            .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }

    let store = Store::open(&root).unwrap();
    let tags = store.meta().list_tags().unwrap();
    assert_eq!(tags.len(), procs * per);
    for p in 0..procs {
        for i in 0..per {
            let data = format!("p{p}-{i}");
            let want = Descriptor::of(data.as_bytes());
            let tag = store.meta().get_tag(&format!("p{p}:{i}")).unwrap().unwrap();
            assert_eq!(tag.digest, want.digest);
            assert_eq!(store.content().info(&want.digest).unwrap(), want);
        }
    }
    let count = store.meta().cache_get(COUNTER).unwrap().unwrap();
    assert_eq!(
        u64::from_le_bytes(count.try_into().unwrap()),
        (procs * per) as u64
    );
}

fn killed_ingest_leaves_nothing_visible() {
    let (_dir, root) = temp_root();
    Store::open(&root).unwrap();
    kill_when_ready("killed-writer", &root);

    let store = Store::open(&root).unwrap();
    assert!(store.content().list().unwrap().is_empty());
    let partial = Digest::sha256_of(&vec![7u8; 1 << 20]);
    assert!(!store.content().contains(&partial).unwrap());
    assert_eq!(store.content().ingest_temps().unwrap().len(), 1);

    let options = PruneOptions {
        ingest_max_age: std::time::Duration::ZERO,
        ..PruneOptions::default()
    };
    let report = store.prune_with(&BTreeSet::new(), &options).unwrap();
    assert_eq!(report.temps_removed.len(), 1);
    assert_eq!(report.reclaimed, 1 << 20);
    assert!(store.content().ingest_temps().unwrap().is_empty());
}

fn killed_transaction_is_rolled_back() {
    let (_dir, root) = temp_root();
    let store = Store::open(&root).unwrap();
    store
        .meta()
        .put_tag("kept:1", &TagRecord::now(Digest::sha256_of(b"kept")))
        .unwrap();
    kill_when_ready("killed-in-transaction", &root);

    // The kernel released the dead child's locks, and redb shows the last commit.
    let tags = store.meta().list_tags().unwrap();
    let names: Vec<_> = tags.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["kept:1"]);
    store
        .meta()
        .put_tag("after:1", &TagRecord::now(Digest::sha256_of(b"after")))
        .unwrap();
    assert_eq!(store.meta().list_tags().unwrap().len(), 2);
}
