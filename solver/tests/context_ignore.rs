//! `.dockerignore` semantics, restating the test tables of moby/patternmatcher
//! (`patternmatcher_test.go`: TestMatches, the multi-pattern cases, the Go
//! `filepath.Match` table it borrows as `matchTests`, and the New/cleaning tests), moby's
//! `ignorefile_test.go` (TestReadAll) and the examples of Docker's `.dockerignore` docs.

use rbuild_solver::context::{Matcher, PatternError, ignore_file_for, parse_ignore};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Want {
    Fail,
    Exact,
    Inexact,
}
use Want::*;

/// patternmatcher_test.go TestMatches: `Exact` matches the path itself (MatchesExact),
/// `Inexact` only through a parent directory (MatchesOrParentMatches).
const MATCHES: &[(&str, &str, Want)] = &[
    ("**", "file", Exact),
    ("**", "file/", Exact),
    ("**/", "file", Exact),
    ("**/", "file/", Exact),
    ("**", "/", Exact),
    ("**/", "/", Exact),
    ("**", "dir/file", Exact),
    ("**/", "dir/file", Exact),
    ("**", "dir/file/", Exact),
    ("**/", "dir/file/", Exact),
    ("**/**", "dir/file", Exact),
    ("**/**", "dir/file/", Exact),
    ("dir/**", "dir/file", Exact),
    ("dir/**", "dir/file/", Exact),
    ("dir/**", "dir/dir2/file", Exact),
    ("dir/**", "dir/dir2/file/", Exact),
    ("**/dir", "dir", Exact),
    ("**/dir", "dir/file", Inexact),
    ("**/dir2/*", "dir/dir2/file", Exact),
    ("**/dir2/*", "dir/dir2/file/", Inexact),
    ("**/dir2/**", "dir/dir2/dir3/file", Exact),
    ("**/dir2/**", "dir/dir2/dir3/file/", Exact),
    ("**file", "file", Exact),
    ("**file", "dir/file", Exact),
    ("**/file", "dir/file", Exact),
    ("**file", "dir/dir/file", Exact),
    ("**/file", "dir/dir/file", Exact),
    ("**/file*", "dir/dir/file", Exact),
    ("**/file*", "dir/dir/file.txt", Exact),
    ("**/file*txt", "dir/dir/file.txt", Exact),
    ("**/file*.txt", "dir/dir/file.txt", Exact),
    ("**/file*.txt*", "dir/dir/file.txt", Exact),
    ("**/**/*.txt", "dir/dir/file.txt", Exact),
    ("**/**/*.txt2", "dir/dir/file.txt", Fail),
    ("**/*.txt", "file.txt", Exact),
    ("**/**/*.txt", "file.txt", Exact),
    ("a**/*.txt", "a/file.txt", Exact),
    ("a**/*.txt", "a/dir/file.txt", Exact),
    ("a**/*.txt", "a/dir/dir/file.txt", Exact),
    ("a/*.txt", "a/dir/file.txt", Fail),
    ("a/*.txt", "a/file.txt", Exact),
    ("a/*.txt**", "a/file.txt", Exact),
    ("a[b-d]e", "ae", Fail),
    ("a[b-d]e", "ace", Exact),
    ("a[b-d]e", "aae", Fail),
    ("a[^b-d]e", "aze", Exact),
    (".*", ".foo", Exact),
    (".*", "foo", Fail),
    ("abc.def", "abcdef", Fail),
    ("abc.def", "abc.def", Exact),
    ("abc.def", "abcZdef", Fail),
    ("abc?def", "abcZdef", Exact),
    ("abc?def", "abcdef", Fail),
    ("**/foo/bar", "foo/bar", Exact),
    ("**/foo/bar", "dir/foo/bar", Exact),
    ("**/foo/bar", "dir/dir2/foo/bar", Exact),
    ("abc/**", "abc", Fail),
    ("abc/**", "abc/def", Exact),
    ("abc/**", "abc/def/ghi", Exact),
    ("**/.foo", ".foo", Exact),
    ("**/.foo", "bar.foo", Fail),
    ("a(b)c/def", "a(b)c/def", Exact),
    ("a(b)c/def", "a(b)c/xyz", Fail),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", Exact),
    (
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        Exact,
    ),
    (
        "dist/*.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        Exact,
    ),
    // The non-Windows additions of the same table.
    ("a\\\\", "a\\", Exact),
    ("a\\*b", "a*b", Exact),
];

