//! The first pass: splits the Dockerfile into global `ARG`s and stages, expands every
//! `FROM` with the global args, finds what each stage depends on (its base, `COPY --from`,
//! `RUN --mount from=`), picks the target and the stages it reaches, resolves the reachable
//! base images and injects their ONBUILD triggers.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use rbuild_graph::Platform;
use rbuild_parser::ast::{Command, Dockerfile, FromCmd, Instruction, Span};
use rbuild_parser::shell::Lexer;

use crate::error::FrontendError;
use crate::reference::Reference;
use crate::resolver::{ImageResolver, ResolvedImage};
use crate::values::csv_fields;
use crate::{BuildOptions, Warning};

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Base {
    /// An earlier stage, by index.
    Stage(usize),
    Scratch,
    /// A normalised image reference.
    Image(String),
}

/// Another filesystem a command reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SourceRef {
    Stage(usize),
    /// Index into [`Plan::externals`].
    External(usize),
}

/// One command of a stage, with the filesystems it reads.
#[derive(Debug, Clone)]
pub(crate) struct Cmd<'a> {
    pub ins: Cow<'a, Instruction>,
    /// Injected by an ONBUILD trigger.
    pub on_build: bool,
    /// `COPY --from`.
    pub copy_from: Option<SourceRef>,
    /// `RUN --mount ... from=`, one entry per mount.
    pub mount_from: Vec<Option<SourceRef>>,
}

impl Cmd<'_> {
    fn sources(&self) -> impl Iterator<Item = SourceRef> + '_ {
        self.copy_from
            .iter()
            .copied()
            .chain(self.mount_from.iter().flatten().copied())
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Stage<'a> {
    pub name: Option<String>,
    pub from_span: Span,
    /// The base as written after expansion.
    pub base_text: String,
    pub base: Base,
    /// `FROM --platform`.
    pub platform: Option<Platform>,
    pub cmds: Vec<Cmd<'a>>,
    pub resolved: Option<ResolvedImage>,
    resolve_done: bool,
    triggers_done: bool,
    pub trigger_count: usize,
}

/// An image (or `scratch`) read by `COPY --from` / `--mount from=` that is not a stage.
#[derive(Debug, Clone)]
pub(crate) struct External {
    pub text: String,
    pub base: Base,
    pub span: Span,
    pub resolved: Option<ResolvedImage>,
    resolve_done: bool,
}

#[derive(Debug)]
pub(crate) struct Plan<'a> {
    pub stages: Vec<Stage<'a>>,
    pub externals: Vec<External>,
    /// Predefined platform args and global `ARG`s with a value, in definition order.
    pub global_env: Vec<(String, String)>,
    pub target: usize,
    pub reachable: BTreeSet<usize>,
    pub reachable_externals: BTreeSet<usize>,
    pub warnings: Vec<Warning>,
    pub lexer: Lexer,
    /// The target platform, for stages without `FROM --platform`.
    pub default_platform: Platform,
}

/// The `[a-z][a-z0-9-_.]*` rule for stage names.
fn valid_stage_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

/// BuildKit's predefined platform args, each overridable by a build arg.
fn predefined_args(opts: &BuildOptions, target: &str) -> Vec<(String, String)> {
    let bp = &opts.build_platform;
    let tp = &opts.target_platform;
    let pairs = [
        ("BUILDPLATFORM", bp.to_string()),
        ("BUILDOS", bp.os.clone()),
        ("BUILDOSVERSION", String::new()),
        ("BUILDARCH", bp.architecture.clone()),
        ("BUILDVARIANT", bp.variant_str().to_string()),
        ("TARGETPLATFORM", tp.to_string()),
        ("TARGETOS", tp.os.clone()),
        ("TARGETOSVERSION", String::new()),
        ("TARGETARCH", tp.architecture.clone()),
        ("TARGETVARIANT", tp.variant_str().to_string()),
        ("TARGETSTAGE", target.to_string()),
    ];
    pairs
        .into_iter()
        .map(|(k, v)| {
            let v = opts.build_args.get(k).cloned().unwrap_or(v);
            (k.to_string(), v)
        })
        .collect()
}

