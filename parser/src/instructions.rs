//! Typed instructions from raw nodes (BuildKit's `instructions.Parse` checks): argument
//! counts, known flags and their types, HEALTHCHECK durations, ONBUILD triggers, heredoc
//! sources.

use crate::ParseError;
use crate::ast::{
    ArgDecl, Command, CommandLine, CopyCmd, Flag, FromCmd, HealthcheckCmd, Heredoc, Instruction,
    KeyValue, RunCmd, Span, Word,
};
use crate::dump::go_quote;
use crate::heredoc::parse_marker;
use crate::nodes::RawNode;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Str,
    Strings,
}

/// The flags an instruction used, by name, validated against what it accepts.
#[derive(Debug, Default)]
struct Flags<'a> {
    used: BTreeMap<&'a str, Vec<&'a Flag>>,
}

impl Flags<'_> {
    /// The value of a string flag (the last use).
    fn string(&self, name: &str) -> Option<Word> {
        self.used.get(name).and_then(|v| v.last()).map(|f| Word {
            text: f.value.clone().unwrap_or_default(),
            span: f.span,
        })
    }

    fn strings(&self, name: &str) -> Vec<Word> {
        self.used
            .get(name)
            .map(|v| {
                v.iter()
                    .map(|f| Word {
                        text: f.value.clone().unwrap_or_default(),
                        span: f.span,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A boolean flag, normalised to `true` / `false`.
    fn boolean(&self, name: &str) -> Option<Word> {
        self.used.get(name).and_then(|v| v.last()).map(|f| {
            let on = f
                .value
                .as_deref()
                .is_none_or(|v| !v.eq_ignore_ascii_case("false"));
            Word {
                text: on.to_string(),
                span: f.span,
            }
        })
    }
}

fn error(message: impl Into<String>, span: Span) -> ParseError {
    ParseError {
        message: message.into(),
        span,
    }
}

/// BuildKit's `BFlags.Parse`.
fn parse_flags<'a>(flags: &'a [Flag], allowed: &[(&str, Kind)]) -> Result<Flags<'a>, ParseError> {
    let mut out = Flags::default();
    for f in flags {
        let flag_name = format!("--{}", f.name);
        let Some(&(_, kind)) = allowed.iter().find(|(n, _)| *n == f.name) else {
            return Err(error(format!("unknown flag: {flag_name}"), f.span));
        };
        let uses = out.used.entry(f.name.as_str()).or_default();
        if !uses.is_empty() && kind != Kind::Strings {
            return Err(error(
                format!("duplicate flag specified: {flag_name}"),
                f.span,
            ));
        }
        match (kind, f.value.as_deref()) {
            (Kind::Bool, Some("")) => {
                return Err(error(
                    format!("missing a value on flag: {flag_name}"),
                    f.span,
                ));
            }
            (Kind::Bool, Some(v))
                if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") =>
            {
                return Err(error(
                    format!("expecting boolean value for flag {flag_name}, not: {v}"),
                    f.span,
                ));
            }
            (Kind::Str | Kind::Strings, None) => {
                return Err(error(
                    format!("missing a value on flag: {flag_name}"),
                    f.span,
                ));
            }
            _ => {}
        }
        uses.push(f);
    }
    Ok(out)
}

/// Converts every raw node; the first error wins.
pub(crate) fn convert_all(nodes: &[RawNode]) -> Result<Vec<Instruction>, ParseError> {
    nodes.iter().map(|n| convert(n, &n.node.heredocs)).collect()
}

fn at_least_one(name: &str, raw: &RawNode) -> ParseError {
    error(
        format!("{name} requires at least one argument"),
        raw.node.span,
    )
}

fn exactly_one(name: &str, raw: &RawNode) -> ParseError {
    error(
        format!("{name} requires exactly one argument"),
        raw.node.span,
    )
}

/// Exec form (JSON) or shell form (the arguments joined with spaces).
fn command_line(raw: &RawNode, args: &[Word]) -> CommandLine {
    if raw.json {
        return CommandLine::Exec(args.to_vec());
    }
    match args {
        [] => CommandLine::Shell(Word {
            text: String::new(),
            span: Span {
                start: raw.node.span.end,
                end: raw.node.span.end,
                ..raw.node.span
            },
        }),
        [one] => CommandLine::Shell(one.clone()),
        many => CommandLine::Shell(Word {
            text: many
                .iter()
                .map(|w| w.text.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            span: Span {
                end: many[many.len() - 1].span.end,
                end_line: many[many.len() - 1].span.end_line,
                ..many[0].span
            },
        }),
    }
}

fn is_empty_command(cmd: &CommandLine) -> bool {
    match cmd {
        CommandLine::Exec(v) => v.is_empty(),
        CommandLine::Shell(w) => w.text.is_empty(),
    }
}

fn convert(raw: &RawNode, heredocs: &[Heredoc]) -> Result<Instruction, ParseError> {
    let node = &raw.node;
    let args = &raw.args;
    let command = match raw.command().as_str() {
        "from" => Command::From(from(raw)?),
        "run" => {
            let f = parse_flags(
                &node.flags,
                &[
                    ("mount", Kind::Strings),
                    ("network", Kind::Str),
                    ("security", Kind::Str),
                ],
            )?;
            let network = f.string("network");
            if let Some(n) = &network
                && !matches!(n.text.as_str(), "default" | "none" | "host")
            {
                return Err(error(
                    format!("invalid network mode {}", go_quote(&n.text)),
                    n.span,
                ));
            }
            let security = f.string("security");
            if let Some(s) = &security
                && !matches!(s.text.as_str(), "sandbox" | "insecure")
            {
                return Err(error(
                    format!("security {} is not valid", go_quote(&s.text)),
                    s.span,
                ));
            }
            Command::Run(RunCmd {
                mounts: f.strings("mount"),
                network,
                security,
                cmd: command_line(raw, args),
                heredocs: heredocs.to_vec(),
            })
        }
        "cmd" => {
            parse_flags(&node.flags, &[])?;
            Command::Cmd(command_line(raw, args))
        }
        "entrypoint" => {
            parse_flags(&node.flags, &[])?;
            Command::Entrypoint(command_line(raw, args))
        }
        "shell" => {
            parse_flags(&node.flags, &[])?;
            let cmd = command_line(raw, args);
            if is_empty_command(&cmd) {
                return Err(at_least_one("SHELL", raw));
            }
            match cmd {
                CommandLine::Exec(v) => Command::Shell(v),
                CommandLine::Shell(_) => {
                    return Err(error(
                        "SHELL requires the arguments to be in JSON form",
                        node.span,
                    ));
                }
            }
        }
        "env" => {
            parse_flags(&node.flags, &[])?;
            Command::Env(key_values(raw, "ENV")?)
        }
        "label" => {
            parse_flags(&node.flags, &[])?;
            Command::Label(key_values(raw, "LABEL")?)
        }
        "maintainer" => {
            let [who] = args.as_slice() else {
                return Err(exactly_one("MAINTAINER", raw));
            };
            parse_flags(&node.flags, &[])?;
            Command::Maintainer(who.clone())
        }
        "add" => Command::Add(copy(raw, "ADD", heredocs)?),
        "copy" => Command::Copy(copy(raw, "COPY", heredocs)?),
        "onbuild" => onbuild(raw, heredocs)?,
        "workdir" => {
            let [dir] = args.as_slice() else {
                return Err(exactly_one("WORKDIR", raw));
            };
            parse_flags(&node.flags, &[])?;
            Command::Workdir(dir.clone())
        }
        "healthcheck" => Command::Healthcheck(healthcheck(raw)?),
        "expose" => {
            if args.is_empty() {
                return Err(at_least_one("EXPOSE", raw));
            }
            parse_flags(&node.flags, &[])?;
            Command::Expose(args.clone())
        }
        "user" => {
            let [user] = args.as_slice() else {
                return Err(exactly_one("USER", raw));
            };
            parse_flags(&node.flags, &[])?;
            Command::User(user.clone())
        }
        "volume" => {
            if args.is_empty() {
                return Err(at_least_one("VOLUME", raw));
            }
            parse_flags(&node.flags, &[])?;
            let mut volumes = Vec::new();
            for v in args {
                let text = v.text.trim();
                if text.is_empty() {
                    return Err(error("VOLUME specified can not be an empty string", v.span));
                }
                volumes.push(Word {
                    text: text.to_string(),
                    span: v.span,
                });
            }
            Command::Volume(volumes)
        }
        "stopsignal" => {
            let [sig] = args.as_slice() else {
                return Err(exactly_one("STOPSIGNAL", raw));
            };
            parse_flags(&node.flags, &[])?;
            Command::StopSignal(sig.clone())
        }
        "arg" => {
            if args.is_empty() {
                return Err(at_least_one("ARG", raw));
            }
            parse_flags(&node.flags, &[])?;
            let mut decls = Vec::new();
            for a in args {
                decls.push(match a.text.split_once('=') {
                    Some(("", _)) => return Err(error("ARG names can not be blank", a.span)),
                    Some((k, _)) => ArgDecl {
                        name: sub_word(a, 0, k.len()),
                        default: Some(sub_word(a, k.len() + 1, a.text.len())),
                    },
                    None => ArgDecl {
                        name: a.clone(),
                        default: None,
                    },
                });
            }
            Command::Arg(decls)
        }
        _ => {
            return Err(error(
                format!("unknown instruction: {}", node.keyword.text),
                node.keyword.span,
            ));
        }
    };
    Ok(Instruction {
        keyword: node.keyword.clone(),
        span: node.span,
        original: node.original.clone(),
        command,
    })
}

/// A part of a word written without quotes or escapes before `from` (ARG `k=v`): the
/// span is narrowed when the word lies on one line.
fn sub_word(w: &Word, from: usize, to: usize) -> Word {
    let text = w.text[from..to].to_string();
    let mut span = w.span;
    if span.line == span.end_line && span.end - span.start == w.text.len() {
        span.start = w.span.start + from;
        span.end = w.span.start + to;
        span.col = w.span.col + w.text[..from].chars().count();
    }
    Word { text, span }
}

fn from(raw: &RawNode) -> Result<FromCmd, ParseError> {
    let args = &raw.args;
    let (alias, as_keyword) = match args.as_slice() {
        [_, as_kw, name] if as_kw.text.eq_ignore_ascii_case("as") => {
            let lower = name.text.to_lowercase();
            let valid = lower.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && lower.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
                });
            if !valid {
                return Err(error(
                    format!(
                        "invalid name for build stage: {}, name can't start with a number or contain symbols",
                        go_quote(&name.text)
                    ),
                    name.span,
                ));
            }
            (Some(name.clone()), Some(as_kw.clone()))
        }
        [_] => (None, None),
        _ => {
            return Err(error(
                "FROM requires either one or three arguments",
                raw.node.span,
            ));
        }
    };
    let f = parse_flags(&raw.node.flags, &[("platform", Kind::Str)])?;
    Ok(FromCmd {
        platform: f.string("platform"),
        image: args[0].clone(),
        alias,
        as_keyword,
    })
}

fn key_values(raw: &RawNode, name: &str) -> Result<Vec<KeyValue>, ParseError> {
    let args = &raw.args;
    if args.is_empty() {
        return Err(at_least_one(name, raw));
    }
    if !args.len().is_multiple_of(3) {
        return Err(error(
            format!("Bad input to {name}, too many arguments"),
            raw.node.span,
        ));
    }
    let mut out = Vec::new();
    for t in args.chunks(3) {
        if t[0].text.is_empty() {
            return Err(error(format!("{name} names can not be blank"), t[0].span));
        }
        out.push(KeyValue {
            key: t[0].clone(),
            value: t[1].clone(),
            legacy: t[2].text.is_empty(),
        });
    }
    Ok(out)
}

fn copy(raw: &RawNode, name: &str, heredocs: &[Heredoc]) -> Result<CopyCmd, ParseError> {
    let args = &raw.args;
    if args.len() < 2 {
        return Err(error(
            format!(
                "{name} requires at least two arguments, but only one was provided. Destination could not be determined"
            ),
            raw.node.span,
        ));
    }
    let allowed: &[(&str, Kind)] = if name == "ADD" {
        &[
            ("chown", Kind::Str),
            ("chmod", Kind::Str),
            ("link", Kind::Bool),
            ("keep-git-dir", Kind::Bool),
            ("checksum", Kind::Str),
            ("unpack", Kind::Bool),
            ("exclude", Kind::Strings),
        ]
    } else {
        &[
            ("chown", Kind::Str),
            ("from", Kind::Str),
            ("chmod", Kind::Str),
            ("link", Kind::Bool),
            ("exclude", Kind::Strings),
            ("parents", Kind::Bool),
        ]
    };
    let f = parse_flags(&raw.node.flags, allowed)?;
    let (dest, sources) = args.split_last().ok_or_else(|| at_least_one(name, raw))?;
    if matches!(parse_marker(&dest.text), Ok(Some(_))) {
        return Err(error(
            format!("{name} cannot accept a heredoc as a destination"),
            dest.span,
        ));
    }
    let sources = sources
        .iter()
        .map(|s| match parse_marker(&s.text) {
            // Heredoc sources are named `<<NAME` whatever their quoting.
            Ok(Some(m)) if !raw.json => Word {
                text: format!("<<{}", m.name),
                span: s.span,
            },
            _ => s.clone(),
        })
        .collect();
    Ok(CopyCmd {
        from: f.string("from"),
        chown: f.string("chown"),
        chmod: f.string("chmod"),
        link: f.boolean("link"),
        parents: f.boolean("parents"),
        exclude: f.strings("exclude"),
        checksum: f.string("checksum"),
        keep_git_dir: f.boolean("keep-git-dir"),
        unpack: f.boolean("unpack"),
        sources,
        dest: dest.clone(),
        heredocs: heredocs.to_vec(),
        json: raw.json,
    })
}

fn onbuild(raw: &RawNode, heredocs: &[Heredoc]) -> Result<Command, ParseError> {
    let Some(nested) = raw.nested.as_deref() else {
        return Err(at_least_one("ONBUILD", raw));
    };
    parse_flags(&raw.node.flags, &[])?;
    let trigger = nested.node.keyword.text.trim().to_uppercase();
    match trigger.as_str() {
        "ONBUILD" => {
            return Err(error(
                "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                nested.node.keyword.span,
            ));
        }
        "MAINTAINER" | "FROM" => {
            return Err(error(
                format!("{trigger} isn't allowed as an ONBUILD trigger"),
                nested.node.keyword.span,
            ));
        }
        _ => {}
    }
    let mut inner = convert(nested, heredocs)?;
    // The trigger text as stored in the image config: without `ONBUILD`, with the heredoc
    // bodies appended.
    let mut expression = nested.node.original.clone();
    for h in heredocs {
        expression.push('\n');
        expression.push_str(&h.content);
        expression.push_str(&h.name);
    }
    inner.original = expression;
    Ok(Command::Onbuild(Box::new(inner)))
}

fn healthcheck(raw: &RawNode) -> Result<HealthcheckCmd, ParseError> {
    let Some((typ, rest)) = raw.args.split_first() else {
        return Err(at_least_one("HEALTHCHECK", raw));
    };
    let allowed = [
        ("interval", Kind::Str),
        ("timeout", Kind::Str),
        ("start-period", Kind::Str),
        ("start-interval", Kind::Str),
        ("retries", Kind::Str),
    ];
    let kind = typ.text.to_uppercase();
    if kind == "NONE" {
        if !rest.is_empty() {
            return Err(error("HEALTHCHECK NONE takes no arguments", raw.node.span));
        }
        parse_flags(&raw.node.flags, &allowed)?;
        return Ok(HealthcheckCmd::None);
    }
    let f = parse_flags(&raw.node.flags, &allowed)?;
    if kind != "CMD" {
        return Err(error(
            format!("Unknown type {} in HEALTHCHECK (try CMD)", go_quote(&kind)),
            typ.span,
        ));
    }
    let cmd = command_line(raw, rest);
    if is_empty_command(&cmd) {
        return Err(error(
            "Missing command after HEALTHCHECK CMD",
            raw.node.span,
        ));
    }
    for name in ["interval", "timeout", "start-period", "start-interval"] {
        if let Some(w) = f.string(name) {
            check_interval(name, &w)?;
        }
    }
    let retries = f.string("retries");
    if let Some(w) = &retries
        && !w.text.is_empty()
    {
        let n = parse_go_int32(&w.text).map_err(|m| error(m, w.span))?;
        if n < 0 {
            return Err(error(format!("--retries cannot be negative ({n})"), w.span));
        }
    }
    Ok(HealthcheckCmd::Cmd {
        interval: f.string("interval"),
        timeout: f.string("timeout"),
        start_period: f.string("start-period"),
        start_interval: f.string("start-interval"),
        retries,
        cmd,
    })
}

/// BuildKit's `parseOptInterval`: empty or zero is "unset"; otherwise at least 1ms.
fn check_interval(name: &str, w: &Word) -> Result<(), ParseError> {
    if w.text.is_empty() {
        return Ok(());
    }
    let nanos = parse_duration(&w.text).map_err(|m| error(m, w.span))?;
    if nanos != 0 && nanos < 1_000_000 {
        return Err(error(
            format!("Interval {} cannot be less than 1ms", go_quote(name)),
            w.span,
        ));
    }
    Ok(())
}

/// Go's `strconv.ParseInt(s, 10, 32)` with its error messages.
fn parse_go_int32(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "strconv.ParseInt: parsing {}: invalid syntax",
            go_quote(s)
        ));
    }
    match s.parse::<i32>() {
        Ok(n) => Ok(i64::from(n)),
        Err(_) => Err(format!(
            "strconv.ParseInt: parsing {}: value out of range",
            go_quote(s)
        )),
    }
}

