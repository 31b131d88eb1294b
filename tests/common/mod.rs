//! Helpers shared by the integration tests: run the real `rbuild` binary, compare or
//! bless golden files.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn rbuild() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rbuild"))
}

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared conformance corpus: `$RBUILD_CORPUS`, else `../shared/corpus` beside the
/// workspace. Panics with a clear message when it is missing: a missing corpus must fail
/// the suite, never pass it silently.
pub fn corpus() -> PathBuf {
    let dir = std::env::var_os("RBUILD_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared/corpus"));
    assert!(
        dir.join("expected.tsv").is_file(),
        "conformance corpus not found at {} (set RBUILD_CORPUS)",
        dir.display()
    );
    dir
}

pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Compares `actual` with the golden file, or rewrites it when `RBUILD_BLESS=1`.
/// Returns a description of the mismatch instead of panicking so a test can report all.
pub fn golden(path: &Path, actual: &str) -> Result<(), String> {
    if std::env::var_os("RBUILD_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(path, actual).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(());
    }
    let expected = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{}: {e} (run with RBUILD_BLESS=1 to create)",
            path.display()
        )
    })?;
    if expected == actual {
        Ok(())
    } else {
        Err(format!(
            "{} differs:\n{}",
            path.display(),
            first_difference(&expected, actual)
        ))
    }
}

fn first_difference(expected: &str, actual: &str) -> String {
    for (i, (e, a)) in expected.lines().zip(actual.lines()).enumerate() {
        if e != a {
            return format!("line {}:\n  expected: {e}\n  actual:   {a}", i + 1);
        }
    }
    format!(
        "length differs: expected {} lines, got {}",
        expected.lines().count(),
        actual.lines().count()
    )
}

