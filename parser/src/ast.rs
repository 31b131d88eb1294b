//! The typed Dockerfile AST.
//!
//! Two levels, as in BuildKit:
//! - [`Node`] is the raw parse of one instruction (keyword, flags, arguments as the line
//!   parser split them, heredocs). Its [`Node::dump`] matches BuildKit's `AST.Dump()`, which
//!   lets the conformance corpus check the parser alone.
//! - [`Instruction`] / [`Command`] is the typed form the front end consumes: every flag
//!   validated and named, every argument a [`Word`] that keeps its raw (unexpanded) text and
//!   its [`Span`]. Expansion happens later, in the front end, with the stage's variables.
//!
//! Every node carries a span so any later error can point at the Dockerfile.

use serde::Serialize;

/// A location in the Dockerfile source. Lines and columns are 1-based; columns count
/// characters (not bytes); `start..end` is the byte range in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub line: usize,
    pub col: usize,
    /// Last line the node covers (continuation lines and heredoc bodies included).
    pub end_line: usize,
}

/// A raw piece of source text (an argument, a flag value) with where it came from.
/// `text` is unexpanded: quotes, `$VAR` and escapes are still in it, except where a
/// field's doc says otherwise (JSON-form arguments are already decoded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Word {
    pub text: String,
    pub span: Span,
}

/// A parser directive from the top of the file (`# syntax=...`, `# escape=...`, `# check=...`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directive {
    /// Lower-cased directive name.
    pub name: String,
    pub value: String,
    pub span: Span,
}

/// A non-fatal finding of the parser (for example an empty continuation line), reported by
/// `rbuild check` as a warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParseWarning {
    /// Stable rule name, e.g. `NoEmptyContinuation`.
    pub rule: &'static str,
    pub message: String,
    pub span: Span,
}

/// A whole parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    pub directives: Vec<Directive>,
    /// The escape character in force (`\` unless `# escape=` says otherwise).
    pub escape: char,
    /// Raw nodes, one per instruction, in file order.
    pub nodes: Vec<Node>,
    /// Typed instructions, one per node, in file order.
    pub instructions: Vec<Instruction>,
    pub warnings: Vec<ParseWarning>,
}

/// A `--name=value` (or bare `--name`) flag as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    /// Name without the leading dashes, as written (flag names are case-sensitive).
    pub name: String,
    /// `None` for a bare `--name`.
    pub value: Option<String>,
    /// The whole `--name=value` token.
    pub span: Span,
}

/// A heredoc body attached to an instruction (`<<EOF` ... `EOF`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word, quotes removed.
    pub name: String,
    /// The body: every line after the instruction line up to (not including) the
    /// terminator, each ending in `\n`. With `<<-`, leading tabs are already stripped.
    pub content: String,
    /// False when the delimiter was quoted (`<<"EOF"` / `<<'EOF'`): no expansion.
    pub expand: bool,
    /// True for `<<-EOF`.
    pub chomp: bool,
    pub span: Span,
}

/// Arguments of a raw node, shaped as BuildKit's line parsers produce them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum NodeArgs {
    /// A decoded JSON array (exec form), with `CMD`/`RUN`/`ENTRYPOINT`/`SHELL`/`COPY`/...
    Json(Vec<String>),
    /// One shell-form string (the rest of the line, continuations joined).
    Shell(String),
    /// Whitespace-separated words (quotes kept), e.g. `EXPOSE`, `ARG`, `FROM`.
    Words(Vec<String>),
    /// `ENV`/`LABEL` triples: key, value (quotes kept), and `=` or `""` for the legacy form.
    KeyValues(Vec<(String, String, String)>),
    /// `ONBUILD`: the nested trigger.
    Nested(Box<Node>),
    /// `HEALTHCHECK`: the type (`CMD` / `NONE` / anything else) and, for CMD, its command.
    Healthcheck(String, Option<Box<NodeArgs>>),
    /// No arguments.
    Empty,
}

/// The raw parse of one instruction, like BuildKit's `parser.Node`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// The keyword as written (original casing).
    pub keyword: Word,
    pub flags: Vec<Flag>,
    pub args: NodeArgs,
    pub heredocs: Vec<Heredoc>,
    /// The instruction's text with continuations joined (BuildKit's `Original`).
    pub original: String,
    pub span: Span,
}

