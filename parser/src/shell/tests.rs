//! Unit tests of the expander: BuildKit's inline lexer tests (TestShellParserMandatoryEnvVars,
//! TestProcessWithMatches, TestProcessWithMatchesPlatform, TestReversePattern) and our own.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::pattern::reverse_pattern;
use super::{Env, Expanded, Lexer, ShellError};

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn word(input: &str, env: &[(&str, &str)]) -> Result<String, ShellError> {
    Lexer::new('\\').process_word(input, &env).map(|e| e.value)
}

fn words(input: &str, env: &[(&str, &str)]) -> Vec<String> {
    Lexer::new('\\')
        .process_words(input, &env)
        .expect("words expand")
        .value
}

#[test]
fn mandatory_env_vars() {
    let set = [("VAR", "plain"), ("ARG", "x")];
    let empty = [("VAR", ""), ("ARG", "x")];
    let unset = [("ARG", "x")];
    let no_empty = "${VAR:?message here$ARG}";
    let no_unset = "${VAR?message here$ARG}";
    let message_err = Err(ShellError::Required {
        name: "VAR".into(),
        message: "message herex".into(),
    });

    assert_eq!(word(no_empty, &set), Ok("plain".into()));
    assert_eq!(word(no_empty, &empty), message_err);
    assert_eq!(word(no_empty, &unset), message_err);

    assert_eq!(word(no_unset, &set), Ok("plain".into()));
    assert_eq!(word(no_unset, &empty), Ok(String::new()));
    assert_eq!(word(no_unset, &unset), message_err);

    let err = word(no_unset, &unset).unwrap_err();
    assert_eq!(err.to_string(), "VAR: message herex");
    assert_eq!(
        word("${VAR?}", &unset).unwrap_err().to_string(),
        "VAR: is not allowed to be unset"
    );
    assert_eq!(
        word("${VAR:?}", &unset).unwrap_err().to_string(),
        "VAR: is not allowed to be unset"
    );
    assert_eq!(
        word("${VAR:?}", &empty).unwrap_err().to_string(),
        "VAR: is not allowed to be empty"
    );
}

/// `(input, env, expected, matched, unmatched)`; `None` expects an error.
type MatchCase<'a> = (
    &'a str,
    &'a [(&'a str, &'a str)],
    Option<&'a str>,
    &'a [&'a str],
    &'a [&'a str],
);

