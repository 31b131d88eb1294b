//! Randomized mutation test of the build cache (issue 6, "Never a false cache hit").
//!
//! A context with several `COPY` forms (whole directory, subdirectory, wildcard,
//! `COPY --from` a stage that copies context files, `ADD`), a `.dockerignore`, used and
//! unused `ARG`s and an `ENV` is mutated one random change at a time. After a change
//! that may matter, a cached build and a `--no-cache` build are exported with
//! `--output type=local` and compared file by file (type, mode, owner, content, link
//! target; not mtime: `COPY` keeps the context's mtimes, which a cached step rightly does
//! not follow). Any difference is a false cache hit. After a change that must not matter
//! (touch, an ignored file, a Dockerfile comment, an unused `ARG`), the cached build must
//! execute no step at all.
//!
//! The seed is printed; `RBUILD_MUTATION_SEED` replays one and `RBUILD_MUTATION_STEPS`
//! sets the number of steps (the default seed and step count keep CI deterministic).

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hash::Hasher as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{Root, import_busybox, text};

const DEFAULT_SEED: u64 = 0x5eed_2026_1123;
const DEFAULT_STEPS: usize = 16;

/// splitmix64: small, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Paths (relative to the context) that the Dockerfile needs: never deleted, renamed or
/// turned into something else, only edited or chmodded.
const PROTECTED: &[&str] = &["app", "app/sub", "data", "data/keep.txt", "lib", "add.txt"];

const IGNORE_VARIANTS: &[&str] = &[
    "Dockerfile\n.dockerignore\nignored/\n**/*.log\n",
    "Dockerfile\n.dockerignore\nignored/\n**/*.log\napp/sub/d*\n",
    "Dockerfile\n.dockerignore\nignored/\n**/*.log\nlib/*.tmp\n!lib/keep.tmp\n",
    "Dockerfile\n.dockerignore\nignored/\n**/*.log\ndata/2.txt\n",
    "Dockerfile\n.dockerignore\nignored/\n*.log\napp/a*\n",
];

const FILE_MODES: &[u32] = &[0o644, 0o600, 0o755, 0o640, 0o444, 0o664, 0o4755];
const DIR_MODES: &[u32] = &[0o755, 0o700, 0o750, 0o775, 0o711, 0o1777];

/// The context and the Dockerfile's variable parts.
struct World {
    ctx: PathBuf,
    env: u32,
    marker: u32,
    comments: usize,
    used: u32,
    unused: u32,
    late: u32,
    ignore: usize,
    fresh: u32,
}

/// One applied mutation.
struct Mutation {
    what: String,
    /// The build must reuse every step.
    stays_cached: bool,
}