pub(crate) fn set_var(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    match env.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value.to_string(),
        None => env.push((key.to_string(), value.to_string())),
    }
}

/// A trigger parsed from an image's `OnBuild` text.
fn parse_trigger(text: &str, span: Span) -> Result<Instruction, FrontendError> {
    let fail = |message: String| FrontendError::Trigger {
        trigger: text.to_string(),
        message,
        span,
    };
    let df = rbuild_parser::parse(text).map_err(|e| fail(e.message))?;
    let mut instructions = df.instructions.into_iter();
    let (Some(ins), None) = (instructions.next(), instructions.next()) else {
        return Err(fail("onbuild trigger should be a single expression".into()));
    };
    check_trigger(&ins, span)?;
    Ok(ins)
}

fn check_trigger(ins: &Instruction, span: Span) -> Result<(), FrontendError> {
    match ins.command {
        Command::From(_) | Command::Maintainer(_) => Err(FrontendError::at(
            span,
            format!("{} isn't allowed as an ONBUILD trigger", ins.command.name()),
        )),
        Command::Onbuild(_) => Err(FrontendError::at(
            span,
            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        )),
        _ => Ok(()),
    }
}

impl<'a> Plan<'a> {
    pub fn new(df: &'a Dockerfile, opts: &BuildOptions) -> Result<Plan<'a>, FrontendError> {
        let lexer = Lexer::new(df.escape);
        // Split: global ARGs, then stages.
        let mut meta: Vec<&Instruction> = Vec::new();
        let mut groups: Vec<(&'a Instruction, &'a FromCmd, Vec<&'a Instruction>)> = Vec::new();
        for ins in &df.instructions {
            match &ins.command {
                Command::From(from) => groups.push((ins, from, Vec::new())),
                _ => match groups.last_mut() {
                    Some((_, _, body)) => body.push(ins),
                    None if matches!(ins.command, Command::Arg(_)) => meta.push(ins),
                    None => return Err(FrontendError::NoBuildStage { span: ins.span }),
                },
            }
        }
        if groups.is_empty() {
            return Err(FrontendError::NoStages);
        }

        // Stage names first: the target name is a predefined arg.
        let mut names: Vec<Option<String>> = Vec::new();
        for (ins, from, _) in &groups {
            let name = match &from.alias {
                None => None,
                Some(alias) => {
                    let lower = alias.text.to_lowercase();
                    if !valid_stage_name(&lower) {
                        return Err(FrontendError::InvalidStageName {
                            name: alias.text.clone(),
                            span: ins.span,
                        });
                    }
                    // A repeated name is only a lint warning in BuildKit
                    // (DuplicateStageName): FROM finds the latest stage of that name
                    // defined above it, --target the first, COPY --from the last.
                    Some(lower)
                }
            };
            names.push(name);
        }
        let target = match &opts.target {
            Some(t) => {
                let lower = t.to_lowercase();
                names
                    .iter()
                    .position(|n| n.as_deref() == Some(lower.as_str()))
                    .ok_or_else(|| {
                        let known = names.iter().flatten().map(String::as_str);
                        FrontendError::UnknownTarget {
                            target: t.clone(),
                            suggestion: crate::values::suggest(t, known).map(str::to_string),
                        }
                    })?
            }
            None => groups.len() - 1,
        };
        let target_name = names[target].clone().unwrap_or_else(|| "default".into());

        let mut plan = Plan {
            stages: Vec::new(),
            externals: Vec::new(),
            global_env: predefined_args(opts, &target_name),
            target,
            reachable: BTreeSet::new(),
            reachable_externals: BTreeSet::new(),
            warnings: Vec::new(),
            lexer,
            default_platform: opts.target_platform.clone(),
        };

        // Global ARGs: a build arg wins, else the default expanded with what came before.
        let mut declared: BTreeSet<String> = BTreeSet::new();
        for ins in meta {
            let Command::Arg(decls) = &ins.command else {
                continue;
            };
            for decl in decls {
                let key = decl.name.text.clone();
                declared.insert(key.clone());
                let value = match (opts.build_args.get(&key), &decl.default) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(default)) => {
                        let env = plan.global_env.clone();
                        let r = plan.lexer.process_word(&default.text, &env).map_err(|e| {
                            FrontendError::Expand {
                                word: default.text.clone(),
                                span: ins.span,
                                source: e,
                            }
                        })?;
                        Some(r.value)
                    }
                    (None, None) => None,
                };
                if let Some(v) = value {
                    set_var(&mut plan.global_env, &key, &v);
                }
            }
        }

        let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
        for (index, (ins, from, body)) in groups.into_iter().enumerate() {
            let base_text = plan.expand_from(&from.image.text, ins.span, &declared)?;
            if base_text.is_empty() {
                return Err(FrontendError::BlankBaseName {
                    name: from.image.text.clone(),
                    span: ins.span,
                });
            }
            let platform = match &from.platform {
                None => None,
                Some(p) => {
                    let value = plan.expand_from(&p.text, ins.span, &declared)?;
                    if value.is_empty() {
                        return Err(FrontendError::InvalidPlatform {
                            value: p.text.clone(),
                            reason: format!("empty platform value from expression {}", p.text),
                            span: ins.span,
                        });
                    }
                    let parsed: Platform =
                        value.parse().map_err(|e: rbuild_graph::PlatformError| {
                            FrontendError::InvalidPlatform {
                                value: p.text.clone(),
                                reason: e.to_string(),
                                span: ins.span,
                            }
                        })?;
                    Some(parsed)
                }
            };
            let base = match by_name.get(&base_text.to_lowercase()) {
                Some(&j) => Base::Stage(j),
                None => image_base(&base_text, ins.span)?,
            };
            let name = names[index].clone();
            plan.stages.push(Stage {
                name: name.clone(),
                from_span: ins.span,
                base_text,
                base,
                platform,
                cmds: Vec::new(),
                resolved: None,
                resolve_done: false,
                triggers_done: false,
                trigger_count: 0,
            });
            if let Some(n) = name {
                by_name.insert(n, index);
            }
            let mut cmds = Vec::with_capacity(body.len());
            for ins in body {
                cmds.push(plan.command(Cow::Borrowed(ins), false, ins.span, &names)?);
            }
            plan.stages[index].cmds = cmds;
        }
        plan.check_cycles()?;
        Ok(plan)
    }