/// BuildKit's TestProcessWithMatches table.
#[test]
fn process_with_matches() {
    let foo_bar: &[(&str, &str)] = &[("FOO", "xxx"), ("BAR", "")];
    let cases: &[MatchCase] = &[
        ("x", &[("DUMMY", "dummy")], Some("x"), &[], &[]),
        (
            "x ${UNUSED}",
            &[("DUMMY", "dummy")],
            Some("x "),
            &[],
            &["UNUSED"],
        ),
        ("x ${FOO}", &[("FOO", "y")], Some("x y"), &["FOO"], &[]),
        (
            "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}",
            foo_bar,
            Some("xxx  ccc"),
            &["FOO", "BAR"],
            &["BAZ"],
        ),
        (
            "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}",
            foo_bar,
            Some("xxx bbb ccc"),
            &["FOO", "BAR"],
            &["BAZ"],
        ),
        ("${FOO:-}", foo_bar, Some("xxx"), &["FOO"], &[]),
        ("${FOO:-}", &[], Some(""), &[], &["FOO"]),
        (
            "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}",
            foo_bar,
            Some("aaa bbb "),
            &["FOO", "BAR"],
            &["BAZ"],
        ),
        (
            "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}",
            foo_bar,
            Some("aaa  "),
            &["FOO", "BAR"],
            &["BAZ"],
        ),
        ("${FOO?aaa}", foo_bar, Some("xxx"), &["FOO"], &[]),
        ("${BAR?bbb}", foo_bar, Some(""), &["BAR"], &[]),
        ("${BAZ?ccc}", foo_bar, None, &[], &[]),
        ("${FOO:?aaa}", foo_bar, Some("xxx"), &["FOO"], &[]),
        ("${BAR:?bbb}", foo_bar, None, &[], &[]),
        ("${BAZ:?ccc}", foo_bar, None, &[], &[]),
        ("${BAZ:?}", foo_bar, None, &[], &[]),
        ("${FOO=aaa}", foo_bar, None, &[], &[]),
        ("${FOO=:aaa}", foo_bar, None, &[], &[]),
        ("${FOO=}", &[], None, &[], &[]),
        (
            "${FOO#()[]{\\}^$.\\*\\?|\\\\}",
            &[("FOO", "()[]{}^$.*?|\\x")],
            Some("x"),
            &["FOO"],
            &[],
        ),
        (
            "${FOO%%\\**}",
            &[("FOO", "xx**")],
            Some("xx"),
            &["FOO"],
            &[],
        ),
        ("${FOO#*x*y}", &[("FOO", "xxyy")], Some("y"), &["FOO"], &[]),
        ("${FOO#*}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
        (
            "${FOO#$BAR}",
            &[("FOO", "xxyy"), ("BAR", "x")],
            Some("xyy"),
            &["FOO", "BAR"],
            &[],
        ),
        (
            "${FOO#$BAR}",
            &[("FOO", "xxyy"), ("BAR", "")],
            Some("xxyy"),
            &["FOO", "BAR"],
            &[],
        ),
        ("${FOO#}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
        ("${FOO##*x}", &[("FOO", "xxyy")], Some("yy"), &["FOO"], &[]),
        ("${FOO##}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
        ("${FOO#?\\?}", &[("FOO", "???y")], Some("?y"), &["FOO"], &[]),
        (
            "${ABC:-.}${FOO%x}${ABC:-.}",
            &[("FOO", "xxyy")],
            Some(".xxyy."),
            &["FOO"],
            &["ABC"],
        ),
        (
            "${FOO%%\\**\\*}",
            &[("FOO", "a***yy*")],
            Some("a"),
            &["FOO"],
            &[],
        ),
        ("${FOO%}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
        (
            "${FOO%%$BAR}",
            &[("FOO", "xxyy"), ("BAR", "")],
            Some("xxyy"),
            &["FOO", "BAR"],
            &[],
        ),
        ("${FOO:#}", &[], None, &[], &[]),
        ("${FOO:##}", &[], None, &[], &[]),
        ("${FOO:%}", &[], None, &[], &[]),
        ("${FOO:%%}", &[], None, &[], &[]),
        (
            "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
            &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")],
            Some("/foo.*/*.txt - /foo..*.txt"),
            &["FOO", "NEEDLE"],
            &[],
        ),
        (
            "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
            &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
            Some("/tmp/bar.txt - /bar.txt"),
            &["FOO", "NEEDLE"],
            &[],
        ),
        (
            "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
            &[
                ("FOO", "/a/foo/b/c.txt"),
                ("NEEDLE", "/?/"),
                ("REPLACEMENT", "/"),
            ],
            Some("/foo/b/c.txt - /foo/c.txt"),
            &["FOO", "NEEDLE", "REPLACEMENT"],
            &[],
        ),
        (
            "${FOO/$NEEDLE/$REPLACEMENT}",
            &[
                ("FOO", "http://google.de"),
                ("NEEDLE", "http://"),
                ("REPLACEMENT", "https://"),
            ],
            Some("https://google.de"),
            &["FOO", "NEEDLE", "REPLACEMENT"],
            &[],
        ),
        (
            "${FOO//\\//\\/}",
            &[("FOO", "/tmp/foo.txt")],
            Some("\\/tmp\\/foo.txt"),
            &["FOO"],
            &[],
        ),
        (
            "${FOO/$BAR/ww}",
            &[("FOO", "xxyy"), ("BAR", "")],
            Some("wwxxyy"),
            &["FOO", "BAR"],
            &[],
        ),
        ("${FOO//ww}", &[("FOO", "xxyy")], None, &[], &[]),
        ("${FOO//}", &[("FOO", "xxyy")], None, &[], &[]),
        ("${FOO///}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
        ("${FOO///}", &[], Some(""), &[], &["FOO"]),
    ];
    for &(input, env, expected, matched, unmatched) in cases {
        let got = Lexer::new('\\').process_word(input, &env);
        match expected {
            None => assert!(got.is_err(), "{input:?} should fail, got {got:?}"),
            Some(expected) => assert_eq!(
                got,
                Ok(Expanded {
                    value: expected.to_owned(),
                    matched: names(matched),
                    unmatched: names(unmatched),
                }),
                "{input:?}"
            ),
        }
    }
}

#[test]
fn process_with_matches_platform() {
    let release =
        "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
    let base = [("VERSION", "v1.2.3"), ("TARGETOS", "linux")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let env: Vec<(&str, &str)> = base.iter().chain(extra).copied().collect();
        Lexer::new('\\')
            .process_word(release, &env)
            .expect("expands")
    };
    let arm = with(&[("TARGETARCH", "arm"), ("TARGETVARIANT", "v7")]);
    assert_eq!(arm.value, "something-v1.2.3.linux-arm-v7.tar.gz");
    assert_eq!(
        arm.matched,
        names(&["TARGETARCH", "TARGETOS", "TARGETVARIANT", "VERSION"])
    );
    let empty = with(&[("TARGETARCH", "arm64"), ("TARGETVARIANT", "")]);
    assert_eq!(empty.value, "something-v1.2.3.linux-arm64.tar.gz");
    let unset = with(&[("TARGETARCH", "arm64")]);
    assert_eq!(unset.value, "something-v1.2.3.linux-arm64.tar.gz");
    assert_eq!(unset.unmatched, names(&["TARGETVARIANT"]));
}

#[test]
fn reverse_pattern_keeps_escape_pairs() {
    let cases = [
        ("a\\*c", "c\\*a"),
        ("\\\\\\ab", "b\\a\\\\"),
        ("ab\\", "\\ba"),
        ("👽\\🚀🖖", "🖖\\🚀👽"),
        ("\\\\b", "b\\\\"),
    ];
    for (pattern, expected) in cases {
        let chars: Vec<char> = pattern.chars().collect();
        let got: String = reverse_pattern(&chars).into_iter().collect();
        assert_eq!(got, expected, "{pattern:?}");
    }
}

#[test]
fn pattern_removal_and_replacement() {
    let env = [
        ("F", "file.tar.gz"),
        ("B", "[a]b"),
        ("NL", "a\nb"),
        ("P", "/usr/local/bin"),
    ];
    let cases = [
        ("${F%.*}", "file.tar"),
        ("${F%%.*}", "file"),
        ("${F#*.}", "tar.gz"),
        ("${F##*.}", "gz"),
        ("${F#f?l}", "e.tar.gz"),
        ("${F%.t*}", "file"),
        ("${F#nomatch}", "file.tar.gz"),
        ("${F/?/X}", "Xile.tar.gz"),
        ("${F//./_}", "file_tar_gz"),
        ("${F/.*/}", "file"),
        ("${F//*/x}", "x"),
        ("${F//q/x}", "file.tar.gz"),
        // BuildKit has no bracket expressions and no `/#`, `/%` anchors: they are literal.
        ("${B//[a]/x}", "xb"),
        ("${F/#f/X}", "file.tar.gz"),
        // As in Go's regexp, `*` and `?` do not match a newline.
        ("${NL##*}", "\nb"),
        ("${NL#a?}", "a\nb"),
        ("${P##*/}", "bin"),
        ("${P%/*}", "/usr/local"),
        ("${P//\\//:}", ":usr:local:bin"),
        // Quotes and variables inside the pattern.
        ("${F%\".gz\"}", "file.tar"),
        ("${F%'*'}", "file.tar.gz"),
        ("${P#$P}", ""),
        // `$0` in a replace-all replacement is Go's whole-match template (BuildKit quirk).
        ("${F//a/[\\$0]}", "file.t[\\a]r.gz"),
        ("${F/a/[\\$0]}", "file.t[\\$0]r.gz"),
    ];
    for (input, expected) in cases {
        assert_eq!(word(input, &env), Ok(expected.to_owned()), "{input:?}");
    }
}

#[test]
fn pattern_errors() {
    let env = [("F", "x")];
    assert_eq!(
        word("${F#\\x}", &env),
        Err(ShellError::InvalidPattern {
            pattern: "\\x".into(),
            escaped: "x".into()
        })
    );
    assert_eq!(
        word("${F#\\x}", &env).unwrap_err().to_string(),
        "invalid pattern (\\x) in substitution: invalid escape '\\x'"
    );
    assert!(word("${F%a\\b}", &env).is_err());
    assert!(word("${F/\\q/x}", &env).is_err());
    assert!(word("${F//\\q/x}", &env).is_err());
}

#[test]
fn error_messages() {
    let cases = [
        (
            "he'llo",
            "unexpected end of statement while looking for matching single-quote",
        ),
        (
            "\"hello",
            "unexpected end of statement while looking for matching double-quote",
        ),
        ("he${PWD", "syntax error: missing '}'"),
        ("${", "syntax error: missing '}'"),
        ("${X:-'abc}", "syntax error: missing '}'"),
        ("${X:", "syntax error: missing '}'"),
        ("${}", "syntax error: bad substitution"),
        ("${:-x}", "syntax error: bad substitution"),
        ("${X:-${}}", "syntax error: bad substitution"),
        ("${X:=y}", "unsupported modifier (:=) in substitution"),
        ("${X=y}", "unsupported modifier (=) in substitution"),
        ("${X:#y}", "unsupported modifier (:#) in substitution"),
        ("${X//a}", "syntax error: missing '/' in ${}"),
        ("${X/a/b", "syntax error: missing '}'"),
    ];
    for (input, message) in cases {
        let err = word(input, &[]).expect_err(input);
        assert_eq!(err.to_string(), message, "{input:?}");
    }
}

#[test]
fn matched_and_unmatched_names() {
    let env = [("A", "a"), ("E", "")];
    let expand = |input: &str| Lexer::new('\\').process_word(input, &env).expect(input);
    let check = |input: &str, value: &str, matched: &[&str], unmatched: &[&str]| {
        let got = expand(input);
        assert_eq!(got.value, value, "{input:?}");
        assert_eq!(got.matched, names(matched), "{input:?} matched");
        assert_eq!(got.unmatched, names(unmatched), "{input:?} unmatched");
    };
    check("$A$B", "a", &["A"], &["B"]);
    check("\"$A\" '$B' \\$C", "a $B $C", &["A"], &[]);
    // The nested word is expanded (and its names recorded) even when it is not used.
    check("${A:-$B}", "a", &["A"], &["B"]);
    check("${B:+${A}}", "", &["A"], &["B"]);
    check("${E:-x}${E-y}", "x", &["E"], &[]);
    check("${A#$E}${A/$B/$C}", "aa", &["A", "E"], &["B", "C"]);
    // Positional and special parameters are looked up (and never set).
    check("$1$@${#}$$", "", &[], &["#", "$", "1", "@"]);
    check("$", "$", &[], &[]);
    check("$.", "$.", &[], &[]);
    let words = Lexer::new('\\')
        .process_words("$A ${B:-x} y", &env)
        .expect("words");
    assert_eq!(words.value, ["a", "x", "y"]);
    assert_eq!(words.matched, names(&["A"]));
    assert_eq!(words.unmatched, names(&["B"]));
}

#[test]
fn backtick_escape() {
    let lexer = Lexer::new('`');
    let env = [("X", "v")];
    let expand = |input: &str| lexer.process_word(input, &env).map(|e| e.value);
    assert_eq!(lexer.escape(), '`');
    assert_eq!(expand("C:\\path\\to"), Ok("C:\\path\\to".into()));
    assert_eq!(expand("a`$X"), Ok("a$X".into()));
    assert_eq!(expand("a`` b"), Ok("a` b".into()));
    assert_eq!(expand("\"a`\"b\""), Ok("a\"b".into()));
    assert_eq!(expand("\"a\\\""), Ok("a\\".into()));
    assert_eq!(expand("\"``\""), Ok("`".into()));
    assert_eq!(expand("\"`a\""), Ok("`a".into()));
    assert_eq!(expand("abc`"), Ok("abc".into()));
    assert_eq!(expand("${Y:-`}}"), Ok("}".into()));
    assert_eq!(expand("c:\\$X\\"), Ok("c:\\v\\".into()));
    let split = lexer.process_words("a` b c\\ d", &env).expect("words");
    assert_eq!(split.value, ["a b", "c\\", "d"]);
}

#[test]
fn unicode_input() {
    let env = [("KOREAN", "한국어"), ("이름", "값")];
    assert_eq!(word("${KOREAN#한}", &env), Ok("국어".into()));
    assert_eq!(word("${KOREAN%어}", &env), Ok("한국".into()));
    assert_eq!(word("${KOREAN#?}", &env), Ok("국어".into()));
    assert_eq!(word("${KOREAN%%?*}", &env), Ok(String::new()));
    assert_eq!(word("${KOREAN/국/-}", &env), Ok("한-어".into()));
    assert_eq!(word("${KOREAN//?/x}", &env), Ok("xxx".into()));
    // Letters of any script make names, as in BuildKit.
    assert_eq!(word("$이름!", &env), Ok("값!".into()));
    assert_eq!(word("$KOREAN안녕", &env), Ok(String::new()));
    assert_eq!(word("👽'🚀'\\🖖", &env), Ok("👽🚀🖖".into()));
    assert_eq!(
        word("\"👽\\", &env),
        Err(ShellError::UnterminatedDoubleQuote)
    );
    // A leading byte-order mark is dropped (Go's text/scanner does), elsewhere kept.
    assert_eq!(word("\u{feff}a\u{feff}", &env), Ok("a\u{feff}".into()));
}

#[test]
fn word_splitting() {
    let env = [("S", " a  b "), ("E", "")];
    assert_eq!(words("a \"\" b", &env), ["a", "b"]);
    assert_eq!(words("x${S}y", &env), ["x", "a", "b", "y"]);
    assert_eq!(words("x\"${S}\"y", &env), ["x a  b y"]);
    assert_eq!(words("  ", &env), Vec::<String>::new());
    assert_eq!(words("$E", &env), Vec::<String>::new());
    assert_eq!(words("a\tb\nc", &env), ["a", "b", "c"]);
    // Blanks after `<<` stay with the heredoc marker.
    assert_eq!(words("cat << EOF", &env), ["cat", "<< EOF"]);
    assert_eq!(words("a<b", &env), ["a<b"]);
    // Text before a `${...}` with a nested word is kept (BuildKit loses it, see module docs).
    assert_eq!(words("x a${X:-b} c", &env), ["x", "ab", "c"]);
    assert!(Lexer::new('\\').process_words("a 'b", &env).is_err());
}

#[test]
fn lexer_switches() {
    let env = [("PWD", "/home")];
    let mut lexer = Lexer::new('\\');
    lexer.skip_unset_env = true;
    let got = lexer
        .process_word("$X ${Y} ${Z:-d} ${W/a/b} ${V//c/d} $PWD", &env)
        .expect("expands");
    assert_eq!(got.value, "$X ${Y} ${Z:-d} ${W/a/b} ${V/c/d} /home");
    assert_eq!(got.unmatched, names(&["V", "W", "X", "Y", "Z"]));

    let mut lexer = Lexer::new('\\');
    lexer.raw_quotes = true;
    assert_eq!(
        lexer
            .process_word("'a'\"$PWD\"", &env)
            .expect("raw quotes")
            .value,
        "'a'\"/home\""
    );

    let mut lexer = Lexer::new('\\');
    lexer.raw_escapes = true;
    assert_eq!(
        lexer
            .process_word("a\\ b\\$PWD\"\\x\\\"\"", &env)
            .expect("raw escapes")
            .value,
        // In double quotes an escape before an ordinary character is written twice
        // (kept raw, then kept literally), as BuildKit does.
        "a\\ b\\$PWD\\\\x\\\""
    );

    let mut lexer = Lexer::new('\\');
    lexer.skip_process_quotes = true;
    assert_eq!(
        lexer
            .process_word("'$PWD\"", &env)
            .expect("no quotes")
            .value,
        "'/home\""
    );
}

#[test]
fn env_implementations() {
    fn lookup(env: &dyn Env, name: &str) -> Option<String> {
        env.get(name).map(str::to_owned)
    }
    let btree: BTreeMap<String, String> = [("A".to_owned(), "1".to_owned())].into();
    let hash: HashMap<String, String> = [("A".to_owned(), "1".to_owned())].into();
    let pairs = vec![
        ("A".to_owned(), "1".to_owned()),
        ("A".to_owned(), "2".to_owned()),
    ];
    let slice: &[(&str, &str)] = &[("A", "1"), ("A", "3")];
    assert_eq!(lookup(&btree, "A").as_deref(), Some("1"));
    assert_eq!(lookup(&hash, "A").as_deref(), Some("1"));
    assert_eq!(lookup(&pairs, "A").as_deref(), Some("2"));
    assert_eq!(lookup(&slice, "A").as_deref(), Some("3"));
    assert_eq!(lookup(&slice, "a"), None);
    assert_eq!(lookup(&[("A", "")], "A").as_deref(), Some(""));
}

/// Every short word over the characters that matter expands or fails cleanly, and a word
/// without any special character comes out unchanged.
#[test]
fn short_words_never_panic() {
    let alphabet = [
        '$', '{', '}', ':', '-', '+', '?', '#', '%', '/', '\\', '`', '"', '\'', '*', 'a', ' ',
        '한', '<', '1',
    ];
    let env = [("a", "x y"), ("1", "")];
    let lexers = [Lexer::new('\\'), Lexer::new('`')];
    let mut word = String::new();
    for a in alphabet {
        for b in alphabet {
            for c in alphabet {
                word.clear();
                word.extend([a, b, c]);
                for lexer in &lexers {
                    let single = lexer.process_word(&word, &env);
                    let split = lexer.process_words(&word, &env);
                    assert_eq!(single.is_ok(), split.is_ok(), "{word:?}");
                    let plain = word.chars().all(|ch| {
                        matches!(
                            ch,
                            'a' | '*'
                                | '한'
                                | '1'
                                | ':'
                                | '-'
                                | '+'
                                | '?'
                                | '#'
                                | '%'
                                | '/'
                                | '{'
                                | '}'
                        )
                    });
                    if plain {
                        assert_eq!(single.as_ref().map(|e| e.value.as_str()), Ok(word.as_str()));
                    }
                }
            }
        }
    }
}

#[test]
fn nesting_is_bounded() {
    let nest = |depth: usize| format!("{}x{}", "${A:-".repeat(depth), "}".repeat(depth));
    let limit = super::expand::MAX_NESTING;
    assert_eq!(word(&nest(limit), &[]), Ok("x".into()));
    assert_eq!(word(&nest(limit + 1), &[]), Err(ShellError::TooDeep(limit)));
    // Far deeper input fails cleanly instead of exhausting the stack.
    assert!(word(&nest(100_000), &[]).is_err());
    assert!(word(&"${A/".repeat(100_000), &[]).is_err());
}