impl World {
    fn new(ctx: PathBuf) -> World {
        let w = World {
            ctx,
            env: 0,
            marker: 0,
            comments: 0,
            used: 0,
            unused: 0,
            late: 0,
            ignore: 0,
            fresh: 0,
        };
        let files: &[(&str, &str)] = &[
            ("app/a.txt", "alpha\n"),
            ("app/b.txt", "bravo\n"),
            ("app/run.sh", "#!/bin/sh\necho run\n"),
            ("app/sub/c.txt", "charlie\n"),
            ("app/sub/d.txt", "delta\n"),
            ("app/sub/deep/e.txt", "echo\n"),
            ("data/keep.txt", "keep\n"),
            ("data/1.txt", "one\n"),
            ("data/2.txt", "two\n"),
            ("data/x.md", "markdown\n"),
            ("lib/l1.txt", "lib one\n"),
            ("lib/sub/l2.txt", "lib two\n"),
            ("add.txt", "added\n"),
            ("ignored/i.txt", "ignored\n"),
            ("top.log", "log\n"),
        ];
        for (path, content) in files {
            let p = w.ctx.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        set_mode(&w.ctx.join("app/run.sh"), 0o755);
        std::fs::create_dir(w.ctx.join("app/empty")).unwrap();
        for (link, target) in [
            ("app/link", "a.txt"),
            ("app/sub/dlink", "../b.txt"),
            ("lib/lnk", "l1.txt"),
        ] {
            std::os::unix::fs::symlink(target, w.ctx.join(link)).unwrap();
        }
        w.write_dockerfile();
        w.write_ignore();
        w
    }

    fn dockerfile(&self) -> String {
        let mut s = String::new();
        for i in 0..self.comments {
            writeln!(s, "# comment {i}").unwrap();
        }
        write!(
            s,
            r#"FROM busybox AS src
COPY lib/ /lib-src/
RUN echo marker-{marker} > /lib-src/marker

FROM busybox AS unused
ARG UNUSED=u
RUN echo "$UNUSED" > /unused

FROM busybox
ARG USED=default
ENV E1=env-{env}
COPY . /ctx/
COPY app/sub /sub/
COPY data/*.txt /wild/
COPY --from=src /lib-src /from-src/
ADD add.txt /added.txt
RUN echo "$USED $E1" > /info && find /ctx /sub /wild /from-src | sort > /listing
ARG LATE=late
"#,
            marker = self.marker,
            env = self.env,
        )
        .unwrap();
        s
    }

    fn write_dockerfile(&self) {
        std::fs::write(self.ctx.join("Dockerfile"), self.dockerfile()).unwrap();
    }

    fn write_ignore(&self) {
        std::fs::write(self.ctx.join(".dockerignore"), IGNORE_VARIANTS[self.ignore]).unwrap();
    }

    fn build_args(&self) -> Vec<String> {
        [
            format!("USED=used-{}", self.used),
            format!("UNUSED=unused-{}", self.unused),
            format!("LATE=late-{}", self.late),
        ]
        .into_iter()
        .flat_map(|a| ["--build-arg".to_owned(), a])
        .collect()
    }

    /// Every entry under the mutable trees, relative to the context, sorted.
    fn entries(&self) -> Vec<String> {
        let mut out = Vec::new();
        for top in ["app", "data", "lib"] {
            walk(&self.ctx, top, &mut out);
        }
        out.push("add.txt".to_owned());
        out.sort();
        out
    }

    fn kind(&self, rel: &str) -> Kind {
        let m = std::fs::symlink_metadata(self.ctx.join(rel)).unwrap();
        if m.file_type().is_symlink() {
            Kind::Symlink
        } else if m.is_dir() {
            Kind::Dir
        } else {
            Kind::File
        }
    }

    fn fresh_name(&mut self, rng: &mut Rng) -> String {
        self.fresh += 1;
        let ext = rng.pick(&[".txt", ".tmp", ".log", ""]);
        format!("n{}{ext}", self.fresh)
    }

    /// Applies one random mutation.
    fn mutate(&mut self, rng: &mut Rng) -> Mutation {
        loop {
            if let Some(m) = self.try_mutate(rng) {
                return m;
            }
        }
    }

    fn try_mutate(&mut self, rng: &mut Rng) -> Option<Mutation> {
        let entries = self.entries();
        let of_kind = |w: &World, k: Kind| -> Vec<String> {
            entries.iter().filter(|e| w.kind(e) == k).cloned().collect()
        };
        let movable: Vec<String> = entries
            .iter()
            .filter(|e| !PROTECTED.contains(&e.as_str()))
            .cloned()
            .collect();
        let changed = |what: String| {
            Some(Mutation {
                what,
                stays_cached: false,
            })
        };
        let kept = |what: String| {
            Some(Mutation {
                what,
                stays_cached: true,
            })
        };
        match rng.below(20) {
            0 | 1 => {
                // Same size, mtime and atime put back: only ctime tells.
                let files: Vec<String> = of_kind(self, Kind::File)
                    .into_iter()
                    .filter(|f| std::fs::metadata(self.ctx.join(f)).unwrap().len() > 0)
                    .collect();
                let f = choose(rng, &files)?;
                let p = self.ctx.join(&f);
                let meta = std::fs::metadata(&p).unwrap();
                let mut data = std::fs::read(&p).unwrap();
                let i = rng.below(data.len());
                data[i] = if data[i] == b'z' { b'y' } else { b'z' };
                std::fs::write(&p, &data).unwrap();
                restore_times(&p, &meta);
                changed(format!("edit {f} (byte {i}, same size, mtime restored)"))
            }
            2 => {
                let f = choose(rng, &of_kind(self, Kind::File))?;
                let mode = *rng.pick(FILE_MODES);
                set_mode(&self.ctx.join(&f), mode);
                changed(format!("chmod {mode:o} {f}"))
            }
            3 => {
                let d = choose(rng, &of_kind(self, Kind::Dir))?;
                let mode = *rng.pick(DIR_MODES);
                set_mode(&self.ctx.join(&d), mode);
                changed(format!("chmod {mode:o} {d}/"))
            }
            4 => {
                let parent = choose(rng, &of_kind(self, Kind::Dir))?;
                let name = format!("{parent}/{}", self.fresh_name(rng));
                match rng.below(3) {
                    0 => {
                        std::fs::write(self.ctx.join(&name), format!("new {name}\n")).unwrap();
                        changed(format!("add file {name}"))
                    }
                    1 => {
                        std::fs::create_dir(self.ctx.join(&name)).unwrap();
                        std::fs::write(self.ctx.join(&name).join("f"), "in new dir\n").unwrap();
                        changed(format!("add dir {name}/ with f"))
                    }
                    _ if parent.starts_with("data") => None,
                    _ => {
                        let target = self.link_target(rng, &parent);
                        std::os::unix::fs::symlink(&target, self.ctx.join(&name)).unwrap();
                        changed(format!("add symlink {name} -> {target}"))
                    }
                }
            }
            5 => {
                let e = choose(rng, &movable)?;
                let p = self.ctx.join(&e);
                if self.kind(&e) == Kind::Dir {
                    std::fs::remove_dir_all(&p).unwrap();
                } else {
                    std::fs::remove_file(&p).unwrap();
                }
                changed(format!("delete {e}"))
            }
            6 => {
                let e = choose(rng, &movable)?;
                let parent = parent_of(&e);
                let to = format!("{parent}/{}", self.fresh_name(rng));
                std::fs::rename(self.ctx.join(&e), self.ctx.join(&to)).unwrap();
                changed(format!("rename {e} -> {to}"))
            }
            7 => {
                let files: Vec<String> = of_kind(self, Kind::File)
                    .into_iter()
                    .filter(|f| !PROTECTED.contains(&f.as_str()) && !f.starts_with("data/"))
                    .collect();
                let f = choose(rng, &files)?;
                let target = self.link_target(rng, &parent_of(&f));
                std::fs::remove_file(self.ctx.join(&f)).unwrap();
                std::os::unix::fs::symlink(&target, self.ctx.join(&f)).unwrap();
                changed(format!("file {f} -> symlink to {target}"))
            }
            8 => {
                // A file whose content is the old link's target: a checksum that mixes up
                // the two would miss it.
                let l = choose(rng, &of_kind(self, Kind::Symlink))?;
                let p = self.ctx.join(&l);
                let target = std::fs::read_link(&p).unwrap();
                std::fs::remove_file(&p).unwrap();
                std::fs::write(&p, target.as_os_str().as_encoded_bytes()).unwrap();
                changed(format!("symlink {l} -> file"))
            }
            9 => {
                let l = choose(rng, &of_kind(self, Kind::Symlink))?;
                let p = self.ctx.join(&l);
                let old = std::fs::read_link(&p).unwrap();
                let target = self.link_target(rng, &parent_of(&l));
                if Path::new(&target) == old {
                    return None;
                }
                std::fs::remove_file(&p).unwrap();
                std::os::unix::fs::symlink(&target, &p).unwrap();
                changed(format!("retarget {l} -> {target}"))
            }
            10 => {
                let l = choose(rng, &of_kind(self, Kind::Symlink))?;
                let to = format!("{}/{}", parent_of(&l), self.fresh_name(rng));
                std::fs::rename(self.ctx.join(&l), self.ctx.join(&to)).unwrap();
                changed(format!("rename symlink {l} -> {to}"))
            }
            11 => {
                let next = (self.ignore + 1 + rng.below(IGNORE_VARIANTS.len() - 1))
                    % IGNORE_VARIANTS.len();
                self.ignore = next;
                self.write_ignore();
                changed(format!(".dockerignore variant {next}"))
            }
            12 => {
                self.used += 1;
                changed(format!("--build-arg USED=used-{}", self.used))
            }
            13 => {
                self.env += 1;
                self.write_dockerfile();
                changed(format!("ENV E1=env-{}", self.env))
            }
            14 => {
                self.marker += 1;
                self.write_dockerfile();
                changed(format!("COPY --from source stage marker-{}", self.marker))
            }
            15 => {
                let all: Vec<String> = entries
                    .iter()
                    .filter(|e| self.kind(e) != Kind::Symlink)
                    .cloned()
                    .collect();
                let e = choose(rng, &all)?;
                let p = self.ctx.join(&e);
                let t = std::time::SystemTime::UNIX_EPOCH
                    + std::time::Duration::from_secs(1_600_000_000 + rng.next() % 100_000_000);
                let f = std::fs::File::open(&p).unwrap();
                f.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t))
                    .unwrap();
                kept(format!("touch {e}"))
            }
            16 => {
                let name = rng.pick(&["ignored/i.txt", "top.log", "app/sub/x.log"]);
                let p = self.ctx.join(name);
                let old = std::fs::read(&p).unwrap_or_default();
                let mut data = old.clone();
                data.extend_from_slice(b"more\n");
                std::fs::write(&p, data).unwrap();
                kept(format!("edit ignored {name}"))
            }
            17 => {
                self.comments += 1;
                self.write_dockerfile();
                kept(format!("Dockerfile comment {}", self.comments))
            }
            18 => {
                if rng.below(2) == 0 {
                    self.unused += 1;
                    kept(format!("--build-arg UNUSED=unused-{}", self.unused))
                } else {
                    self.late += 1;
                    kept(format!("--build-arg LATE=late-{}", self.late))
                }
            }
            _ => {
                // Two changes at once in one directory: a rename and an edit of the same
                // size, as an editor's save does.
                let files: Vec<String> = of_kind(self, Kind::File)
                    .into_iter()
                    .filter(|f| !PROTECTED.contains(&f.as_str()))
                    .collect();
                let f = choose(rng, &files)?;
                let to = format!("{}/{}", parent_of(&f), self.fresh_name(rng));
                let p = self.ctx.join(&f);
                let meta = std::fs::metadata(&p).unwrap();
                let mut data = std::fs::read(&p).unwrap();
                data.reverse();
                std::fs::write(&p, &data).unwrap();
                restore_times(&p, &meta);
                std::fs::rename(&p, self.ctx.join(&to)).unwrap();
                changed(format!("reverse and rename {f} -> {to}"))
            }
        }
    }

    /// A link target in `dir`: a sibling's name, a name that does not exist, or a path
    /// up and back.
    fn link_target(&mut self, rng: &mut Rng, dir: &str) -> String {
        let siblings: Vec<String> = std::fs::read_dir(self.ctx.join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        match rng.below(3) {
            0 if !siblings.is_empty() => {
                let mut s = siblings;
                s.sort();
                rng.pick(&s).clone()
            }
            1 => format!("missing-{}", rng.below(4)),
            _ => "../add.txt".to_owned(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
}

/// A random element, `None` when there is none.
fn choose(rng: &mut Rng, items: &[String]) -> Option<String> {
    if items.is_empty() {
        None
    } else {
        Some(rng.pick(items).clone())
    }
}

fn parent_of(rel: &str) -> String {
    Path::new(rel)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| ".".to_owned())
}

fn walk(ctx: &Path, rel: &str, out: &mut Vec<String>) {
    let p = ctx.join(rel);
    let Ok(meta) = std::fs::symlink_metadata(&p) else {
        return;
    };
    out.push(rel.to_owned());
    if meta.is_dir() {
        for e in std::fs::read_dir(&p).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            walk(ctx, &format!("{rel}/{name}"), out);
        }
    }
}

fn set_mode(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn restore_times(p: &Path, meta: &std::fs::Metadata) {
    let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
    f.set_times(
        std::fs::FileTimes::new()
            .set_modified(meta.modified().unwrap())
            .set_accessed(meta.accessed().unwrap()),
    )
    .unwrap();
}

/// Every entry of an exported filesystem: path → type, mode, owner and content hash or
/// link target.
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn visit(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            let p = dir.join(&name);
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let owner = format!(
                "mode={:o} uid={} gid={}",
                m.mode() & 0o7777,
                m.uid(),
                m.gid()
            );
            let desc = if m.file_type().is_symlink() {
                format!(
                    "symlink {owner} -> {}",
                    std::fs::read_link(&p).unwrap().display()
                )
            } else if m.is_dir() {
                format!("dir {owner}")
            } else if m.is_file() {
                let mut h = std::hash::DefaultHasher::new();
                h.write(&std::fs::read(&p).unwrap());
                format!("file {owner} size={} hash={:016x}", m.len(), h.finish())
            } else {
                format!("other {owner} type={:?}", m.file_type())
            };
            out.insert(rel, desc);
            if m.is_dir() {
                visit(root, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    visit(root, root, &mut out);
    out
}

fn differences(cached: &BTreeMap<String, String>, fresh: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (k, v) in fresh {
        match cached.get(k) {
            None => writeln!(out, "  missing in cached build: {k} ({v})").unwrap(),
            Some(c) if c != v => writeln!(out, "  {k}: cached {c}, fresh {v}").unwrap(),
            _ => {}
        }
    }
    for (k, v) in cached {
        if !fresh.contains_key(k) {
            writeln!(out, "  only in cached build: {k} ({v})").unwrap();
        }
    }
    out
}

struct Outcome {
    ok: bool,
    log: String,
    report: Option<serde_json::Value>,
}

fn build(root: &Root, w: &World, tag: &str, extra: &[&str]) -> Outcome {
    let report = root.path().join("report.json");
    let _ = std::fs::remove_file(&report);
    let args = w.build_args();
    let mut all: Vec<&str> = vec![
        "build",
        "--progress",
        "plain",
        "--report-file",
        report.to_str().unwrap(),
        "-t",
        tag,
    ];
    all.extend(args.iter().map(String::as_str));
    all.extend_from_slice(extra);
    all.push(w.ctx.to_str().unwrap());
    let out = root.run(&all);
    let (stdout, stderr) = text(&out);
    assert!(!stderr.contains("panicked"), "{stderr}");
    Outcome {
        ok: out.status.success(),
        log: format!("stdout:\n{stdout}\nstderr:\n{stderr}"),
        report: std::fs::read(&report)
            .ok()
            .map(|b| serde_json::from_slice(&b).unwrap()),
    }
}

fn executed(report: &serde_json::Value) -> (u64, u64) {
    (
        report["run_executed"].as_u64().unwrap(),
        report["file_executed"].as_u64().unwrap(),
    )
}

#[test]
fn cached_builds_equal_fresh_builds_under_random_context_mutations() {
    let seed = std::env::var("RBUILD_MUTATION_SEED")
        .ok()
        .map(|s| {
            let s = s.trim();
            s.strip_prefix("0x")
                .map(|h| u64::from_str_radix(h, 16))
                .unwrap_or_else(|| s.parse())
                .expect("RBUILD_MUTATION_SEED must be a number")
        })
        .unwrap_or(DEFAULT_SEED);
    let steps = std::env::var("RBUILD_MUTATION_STEPS")
        .ok()
        .map(|s| s.parse().expect("RBUILD_MUTATION_STEPS must be a number"))
        .unwrap_or(DEFAULT_STEPS);
    eprintln!("mutation test: seed {seed:#x}, {steps} steps (replay with RBUILD_MUTATION_SEED)");
    let mut rng = Rng(seed);
    let root = Root::new();
    import_busybox(&root);
    let ctx = tempfile::tempdir().unwrap();
    let mut world = World::new(ctx.path().join("ctx"));
    let first = build(&root, &world, "mut:cached", &[]);
    assert!(first.ok, "first build failed\n{}", first.log);

    let mut history: Vec<String> = Vec::new();
    let mut changing = 0;
    let mut kept = 0;
    for step in 1..=steps {
        let m = world.mutate(&mut rng);
        eprintln!("step {step}: {}", m.what);
        history.push(format!("{step}: {}", m.what));
        let context = || {
            format!(
                "seed {seed:#x}, step {step}: {}\nmutations so far:\n  {}",
                m.what,
                history.join("\n  ")
            )
        };
        if m.stays_cached {
            kept += 1;
            let out = build(&root, &world, "mut:cached", &[]);
            assert!(out.ok, "{}: build failed\n{}", context(), out.log);
            let report = out.report.expect("report");
            assert_eq!(
                executed(&report),
                (0, 0),
                "{}: a change that must not matter re-ran steps\n{report}\n{}",
                context(),
                out.log
            );
            continue;
        }
        changing += 1;
        let out_cached = ctx.path().join(format!("cached-{step}"));
        let out_fresh = ctx.path().join(format!("fresh-{step}"));
        let dest = |d: &Path| format!("type=local,dest={}", d.display());
        let cached = build(
            &root,
            &world,
            "mut:cached",
            &["--output", &dest(&out_cached)],
        );
        let fresh = build(
            &root,
            &world,
            "mut:fresh",
            &["--no-cache", "--output", &dest(&out_fresh)],
        );
        assert_eq!(
            cached.ok,
            fresh.ok,
            "{}: cached and --no-cache builds disagree on success\ncached:\n{}\nfresh:\n{}",
            context(),
            cached.log,
            fresh.log
        );
        if !cached.ok {
            eprintln!("step {step}: both builds failed (same answer)");
            continue;
        }
        let diff = differences(&tree(&out_cached), &tree(&out_fresh));
        assert!(
            diff.is_empty(),
            "{}: FALSE CACHE HIT, the cached build differs from the --no-cache build:\n{diff}\ncached build log:\n{}",
            context(),
            cached.log
        );
        std::fs::remove_dir_all(&out_cached).unwrap();
        std::fs::remove_dir_all(&out_fresh).unwrap();
    }
    eprintln!("mutation test: {changing} compared, {kept} checked as cached");
    assert!(changing > 0 && kept > 0, "the seed exercised only one kind");
}