/// One typed instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instruction {
    /// The keyword as written; `keyword.text` keeps the user's casing (for lint rules).
    pub keyword: Word,
    /// The whole instruction, continuation lines and heredoc bodies included.
    pub span: Span,
    /// The instruction's text with continuations joined, for history (`created_by`).
    pub original: String,
    pub command: Command,
}

/// Exec form (`["a", "b"]`, decoded) or shell form (raw text, left to the shell).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CommandLine {
    Exec(Vec<Word>),
    Shell(Word),
}

/// A `key=value` pair of `ENV` or `LABEL` (raw: quotes and `$VAR` still in place).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    pub key: Word,
    pub value: Word,
    /// True for the legacy `ENV key value` form.
    pub legacy: bool,
}

/// One name of an `ARG` instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    pub name: Word,
    /// Raw default (after `=`), unexpanded.
    pub default: Option<Word>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FromCmd {
    pub platform: Option<Word>,
    /// Raw image reference (may contain `$ARG`s).
    pub image: Word,
    /// Stage name after `AS` (raw, original casing).
    pub alias: Option<Word>,
    /// The `AS` keyword itself as written, for the casing lint.
    pub as_keyword: Option<Word>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunCmd {
    /// Raw `--mount` values (`type=cache,target=/x`), parsed by the front end after expansion.
    pub mounts: Vec<Word>,
    pub network: Option<Word>,
    pub security: Option<Word>,
    pub cmd: CommandLine,
    pub heredocs: Vec<Heredoc>,
}

/// `COPY` and `ADD` share one shape; `ADD`-only flags are `None`/`false` for `COPY`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyCmd {
    pub from: Option<Word>,
    pub chown: Option<Word>,
    pub chmod: Option<Word>,
    /// `--link` / `--link=true|false` (raw value; `Some("true")` for a bare flag).
    pub link: Option<Word>,
    pub parents: Option<Word>,
    pub exclude: Vec<Word>,
    /// ADD only.
    pub checksum: Option<Word>,
    /// ADD only.
    pub keep_git_dir: Option<Word>,
    /// ADD only.
    pub unpack: Option<Word>,
    /// Sources (raw; for the JSON form decoded). A heredoc source appears here as `<<NAME`
    /// and its body in `heredocs`.
    pub sources: Vec<Word>,
    pub dest: Word,
    pub heredocs: Vec<Heredoc>,
    /// True when written in JSON form.
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[allow(clippy::large_enum_variant)] // one per HEALTHCHECK; boxing would only add noise
pub enum HealthcheckCmd {
    None,
    Cmd {
        interval: Option<Word>,
        timeout: Option<Word>,
        start_period: Option<Word>,
        start_interval: Option<Word>,
        retries: Option<Word>,
        cmd: CommandLine,
    },
}

/// Every Dockerfile instruction, typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Command {
    From(FromCmd),
    Run(RunCmd),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    Label(Vec<KeyValue>),
    Maintainer(Word),
    /// Raw port specs (`80`, `8000-8010/udp`, `$PORT`).
    Expose(Vec<Word>),
    Env(Vec<KeyValue>),
    Add(CopyCmd),
    Copy(CopyCmd),
    /// Raw paths (JSON form decoded, word form split).
    Volume(Vec<Word>),
    User(Word),
    Workdir(Word),
    Arg(Vec<ArgDecl>),
    /// The trigger instruction, parsed but stored unexpanded; `original` of the nested
    /// instruction is the trigger text that goes into the image config's `OnBuild`.
    Onbuild(Box<Instruction>),
    StopSignal(Word),
    Healthcheck(HealthcheckCmd),
    /// Always JSON form.
    Shell(Vec<Word>),
}

impl Command {
    /// Upper-case instruction name (`"COPY"`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::From(_) => "FROM",
            Command::Run(_) => "RUN",
            Command::Cmd(_) => "CMD",
            Command::Entrypoint(_) => "ENTRYPOINT",
            Command::Label(_) => "LABEL",
            Command::Maintainer(_) => "MAINTAINER",
            Command::Expose(_) => "EXPOSE",
            Command::Env(_) => "ENV",
            Command::Add(_) => "ADD",
            Command::Copy(_) => "COPY",
            Command::Volume(_) => "VOLUME",
            Command::User(_) => "USER",
            Command::Workdir(_) => "WORKDIR",
            Command::Arg(_) => "ARG",
            Command::Onbuild(_) => "ONBUILD",
            Command::StopSignal(_) => "STOPSIGNAL",
            Command::Healthcheck(_) => "HEALTHCHECK",
            Command::Shell(_) => "SHELL",
        }
    }
}
