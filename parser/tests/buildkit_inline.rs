//! Cases from the inline tables of BuildKit's parser and instruction tests
//! (`parser_test.go`, `parser_heredoc_test.go`, `directives_test.go`, `parse_test.go`),
//! restated here with our API. Where our AST differs on purpose it is said so.

use rbuild_parser::ast::{Command, CommandLine, HealthcheckCmd, NodeArgs};
use rbuild_parser::{parse, parse_raw};

#[test]
fn empty_continuation_lines_warn_exactly_twice() {
    let src = "\nFROM alpine:3.6\n\nRUN valid \\\n    continuation\n\nRUN something \\\n\n    following \\\n\n    more\n\nRUN another \\\n\n    thing\n\nRUN non-indented \\\n# this is a comment\n   after-comment\n\nRUN indented \\\n    # this is an indented comment\n    comment\n\t";
    let df = parse(src).unwrap();
    assert_eq!(df.warnings.len(), 2);
    assert!(df.warnings.iter().all(|w| w.rule == "NoEmptyContinuation"));
    assert!(
        df.warnings[0]
            .message
            .contains("Empty continuation line found in")
    );
    assert!(
        df.warnings[0]
            .message
            .contains("RUN something     following     more")
    );
    assert!(df.warnings[1].message.contains("RUN another     thing"));
    assert_eq!(df.warnings[0].span.line, 7);
}

#[test]
fn line_longer_than_64k_is_an_error() {
    let src = format!(
        "\n\t\tFROM image\n\t\tLABEL foo=bar {}\n",
        "a".repeat(64 * 1024)
    );
    let e = parse(&src).unwrap_err();
    assert_eq!(
        e.message,
        "dockerfile line greater than max allowed size of 65535"
    );
    assert_eq!(e.span.line, 3);
}