/// Parses a Go duration (`1h30m`, `1.5s`, `300ms`, `-2us`) into nanoseconds, with Go's
/// `time.ParseDuration` rules and error messages.
pub fn parse_duration(orig: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", go_quote(orig));
    let mut s = orig;
    let mut neg = false;
    if let Some(r) = s.strip_prefix('-') {
        neg = true;
        s = r;
    } else if let Some(r) = s.strip_prefix('+') {
        s = r;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let b = s.as_bytes()[0];
        if !(b == b'.' || b.is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &s[..int_len];
        s = &s[int_len..];
        let mut frac_part = "";
        if let Some(r) = s.strip_prefix('.') {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &r[..n];
            s = &r[n..];
            if int_len == 0 && n == 0 {
                return Err(invalid());
            }
        } else if int_len == 0 {
            return Err(invalid());
        }
        let unit_len = s
            .char_indices()
            .find(|&(_, c)| c == '.' || c.is_ascii_digit())
            .map_or(s.len(), |(i, _)| i);
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {}", go_quote(orig)));
        }
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    go_quote(unit),
                    go_quote(orig)
                ));
            }
        };
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut v = int.checked_mul(scale).ok_or_else(invalid)?;
        if !frac_part.is_empty() {
            // Go keeps only the digits that fit an int64; 18 are more than nanoseconds need
            // and keep `f * scale` far below u128::MAX.
            let digits = &frac_part[..frac_part.len().min(18)];
            let f: u128 = digits.parse().map_err(|_| invalid())?;
            let denom = 10u128.pow(digits.len() as u32);
            v = v.checked_add(f * scale / denom).ok_or_else(invalid)?;
        }
        total = total.checked_add(v).ok_or_else(invalid)?;
        if total > i64::MAX as u128 + u128::from(neg) {
            return Err(invalid());
        }
    }
    let total = total as i128;
    Ok((if neg { -total } else { total }) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("5s"), Ok(5_000_000_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_duration("1.5ms"), Ok(1_500_000));
        assert_eq!(parse_duration(".5s"), Ok(500_000_000));
        assert_eq!(parse_duration("-2us"), Ok(-2_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(
            parse_duration("10"),
            Err("time: missing unit in duration \"10\"".into())
        );
        assert_eq!(
            parse_duration("1d"),
            Err("time: unknown unit \"d\" in duration \"1d\"".into())
        );
        assert_eq!(
            parse_duration(""),
            Err("time: invalid duration \"\"".into())
        );
        assert_eq!(
            parse_duration("."),
            Err("time: invalid duration \".\"".into())
        );
        assert!(parse_duration("99999999999999999999h").is_err());
        assert_eq!(
            parse_duration("1.000000000000000000000000000001h"),
            Ok(3_600_000_000_000)
        );
    }

    #[test]
    fn go_int32() {
        assert_eq!(parse_go_int32("3"), Ok(3));
        assert_eq!(parse_go_int32("-1"), Ok(-1));
        assert!(parse_go_int32("x").unwrap_err().ends_with("invalid syntax"));
        assert!(
            parse_go_int32("99999999999")
                .unwrap_err()
                .ends_with("value out of range")
        );
    }
}