#[test]
fn moby_matches_table() {
    for &(pattern, text, want) in MATCHES {
        let m = Matcher::new(&[pattern]).unwrap_or_else(|e| panic!("{pattern:?}: {e}"));
        assert_eq!(
            m.matches_exact(text),
            want == Exact,
            "MatchesExact pattern={pattern:?} text={text:?}"
        );
        assert_eq!(
            m.matches(text),
            want != Fail,
            "MatchesOrParentMatches pattern={pattern:?} text={text:?}"
        );
    }
}

#[test]
fn moby_multi_pattern_table() {
    let cases: &[(&[&str], &str, bool)] = &[
        (&["**", "!util/docker/web"], "util/docker/web/foo", false),
        (
            &["**", "!util/docker/web", "util/docker/web/foo"],
            "util/docker/web/foo",
            true,
        ),
        (
            &[
                "**",
                "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            ],
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            false,
        ),
        (
            &["**", "!dist/*.whl"],
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            false,
        ),
    ];
    for &(patterns, text, want) in cases {
        let m = Matcher::new(patterns).unwrap();
        assert_eq!(m.matches(text), want, "patterns={patterns:?} text={text:?}");
    }
}

/// The Go `filepath.Match` table moby runs through its matcher (`matchTests`); `None`
/// means the pattern is a syntax error.
#[test]
fn go_filepath_match_table() {
    let cases: &[(&str, &str, Option<bool>)] = &[
        ("abc", "abc", Some(true)),
        ("*", "abc", Some(true)),
        ("*c", "abc", Some(true)),
        ("a*", "a", Some(true)),
        ("a*", "abc", Some(true)),
        ("a*", "ab/c", Some(true)),
        ("a*/b", "abc/b", Some(true)),
        ("a*/b", "a/c/b", Some(false)),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", Some(true)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Some(true)),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Some(false)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Some(false)),
        ("a*b?c*x", "abxbbxdbxebxczzx", Some(true)),
        ("a*b?c*x", "abxbbxdbxebxczzy", Some(false)),
        ("ab[c]", "abc", Some(true)),
        ("ab[b-d]", "abc", Some(true)),
        ("ab[e-g]", "abc", Some(false)),
        ("ab[^c]", "abc", Some(false)),
        ("ab[^b-d]", "abc", Some(false)),
        ("ab[^e-g]", "abc", Some(true)),
        ("a\\*b", "a*b", Some(true)),
        ("a\\*b", "ab", Some(false)),
        ("a?b", "a☺b", Some(true)),
        ("a[^a]b", "a☺b", Some(true)),
        ("a???b", "a☺b", Some(false)),
        ("a[^a][^a][^a]b", "a☺b", Some(false)),
        ("[a-ζ]*", "α", Some(true)),
        ("*[a-ζ]", "A", Some(false)),
        ("a?b", "a/b", Some(false)),
        ("a*b", "a/b", Some(false)),
        ("[\\]a]", "]", Some(true)),
        ("[\\-]", "-", Some(true)),
        ("[x\\-]", "x", Some(true)),
        ("[x\\-]", "-", Some(true)),
        ("[x\\-]", "z", Some(false)),
        ("[\\-x]", "x", Some(true)),
        ("[\\-x]", "-", Some(true)),
        ("[\\-x]", "a", Some(false)),
        ("[]a]", "]", None),
        ("[-]", "-", None),
        ("[x-]", "x", None),
        ("[x-]", "-", None),
        ("[x-]", "z", None),
        ("[-x]", "x", None),
        ("[-x]", "-", None),
        ("[-x]", "a", None),
        ("\\", "a", None),
        ("[a-b-c]", "a", None),
        ("[", "a", None),
        ("[^", "a", None),
        ("[^bc", "a", None),
        ("a[", "a", None),
        ("a[", "ab", None),
        ("*x", "xxx", Some(true)),
    ];
    for &(pattern, text, want) in cases {
        match (Matcher::new(&[pattern]), want) {
            (Ok(m), Some(w)) => assert_eq!(m.matches(text), w, "pattern={pattern:?} text={text:?}"),
            (Err(e), None) => assert_eq!(e, PatternError::BadPattern(pattern.to_owned())),
            (res, _) => panic!("pattern={pattern:?}: got {res:?}, want {want:?}"),
        }
    }
}

#[test]
fn moby_new_and_matches_basics() {
    // TestWildcardMatches, TestPatternMatches and the exclusion-order tests.
    let one = |patterns: &[&str], path: &str| Matcher::new(patterns).unwrap().matches(path);
    assert!(one(&["*"], "fileutils.go"));
    assert!(one(&["*.go"], "fileutils.go"));
    assert!(one(&["!fileutils.go", "*.go"], "fileutils.go"));
    assert!(!one(&["*.go", "!fileutils.go"], "fileutils.go"));
    assert!(!one(&["docs", "!docs/README.md"], "docs/README.md"));
    assert!(!one(&["docs/", "!docs/README.md"], "docs/README.md"));
    assert!(!one(&["docs/*", "!docs/README.md"], "docs/README.md"));
    // The context root is never excluded.
    assert!(!one(&["*.go"], "."));
    assert!(!one(&["**"], "."));
    // No patterns match nothing.
    assert!(
        !Matcher::new::<&str>(&[])
            .unwrap()
            .matches("/any/path/there")
    );
    // TestSingleExclamationError, TestCleanPatternsErrorSingleException.
    assert_eq!(
        Matcher::new(&["!"]).unwrap_err(),
        PatternError::BareExclamation
    );
    // TestMatchesWithMalformedPatterns.
    assert!(Matcher::new(&["["]).is_err());
    // Empty patterns are dropped; surrounding spaces trimmed, exceptions still seen.
    let m = Matcher::new(&["docs", "config", ""]).unwrap();
    assert!(!m.has_exceptions());
    assert!(
        Matcher::new(&["docs", "  !docs/README.md"])
            .unwrap()
            .has_exceptions()
    );
    assert!(
        Matcher::new(&["docs", "!docs/README.md  "])
            .unwrap()
            .has_exceptions()
    );
    // Patterns are cleaned before matching.
    assert!(one(&["a/./b/../c//"], "a/c"));
}

#[test]
fn moby_quirks_kept() {
    // A leading `**` without a slash is a plain suffix test in moby.
    let m = Matcher::new(&["**foo"]).unwrap();
    assert!(m.matches("xfoo"));
    assert!(m.matches("a/bfoo"));
    // A trailing `/**` needs something below the directory.
    let m = Matcher::new(&["abc/**"]).unwrap();
    assert!(!m.matches("abc"));
    assert!(m.matches("abc/x"));
    // A pattern without `/` only matches at the top level.
    let m = Matcher::new(&["*.log"]).unwrap();
    assert!(m.matches("x.log"));
    assert!(!m.matches("sub/x.log"));
    // A reversed range is refused (Go's regexp refuses it when moby compiles).
    assert!(Matcher::new(&["[z-a]"]).is_err());
}

#[test]
fn docker_docs_examples() {
    let m = Matcher::from_ignore_text("# comment\n*/temp*\n*/*/temp*\ntemp?\n").unwrap();
    assert!(m.matches("somedir/temporary.txt"));
    assert!(m.matches("somedir/temp"));
    assert!(m.matches("somedir/subdir/temporary.txt"));
    assert!(m.matches("tempa"));
    assert!(m.matches("tempb"));
    assert!(!m.matches("temporary.txt"));
    assert!(!m.matches("a/b/c/temp"));

    let m = Matcher::from_ignore_text("*.md\n!README*.md\nREADME-secret.md\n").unwrap();
    assert!(m.matches("other.md"));
    assert!(!m.matches("README.md"));
    assert!(m.matches("README-secret.md"));

    let m = Matcher::from_ignore_text("*.md\nREADME-secret.md\n!README*.md\n").unwrap();
    assert!(!m.matches("README-secret.md"));
    assert!(!m.matches("README.md"));

    let m = Matcher::from_ignore_text("**/*.go\n").unwrap();
    assert!(m.matches("main.go"));
    assert!(m.matches("cmd/tool/main.go"));
    assert!(!m.matches("main.gox"));

    // A leading slash is the context root.
    let m = Matcher::from_ignore_text("/build\n").unwrap();
    assert!(m.matches("build"));
    assert!(m.matches("build/out.o"));
    assert!(!m.matches("src/build"));
}

#[test]
fn moby_read_all() {
    // ignorefile_test.go TestReadAll.
    let text = "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! \n";
    assert_eq!(
        parse_ignore(text),
        [
            "test1",
            "test2",
            "a/file/here",
            "lastfile",
            "!inverted/abs/path",
            "!",
            "!"
        ]
    );
    // ... and a bare `!` is refused when the matcher is built.
    assert_eq!(
        Matcher::from_ignore_text(text).unwrap_err(),
        PatternError::BareExclamation
    );
    // BOM on the first line only; `#` only as the first character is a comment.
    assert_eq!(
        parse_ignore("\u{feff}a\n  # not a comment\n\tb/../c/  \n/\n"),
        ["a", "# not a comment", "c", "/"]
    );
    assert_eq!(parse_ignore("\r\nx\r\n"), ["x"]);
}

#[test]
fn reinclude_walk_rule() {
    let m = Matcher::new(&["docs", "!docs/README.md"]).unwrap();
    assert!(m.matches("docs"));
    assert!(m.may_reinclude_below("docs"));
    assert!(!m.may_reinclude_below("other"));
    assert!(!m.matches("docs/README.md"));
    assert!(m.matches("docs/other.md"));

    let m = Matcher::new(&["docs"]).unwrap();
    assert!(!m.may_reinclude_below("docs"));

    // An exception with wildcards may match anything below.
    let m = Matcher::new(&["vendor", "!**/LICENSE"]).unwrap();
    assert!(m.may_reinclude_below("vendor"));
    assert!(!m.matches("vendor/x/LICENSE"));
    assert!(m.matches("vendor/x/main.c"));
}

#[test]
fn dockerfile_specific_ignore_file_wins() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    let df_dir = dir.path().join("df");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::create_dir_all(&df_dir).unwrap();
    let dockerfile = df_dir.join("app.Dockerfile");
    std::fs::write(&dockerfile, "FROM scratch\n").unwrap();
    assert_eq!(ignore_file_for(&ctx, &dockerfile), None);
    std::fs::write(ctx.join(".dockerignore"), "x\n").unwrap();
    assert_eq!(
        ignore_file_for(&ctx, &dockerfile),
        Some(ctx.join(".dockerignore"))
    );
    let specific = df_dir.join("app.Dockerfile.dockerignore");
    std::fs::write(&specific, "y\n").unwrap();
    assert_eq!(ignore_file_for(&ctx, &dockerfile), Some(specific));
    // A directory with the name is not an ignore file.
    let other = df_dir.join("Dockerfile");
    std::fs::create_dir(df_dir.join("Dockerfile.dockerignore")).unwrap();
    assert_eq!(
        ignore_file_for(&ctx, &other),
        Some(ctx.join(".dockerignore"))
    );
}