#[test]
fn directive_names_are_case_insensitive_and_stop_at_the_first_other_line() {
    let df = parse_raw("# EScape=`\n# KEY = FOO bar\n# syntax=x\nFROM a `\n  b\n").unwrap();
    assert_eq!(df.escape, '`');
    assert_eq!(df.directives.len(), 1);
    assert_eq!(df.nodes[0].dump(), r#"(from "a" "b")"#);
}

#[test]
fn byte_order_mark_is_ignored() {
    let df = parse("\u{feff}# escape=`\nFROM a\n").unwrap();
    assert_eq!(df.escape, '`');
    assert_eq!(df.nodes[0].keyword.text, "FROM");
}

/// TestParseExtractsHeredoc. BuildKit keeps the tabs of `<<-` bodies in the node and strips
/// them at dispatch; our `Heredoc::content` has them stripped already.
#[test]
fn heredocs_are_extracted_like_buildkit() {
    let src = r#"
FROM alpine:3.6

ENV NAME=me

RUN ls

USER <<INVALID
INVALID

RUN <<EMPTY
EMPTY

RUN 3<<EMPTY2
EMPTY2

RUN "<<NOHEREDOC"

RUN <<INDENT
	foo
	bar
INDENT

RUN <<-UNINDENT
	baz
	quux
UNINDENT

RUN <<-UNINDENT2
	baz
	quux
	UNINDENT2

RUN <<-EXPAND
	expand $NAME
EXPAND

RUN <<-'NOEXPAND'
	don't expand $NAME
NOEXPAND

RUN <<COPY
echo hello world
echo foo bar
COPY

RUN <<COMMENT
# internal comment
echo hello world
echo foo bar # trailing comment
COMMENT

RUN --mount=type=cache,target=/foo <<MOUNT
echo hello
MOUNT

COPY <<FILE1 <<FILE2 /dest
content 1
FILE1
content 2
FILE2

COPY <<EOF /quotes
"foo"
'bar'
EOF

COPY <<X <<Y /dest
Y
X
X
Y

RUN <<COMPLEX python3
print('hello world')
COMPLEX

COPY <<file.txt /dest
hello world
file.txt

RUN <<eo'f'
echo foo
eof

RUN <<eo\'f
echo foo
eo'f

RUN <<'e'o\'f
echo foo
eo'f

RUN <<'one two'
echo bar
one two

RUN <<$EOF
$EOF

RUN <<  EOF
EOF

RUN <<  EOF  > foo
EOF
	"#;
    type H = (String, String, bool, bool);
    let h = |n: &str, c: &str, e: bool, ch: bool| (n.to_string(), c.to_string(), e, ch);
    let want: Vec<Vec<H>> = vec![
        vec![],
        vec![],
        vec![],
        vec![],
        vec![h("EMPTY", "", true, false)],
        vec![h("EMPTY2", "", true, false)],
        vec![],
        vec![h("INDENT", "\tfoo\n\tbar\n", true, false)],
        vec![h("UNINDENT", "baz\nquux\n", true, true)],
        vec![h("UNINDENT2", "baz\nquux\n", true, true)],
        vec![h("EXPAND", "expand $NAME\n", true, true)],
        vec![h("NOEXPAND", "don't expand $NAME\n", false, true)],
        vec![h("COPY", "echo hello world\necho foo bar\n", true, false)],
        vec![h(
            "COMMENT",
            "# internal comment\necho hello world\necho foo bar # trailing comment\n",
            true,
            false,
        )],
        vec![h("MOUNT", "echo hello\n", true, false)],
        vec![
            h("FILE1", "content 1\n", true, false),
            h("FILE2", "content 2\n", true, false),
        ],
        vec![h("EOF", "\"foo\"\n'bar'\n", true, false)],
        vec![h("X", "Y\n", true, false), h("Y", "X\n", true, false)],
        vec![h("COMPLEX", "print('hello world')\n", true, false)],
        vec![h("file.txt", "hello world\n", true, false)],
        vec![h("eof", "echo foo\n", false, false)],
        vec![h("eo'f", "echo foo\n", true, false)],
        vec![h("eo'f", "echo foo\n", false, false)],
        vec![h("one two", "echo bar\n", false, false)],
        vec![h("$EOF", "", true, false)],
        vec![h("EOF", "", true, false)],
        vec![h("EOF", "", true, false)],
    ];
    // USER <<INVALID is not a heredoc instruction, so `INVALID` is an (unknown) instruction:
    // the raw parse accepts it, the typed parse does not.
    assert_eq!(
        parse(src).unwrap_err().message,
        "unknown instruction: INVALID"
    );
    let df = parse_raw(src).unwrap();
    assert_eq!(df.nodes.len(), want.len() + 1);
    for (i, want) in want.iter().enumerate() {
        let node = &df.nodes[i + 1];
        let got: Vec<H> = node
            .heredocs
            .iter()
            .map(|x| (x.name.clone(), x.content.clone(), x.expand, x.chomp))
            .collect();
        assert_eq!(&got, want, "node {} ({})", i + 1, node.original);
    }
}

#[test]
fn json_form_has_no_heredocs() {
    let df =
        parse("FROM alpine:3.6\nRUN [\"whoami\"]\nRUN [\"<<EOF\"]\nRUN [\"<<'EOF'\"]\n").unwrap();
    assert!(df.nodes.iter().all(|n| n.heredocs.is_empty()));
}

#[test]
fn argument_count_errors() {
    for cmd in ["MAINTAINER", "WORKDIR", "USER", "STOPSIGNAL"] {
        let e = parse(cmd).unwrap_err();
        assert_eq!(e.message, format!("{cmd} requires exactly one argument"));
    }
    for cmd in [
        "ENV",
        "LABEL",
        "ONBUILD",
        "HEALTHCHECK",
        "EXPOSE",
        "VOLUME",
        "ARG",
    ] {
        let e = parse(cmd).unwrap_err();
        assert_eq!(e.message, format!("{cmd} requires at least one argument"));
    }
    for cmd in ["ADD", "COPY"] {
        let e = parse(&format!("{cmd} arg1")).unwrap_err();
        assert_eq!(
            e.message,
            format!(
                "{cmd} requires at least two arguments, but only one was provided. Destination could not be determined"
            )
        );
    }
    for cmd in ["ENV", "LABEL"] {
        let e = parse(&format!("{cmd} =arg2")).unwrap_err();
        assert_eq!(e.message, format!("{cmd} names can not be blank"));
    }
}

#[test]
fn healthcheck_shell_and_intervals() {
    let df = parse("HEALTHCHECK CMD hello world").unwrap();
    let Command::Healthcheck(HealthcheckCmd::Cmd { cmd, .. }) = &df.instructions[0].command else {
        panic!("not a healthcheck: {:?}", df.instructions[0]);
    };
    assert!(matches!(cmd, CommandLine::Shell(w) if w.text == "hello world" && w.span.col == 17));
    let e = parse("HEALTHCHECK --interval=50ns CMD x").unwrap_err();
    assert!(
        e.message.contains("cannot be less than 1ms"),
        "{}",
        e.message
    );
    parse("HEALTHCHECK --interval=0ms CMD x").unwrap();
    parse("HEALTHCHECK --interval=1ms CMD x").unwrap();
    let e = parse("HEALTHCHECK --retries=-1 CMD x").unwrap_err();
    assert_eq!(e.message, "--retries cannot be negative (-1)");
}

#[test]
fn run_flags_are_typed() {
    let df = parse("RUN --mount=type=tmpfs,target=/foo/ echo hello").unwrap();
    let Command::Run(run) = &df.instructions[0].command else {
        panic!("not RUN")
    };
    assert_eq!(run.mounts.len(), 1);
    assert_eq!(run.mounts[0].text, "type=tmpfs,target=/foo/");
    assert_eq!(run.mounts[0].span.col, 5);
    assert!(matches!(&run.cmd, CommandLine::Shell(w) if w.text == "echo hello"));
}

#[test]
fn raw_parse_keeps_unknown_instructions_and_flags() {
    let df = parse_raw("FOO --x bar\nCOPY --nope a b\n").unwrap();
    assert_eq!(
        df.dump(),
        "(foo [\"--x\"])\n(copy [\"--nope\"] \"a\" \"b\")\n"
    );
    assert!(df.instructions.is_empty());
    assert!(matches!(df.nodes[0].args, NodeArgs::Empty));
}

#[test]
fn spans_of_words_on_continuation_lines_point_at_the_source() {
    let src = "FROM a\nCOPY --chown=1 \\\n     src \\\n  dst\n";
    let df = parse(src).unwrap();
    let Command::Copy(c) = &df.instructions[1].command else {
        panic!("not COPY")
    };
    assert_eq!((c.sources[0].span.line, c.sources[0].span.col), (3, 6));
    assert_eq!(&src[c.sources[0].span.start..c.sources[0].span.end], "src");
    assert_eq!((c.dest.span.line, c.dest.span.col), (4, 3));
    assert_eq!(&src[c.dest.span.start..c.dest.span.end], "dst");
    assert_eq!(df.instructions[1].span.end_line, 4);
    assert_eq!(df.instructions[1].original, "COPY --chown=1      src   dst");
}

#[test]
fn onbuild_trigger_text_includes_heredocs() {
    let df = parse("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\n").unwrap();
    let Command::Onbuild(inner) = &df.instructions[1].command else {
        panic!("not ONBUILD")
    };
    assert_eq!(inner.original, "RUN <<EOF\necho hi\nEOF");
    let Command::Run(run) = &inner.command else {
        panic!("trigger is not RUN")
    };
    assert_eq!(run.heredocs[0].content, "echo hi\n");
}

#[test]
fn hostile_nesting_is_an_error_not_a_crash() {
    let src = format!("FROM a\n{}RUN x\n", "ONBUILD ".repeat(5000));
    let e = parse_raw(&src).unwrap_err();
    assert_eq!(
        e.message,
        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
    );
    let src = format!("FROM a\nCMD {}\n", "[".repeat(60_000));
    let df = parse(&src).unwrap();
    assert!(matches!(df.nodes[1].args, NodeArgs::Shell(_)));
}
