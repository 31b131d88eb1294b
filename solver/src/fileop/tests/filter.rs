//! What a copy leaves out: `--exclude`, `.dockerignore` and `--parents` patterns.

use super::*;

fn exclude_action(src: CopySource, dest: &str, patterns: &[&str]) -> CopyAction {
    let mut a = action(vec![src], dest);
    a.exclude = patterns.iter().map(|p| p.to_string()).collect();
    a
}

fn ignoring(f: &mut Fx, patterns: &[&str]) {
    f.ignore = Some(Matcher::new(patterns).unwrap());
}

#[test]
fn exclude_patterns_match_below_the_source() {
    let f = fx();
    for p in [
        "src/a.js",
        "src/a.test.js",
        "src/lib/b.test.js",
        "src/__snapshots__/s",
    ] {
        write(&f.ctx, p, "x");
    }
    f.copy(exclude_action(
        ctx_src("/src"),
        "/app/",
        &["**/*.test.js", "**/__snapshots__"],
    ))
    .unwrap();
    assert_eq!(tree(&f.d("/app")), ["a.js", "lib/"]);
}

#[test]
fn exclude_with_an_exception_keeps_the_exception_and_its_parents() {
    let f = fx();
    for p in ["d/keep/yes.txt", "d/keep/no.txt", "d/other.txt"] {
        write(&f.ctx, p, "x");
    }
    f.copy(exclude_action(ctx_src("/d"), "/o", &["*", "!keep/yes.txt"]))
        .unwrap();
    assert_eq!(tree(&f.d("/o")), ["keep/", "keep/yes.txt"]);
}

#[test]
fn exclude_everything_leaves_an_empty_destination() {
    let f = fx();
    write(&f.ctx, "dir1/a", "x");
    f.copy(exclude_action(ctx_src("/dir*"), "/6", &["*"]))
        .unwrap();
    assert!(tree(&f.d("/6")).is_empty());
}

#[test]
fn dockerignored_files_do_not_exist() {
    let mut f = fx();
    write(&f.ctx, "secret.env", "s");
    write(&f.ctx, "app/main.rs", "m");
    write(&f.ctx, "app/target/big", "b");
    ignoring(&mut f, &["secret.env", "app/target"]);
    let err = f
        .copy(action(vec![ctx_src("/secret.env")], "/x"))
        .unwrap_err();
    assert_eq!(err.to_string(), "\"/secret.env\": not found");
    f.copy(action(vec![ctx_src("/")], "/ctx/")).unwrap();
    assert_eq!(tree(&f.d("/ctx")), ["app/", "app/main.rs"]);
    // Nor do wildcards see them.
    f.copy(action(vec![ctx_src("/sec*")], "/w/")).unwrap();
    assert!(!f.d("/w/secret.env").exists());
}

#[test]
fn dockerignore_exceptions_reinclude_below_excluded_directories() {
    let mut f = fx();
    for p in [
        "docs/a.md",
        "docs/keep/b.md",
        "docs/keep/c.txt",
        "README.md",
    ] {
        write(&f.ctx, p, "x");
    }
    ignoring(&mut f, &["docs", "!docs/keep/*.md"]);
    f.copy(action(vec![ctx_src("/")], "/c/")).unwrap();
    assert_eq!(
        tree(&f.d("/c")),
        ["README.md", "docs/", "docs/keep/", "docs/keep/b.md"]
    );
}

#[test]
fn a_symlink_to_an_ignored_file_leads_nowhere() {
    let mut f = fx();
    write(&f.ctx, "secret", "s");
    std::os::unix::fs::symlink("secret", f.ctx.join("innocent")).unwrap();
    ignoring(&mut f, &["secret"]);
    let err = f
        .copy(action(vec![ctx_src("/innocent")], "/x"))
        .unwrap_err();
    assert!(matches!(err, FileOpError::NotFound(_)), "{err}");
}

/// `COPY --parents <pattern> dest` as the front end lowers it.
fn parents_src(pivot: &str, pattern: &str, required: Option<&str>) -> CopySource {
    let mut s = ctx_src(pivot);
    s.include_patterns = vec![pattern.to_owned()];
    s.required_paths = required.map(|r| vec![r.to_owned()]).unwrap_or_default();
    s
}

#[test]
fn parents_keep_the_directory_structure() {
    let f = fx();
    for p in [
        "packages/a/package.json",
        "packages/a/index.js",
        "packages/b/package.json",
        "other/package.json",
    ] {
        write(&f.ctx, p, p);
    }
    let mut a = action(
        vec![parents_src("/", "packages/*/package.json", None)],
        "/app/",
    );
    a.parents = true;
    f.copy(a).unwrap();
    assert_eq!(
        tree(&f.d("/app")),
        [
            "packages/",
            "packages/a/",
            "packages/a/package.json",
            "packages/b/",
            "packages/b/package.json"
        ]
    );
}

#[test]
fn parents_below_a_pivot_and_required_paths() {
    let f = fx();
    write(&f.ctx, "src/x/y/z.txt", "z");
    let mut a = action(
        vec![parents_src("/src", "x/y/z.txt", Some("/src/x/y/z.txt"))],
        "/o/",
    );
    a.parents = true;
    f.copy(a.clone()).unwrap();
    assert_eq!(tree(&f.d("/o")), ["x/", "x/y/", "x/y/z.txt"]);
    a.sources = vec![parents_src("/src", "x/none.txt", Some("/src/x/none.txt"))];
    let err = f.copy(a).unwrap_err();
    assert_eq!(err.to_string(), "\"/src/x/none.txt\": not found");
}

#[test]
fn parent_directories_created_for_includes_keep_source_modes() {
    let f = fx();
    write(&f.ctx, "a/b/c.txt", "c");
    chmod(&f.ctx.join("a/b"), 0o750);
    let mut a = action(vec![parents_src("/", "a/b/c.txt", None)], "/o/");
    a.parents = true;
    f.copy(a).unwrap();
    assert_eq!(mode(&f.d("/o/a/b")), 0o750);
}