#[test]
fn long_patterns_are_bounded() {
    // Many stars: memoised, so no exponential backtracking on a failing match.
    let pattern = "*a".repeat(60);
    let m = Matcher::new(&[pattern.as_str()]).unwrap();
    assert!(m.matches(&"a".repeat(100)));
    assert!(!m.matches(&format!("{}b", "a".repeat(100))));
    // A long run of single-character tokens is matched without deep recursion.
    let literal = format!("{}?", "x".repeat(4000));
    let m = Matcher::new(&[literal.as_str()]).unwrap();
    assert!(m.matches(&"x".repeat(4001)));
    assert_eq!(
        Matcher::new(&["x".repeat(5000)]).unwrap_err(),
        PatternError::TooLong
    );
}

/// The walker's incremental form (ancestor results carried down) must agree with
/// moby's from-scratch MatchesOrParentMatches on every path.
#[test]
fn incremental_matching_equals_from_scratch() {
    let mut sets: Vec<Vec<&str>> = MATCHES.iter().map(|&(p, _, _)| vec![p]).collect();
    sets.extend([
        vec!["**", "!util/docker/web"],
        vec!["**", "!util/docker/web", "util/docker/web/foo"],
        vec!["docs", "!docs/README.md", "docs/README.md/x"],
        vec!["!a", "a/b", "!a/b/c", "*/b/*/d"],
        vec!["*.log", "!keep.log", "**/tmp", "!**/tmp/keep", "a/**"],
    ]);
    let mut paths: Vec<&str> = MATCHES.iter().map(|&(_, t, _)| t).collect();
    paths.extend([
        "util/docker/web/foo",
        "util/docker/web/foo/bar",
        "docs/README.md/x/y",
        "a/b/c/d",
        "x/b/y/d/e",
        "keep.log",
        "q/tmp/keep/z",
        "a",
        "dir/dir/file.txt/more",
    ]);
    for set in &sets {
        let m = Matcher::new(set).unwrap();
        for &path in &paths {
            let path = path.trim_end_matches('/');
            if path.is_empty() {
                continue;
            }
            let mut hits = m.ancestors_of_children(".");
            let comps: Vec<&str> = path.split('/').collect();
            for i in 1..comps.len() {
                hits = m.descend(&comps[..i].join("/"), &hits);
            }
            if let Some((parent, _)) = path.rsplit_once('/') {
                assert_eq!(hits, m.ancestors_of_children(parent), "{set:?} {path:?}");
            }
            assert_eq!(
                m.matches_child(path, &hits),
                m.matches(path),
                "patterns={set:?} path={path:?}"
            );
        }
    }
}