/// Reads a case's `args` file: one `--build-arg K=V` or `--target X` per line.
pub fn case_args(dir: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(dir.join("args")) else {
        return Vec::new();
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .flat_map(|l| match l.split_once(' ') {
            Some((flag, value)) => vec![flag.to_string(), value.trim().to_string()],
            None => vec![l.to_string()],
        })
        .collect()
}

/// A store root in a temp dir, and the `rbuild` commands that run against it.
pub struct Root {
    pub dir: tempfile::TempDir,
}

impl Root {
    pub fn new() -> Root {
        Root {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `rbuild --root <root> ARGS` with a fixed `SOURCE_DATE_EPOCH` so imports are
    /// reproducible, and no store or registry settings inherited from the environment (the
    /// config file is one in the root's temp dir, missing unless a test writes it).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = rbuild();
        cmd.arg("--root")
            .arg(self.path().join("store"))
            .args(args)
            .env_remove("RBUILD_ROOT")
            .env_remove("RBUILD_REGISTRY_MIRRORS")
            .env("RBUILD_CONFIG", self.path().join("config.toml"))
            .env("SOURCE_DATE_EPOCH", "1700000000");
        cmd
    }

    /// Runs `args` with `input` on stdin.
    pub fn run_with(&self, mut cmd: Command, input: &[u8]) -> Output {
        use std::io::Write as _;
        use std::process::Stdio;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn rbuild");
        let mut stdin = child.stdin.take().expect("stdin");
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            // The command may stop reading early when it fails; that is its answer.
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().expect("wait for rbuild");
        writer.join().expect("stdin writer");
        out
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run rbuild")
    }

    /// Runs `args`, asserts success and returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_success(&out, args);
        text(&out).0
    }

    /// Runs `args`, asserts exit code 1 with a one-line `error: ...` and no panic; returns
    /// the error line.
    pub fn fails(&self, args: &[&str]) -> String {
        assert_one_line_error(&self.run(args), args)
    }
}

impl Default for Root {
    fn default() -> Root {
        Root::new()
    }
}

pub fn assert_success(out: &Output, what: &[&str]) {
    let (stdout, stderr) = text(out);
    assert!(
        out.status.success(),
        "rbuild {what:?} failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
}

pub fn assert_one_line_error(out: &Output, what: &[&str]) -> String {
    let (stdout, stderr) = text(out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "rbuild {what:?} should exit 1\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "want one error line, got:\n{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_owned()
}

/// Fixed mtime of every fixture tar entry, so the tars are reproducible.
pub const FIXTURE_MTIME: u64 = 1_700_000_000;

/// One entry of a fixture tar.
pub enum Entry<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, &'a [u8]),
    Symlink(&'a str, &'a str),
}

/// A deterministic tar (given order, root owner, fixed mtimes).
pub fn tar_of(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(FIXTURE_MTIME);
        h.set_uid(0);
        h.set_gid(0);
        h.set_username("root").unwrap();
        h.set_groupname("root").unwrap();
        match entry {
            Entry::Dir(path, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                builder.append_data(&mut h, path, std::io::empty()).unwrap();
            }
            Entry::File(path, mode, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                builder.append_data(&mut h, path, *data).unwrap();
            }
            Entry::Symlink(path, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                builder.append_link(&mut h, path, target).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

/// A small root filesystem: a directory and a file in it.
pub fn small_rootfs() -> Vec<u8> {
    tar_of(&[
        Entry::Dir("app", 0o755),
        Entry::File("app/hello.txt", 0o644, b"hello from rbuild\n"),
    ])
}

/// Debian's static busybox, installed by `scripts/deps.sh` (package busybox-static).
pub const BUSYBOX: &str = "/bin/busybox";

/// The busybox base root filesystem as `/work/shared/difftest/mkbase.py` makes it: every
/// applet a symlink to `/bin/busybox`, `/etc/passwd` and `/etc/group` with root only,
/// `/root`, `/tmp`; sorted entries, root owner, fixed mtimes.
pub fn busybox_rootfs() -> Vec<u8> {
    let binary = std::fs::read(BUSYBOX).unwrap_or_else(|e| {
        panic!("{BUSYBOX}: {e} (install Debian's busybox-static: scripts/deps.sh)")
    });
    let list = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .unwrap_or_else(|e| panic!("{BUSYBOX} --list: {e}"));
    assert!(list.status.success(), "{BUSYBOX} --list failed");
    let mut applets: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .split_whitespace()
        .filter(|a| *a != "busybox" && !a.contains('/'))
        .map(str::to_owned)
        .collect();
    applets.push("busybox".to_owned());
    applets.sort();
    applets.dedup();
    let links: Vec<(String, String)> = applets
        .iter()
        .map(|a| (format!("bin/{a}"), a.clone()))
        .collect();
    let mut entries = vec![Entry::Dir("bin", 0o755)];
    for (path, applet) in &links {
        if applet == "busybox" {
            entries.push(Entry::File(path, 0o755, &binary));
        } else {
            entries.push(Entry::Symlink(path, "busybox"));
        }
    }
    entries.extend([
        Entry::Dir("etc", 0o755),
        Entry::File("etc/group", 0o644, b"root:x:0:\n"),
        Entry::File("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n"),
        Entry::Dir("root", 0o700),
        Entry::Dir("tmp", 0o1777),
    ]);
    tar_of(&entries)
}

/// Imports the busybox base into `root` as `busybox:latest` (`CMD ["sh"]`, like Docker
/// Hub's) and returns its image id.
pub fn import_busybox(root: &Root) -> String {
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("busybox.tar");
    std::fs::write(&tar, busybox_rootfs()).unwrap();
    let out = root.ok(&[
        "import",
        "--change",
        r#"CMD ["sh"]"#,
        tar.to_str().unwrap(),
        "busybox:latest",
    ]);
    out.trim().to_owned()
}

/// Runs an external tool the test needs; a missing tool fails the test with a clear
/// message rather than skipping it.
pub fn tool(name: &str, args: &[&str]) -> Output {
    Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e} (install it with scripts/deps.sh)"))
}

/// A build context in a temp dir with the given files (parents created).
pub fn context_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    dir
}

/// A fresh store root with the busybox fixture imported as `busybox:latest`.
pub fn busybox_root() -> Root {
    let root = Root::new();
    import_busybox(&root);
    root
}