    /// Expands a `FROM` word with the global args; warns about undeclared ones.
    fn expand_from(
        &mut self,
        word: &str,
        span: Span,
        declared: &BTreeSet<String>,
    ) -> Result<String, FrontendError> {
        let r = self
            .lexer
            .process_word(word, &self.global_env)
            .map_err(|e| FrontendError::Expand {
                word: word.to_string(),
                span,
                source: e,
            })?;
        let mut known: BTreeSet<&str> = declared.iter().map(String::as_str).collect();
        known.extend(self.global_env.iter().map(|(k, _)| k.as_str()));
        for name in &r.unmatched {
            if known.contains(name.as_str()) {
                continue;
            }
            let mut message = format!("FROM argument '{name}' is not declared");
            if let Some(s) = crate::values::suggest(name, known.iter().copied()) {
                message.push_str(&format!(" (did you mean {s}?)"));
            }
            self.warnings.push(Warning {
                rule: "UndefinedArgInFrom",
                message,
                span,
            });
        }
        Ok(r.value)
    }

    /// Builds a command and finds the stages or images it reads.
    fn command(
        &mut self,
        ins: Cow<'a, Instruction>,
        on_build: bool,
        span: Span,
        names: &[Option<String>],
    ) -> Result<Cmd<'a>, FrontendError> {
        let find = |name: &str| {
            let lower = name.to_lowercase();
            names
                .iter()
                .rposition(|n| n.as_deref() == Some(lower.as_str()))
        };
        let mut copy_from = None;
        let mut mount_from = Vec::new();
        match &ins.command {
            Command::Copy(c) => {
                if let Some(from) = &c.from {
                    let text = &from.text;
                    let empty: [(&str, &str); 0] = [];
                    let same = self
                        .lexer
                        .process_word(text, &empty)
                        .is_ok_and(|r| r.value == *text);
                    if !same {
                        return Err(FrontendError::at(
                            span,
                            "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
                        ));
                    }
                    copy_from = Some(match parse_go_int(text) {
                        Some(i) => {
                            if i < 0 || i as usize >= names.len() {
                                return Err(FrontendError::at(
                                    span,
                                    format!("invalid stage index {i}"),
                                ));
                            }
                            SourceRef::Stage(i as usize)
                        }
                        None => match find(text) {
                            Some(j) => SourceRef::Stage(j),
                            None => {
                                if !text.contains('/') && text != "scratch" {
                                    self.warnings.push(Warning {
                                        rule: "CopyFromUnknownStage",
                                        message: format!(
                                            "COPY --from={text} names no stage; it is used as an image"
                                        ),
                                        span,
                                    });
                                }
                                SourceRef::External(self.external(text, span)?)
                            }
                        },
                    });
                }
            }
            Command::Run(r) => {
                for m in &r.mounts {
                    let fields = csv_fields(&m.text).map_err(|e| {
                        FrontendError::at(span, format!("failed to parse csv mounts: {e}"))
                    })?;
                    let from = fields.iter().find_map(|f| {
                        let (k, v) = f.split_once('=')?;
                        k.eq_ignore_ascii_case("from").then_some(v)
                    });
                    let source = match from {
                        None | Some("") => None,
                        Some(v) => {
                            if v.find('$').is_some_and(|i| i != v.len() - 1) {
                                return Err(FrontendError::at(
                                    span,
                                    "'from' doesn't support variable expansion, define alias stage instead",
                                ));
                            }
                            Some(match find(v) {
                                Some(j) => SourceRef::Stage(j),
                                None => SourceRef::External(self.external(v, span)?),
                            })
                        }
                    };
                    mount_from.push(source);
                }
            }
            _ => {}
        }
        Ok(Cmd {
            ins,
            on_build,
            copy_from,
            mount_from,
        })
    }

    fn external(&mut self, text: &str, span: Span) -> Result<usize, FrontendError> {
        if let Some(i) = self.externals.iter().position(|e| e.text == text) {
            return Ok(i);
        }
        let base = image_base(text, span)?;
        self.externals.push(External {
            text: text.to_string(),
            base,
            span,
            resolved: None,
            resolve_done: false,
        });
        Ok(self.externals.len() - 1)
    }

    /// Stage dependencies: base stage, `COPY --from` and mount stages.
    fn stage_deps(&self, i: usize) -> Vec<(usize, Span)> {
        let stage = &self.stages[i];
        let mut out = Vec::new();
        if let Base::Stage(b) = stage.base {
            out.push((b, stage.from_span));
        }
        for cmd in &stage.cmds {
            for s in cmd.sources() {
                if let SourceRef::Stage(j) = s {
                    out.push((j, cmd.ins.span));
                }
            }
        }
        out
    }

    fn check_cycles(&self) -> Result<(), FrontendError> {
        for i in 0..self.stages.len() {
            for (j, span) in self.stage_deps(i) {
                if j >= i && self.reaches(j, i) {
                    let stage = self.stage_label(i);
                    return Err(FrontendError::CircularDependency { stage, span });
                }
            }
        }
        Ok(())
    }

    /// Whether stage `from` depends (transitively, or is) stage `to`.
    fn reaches(&self, from: usize, to: usize) -> bool {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from];
        while let Some(s) = todo.pop() {
            if s == to {
                return true;
            }
            if seen.insert(s) {
                todo.extend(self.stage_deps(s).into_iter().map(|(d, _)| d));
            }
        }
        false
    }

    /// `name`, or `stage-N` for an unnamed stage.
    pub fn stage_label(&self, i: usize) -> String {
        self.stages[i]
            .name
            .clone()
            .unwrap_or_else(|| format!("stage-{i}"))
    }

    fn compute_reachable(&mut self) {
        let mut stages = BTreeSet::new();
        let mut externals = BTreeSet::new();
        let mut todo = vec![self.target];
        while let Some(s) = todo.pop() {
            if !stages.insert(s) {
                continue;
            }
            if let Base::Stage(b) = self.stages[s].base {
                todo.push(b);
            }
            for cmd in &self.stages[s].cmds {
                for src in cmd.sources() {
                    match src {
                        SourceRef::Stage(j) => todo.push(j),
                        SourceRef::External(e) => {
                            externals.insert(e);
                        }
                    }
                }
            }
        }
        self.reachable = stages;
        self.reachable_externals = externals;
    }

    /// Resolves the base images the target needs and injects ONBUILD triggers; repeats
    /// while triggers add dependencies.
    pub fn resolve(&mut self, resolver: &dyn ImageResolver) -> Result<(), FrontendError> {
        let names: Vec<Option<String>> = self.stages.iter().map(|s| s.name.clone()).collect();
        loop {
            self.compute_reachable();
            let mut new_deps = false;
            for i in self.reachable.clone() {
                if !self.stages[i].resolve_done {
                    self.stages[i].resolve_done = true;
                    if let Base::Image(reference) = &self.stages[i].base {
                        let platform = self.stages[i].platform.clone();
                        self.stages[i].resolved = self.resolve_image(
                            resolver,
                            reference,
                            platform,
                            self.stages[i].from_span,
                        )?;
                    }
                }
                if self.stages[i].triggers_done {
                    continue;
                }
                self.stages[i].triggers_done = true;
                let from_span = self.stages[i].from_span;
                let triggers: Vec<Instruction> = match &self.stages[i].base {
                    Base::Stage(b) => self.stages[*b]
                        .cmds
                        .iter()
                        .filter_map(|c| match &c.ins.command {
                            Command::Onbuild(inner) => Some((**inner).clone()),
                            _ => None,
                        })
                        .collect(),
                    Base::Image(_) => {
                        let texts = self.stages[i]
                            .resolved
                            .as_ref()
                            .map(|r| r.config.config.on_build.clone())
                            .unwrap_or_default();
                        texts
                            .iter()
                            .map(|t| parse_trigger(t, from_span))
                            .collect::<Result<_, _>>()?
                    }
                    Base::Scratch => Vec::new(),
                };
                let mut injected = Vec::with_capacity(triggers.len());
                for mut ins in triggers {
                    check_trigger(&ins, from_span)?;
                    ins.span = from_span;
                    let cmd = self.command(Cow::Owned(ins), true, from_span, &names)?;
                    new_deps |= cmd.sources().next().is_some();
                    injected.push(cmd);
                }
                let stage = &mut self.stages[i];
                stage.trigger_count = injected.len();
                injected.append(&mut stage.cmds);
                stage.cmds = injected;
            }
            for e in self.reachable_externals.clone() {
                if self.externals[e].resolve_done {
                    continue;
                }
                self.externals[e].resolve_done = true;
                if let Base::Image(reference) = &self.externals[e].base {
                    let span = self.externals[e].span;
                    self.externals[e].resolved =
                        self.resolve_image(resolver, &reference.clone(), None, span)?;
                }
            }
            if !new_deps {
                self.check_cycles()?;
                return Ok(());
            }
        }
    }

    fn resolve_image(
        &self,
        resolver: &dyn ImageResolver,
        reference: &str,
        platform: Option<Platform>,
        span: Span,
    ) -> Result<Option<ResolvedImage>, FrontendError> {
        let platform = platform.unwrap_or_else(|| self.default_platform.clone());
        resolver
            .resolve(reference, &platform)
            .map_err(|source| FrontendError::Resolve {
                reference: reference.to_string(),
                span,
                source,
            })
    }
}

/// `scratch`, or a normalised image reference.
fn image_base(text: &str, span: Span) -> Result<Base, FrontendError> {
    if text == "scratch" {
        return Ok(Base::Scratch);
    }
    let r =
        Reference::parse_normalized(text).map_err(|source| FrontendError::InvalidReference {
            name: text.to_string(),
            span,
            source,
        })?;
    Ok(Base::Image(r.to_string()))
}

/// Go's `strconv.Atoi` accepts an optional sign and decimal digits.
fn parse_go_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}
