//! The second pass: walks the reachable stages in file order and lowers each instruction,
//! keeping BuildKit's per-stage state (root filesystem, variables, working directory, user,
//! image config) and adding a vertex for every filesystem change.

mod config;
mod copy;
mod mounts;
mod run;

use std::collections::BTreeMap;

use rbuild_graph::{
    Digest, Graph, History, ImageConfig, Location, Op, Platform, ProxyEnv, SourceOp, StageOutput,
    VertexMeta,
};
use rbuild_parser::ast::{Command, Dockerfile, Span};
use rbuild_parser::shell::Lexer;

use crate::error::FrontendError;
use crate::plan::{Base, Cmd, Plan, SourceRef};
use crate::{BuildOptions, Lowered, StageInfo, Warning};

/// `PATH` every Linux image gets when its config has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The `comment` BuildKit writes into every history entry it creates.
const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// The evolving state of one stage (BuildKit's `dispatchState`).
#[derive(Debug, Clone)]
pub(crate) struct StageState {
    pub root: Digest,
    /// Variables in scope (image env, `ARG`s with a value, `ENV`s), each key once.
    pub env: Vec<(String, String)>,
    pub cwd: String,
    pub user: String,
    pub image: ImageConfig,
    /// `ARG`s declared in this stage (and inherited from a base stage), with their values.
    pub build_args: Vec<(String, Option<String>)>,
    pub platform: Platform,
    /// A `CMD` was given in this stage (a later `ENTRYPOINT` then keeps it).
    pub cmd_set: bool,
    pub cmd_index: usize,
    pub cmd_total: usize,
    /// Stage label for vertex metadata (`build`, `stage-1`).
    pub label: String,
    /// Stage name in progress descriptions (empty in a single-stage Dockerfile).
    pub prefix_name: String,
}

pub(crate) struct Lowerer<'a> {
    opts: &'a BuildOptions,
    /// The parser's findings, reported with ours.
    parse_warnings: &'a [rbuild_parser::ast::ParseWarning],
    plan: Plan<'a>,
    graph: Graph,
    lexer: Lexer,
    states: Vec<Option<StageState>>,
    external_roots: BTreeMap<usize, Digest>,
    context: Option<Digest>,
    scratch: Option<Digest>,
    warnings: Vec<Warning>,
    proxy: ProxyEnv,
    /// The stage being lowered.
    current: usize,
}

/// BuildKit's `emptyImage`: the config of `scratch` (and of a base nobody could resolve).
fn empty_image(platform: &Platform) -> ImageConfig {
    let mut img = ImageConfig {
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        ..Default::default()
    };
    img.config.working_dir = "/".into();
    img.config.env = vec![format!("PATH={DEFAULT_PATH}")];
    img
}

/// `HTTP_PROXY` and friends from the build args (any casing), as BuildKit's
/// `proxyEnvFromBuildArgs`.
fn proxy_env(build_args: &BTreeMap<String, String>) -> ProxyEnv {
    let mut p = ProxyEnv::default();
    for (k, v) in build_args {
        let slot = match k.to_ascii_lowercase().as_str() {
            "http_proxy" => &mut p.http_proxy,
            "https_proxy" => &mut p.https_proxy,
            "ftp_proxy" => &mut p.ftp_proxy,
            "no_proxy" => &mut p.no_proxy,
            "all_proxy" => &mut p.all_proxy,
            _ => continue,
        };
        *slot = Some(v.clone());
    }
    p
}

fn location(span: Span) -> Option<Location> {
    Some(Location {
        line: span.line,
        col: span.col,
        end_line: span.end_line.max(span.line),
    })
}

/// Upper-cases the first word (BuildKit's `uppercaseCmd`).
fn uppercase_cmd(s: &str) -> String {
    match s.split_once(' ') {
        Some((first, rest)) => format!("{} {rest}", first.to_uppercase()),
        None => s.to_uppercase(),
    }
}

impl<'a> Lowerer<'a> {
    pub fn new(df: &'a Dockerfile, opts: &'a BuildOptions, plan: Plan<'a>) -> Lowerer<'a> {
        let lexer = plan.lexer.clone();
        Lowerer {
            opts,
            parse_warnings: &df.warnings,
            states: vec![None; plan.stages.len()],
            plan,
            graph: Graph::new(),
            lexer,
            external_roots: BTreeMap::new(),
            context: None,
            scratch: None,
            warnings: Vec::new(),
            proxy: proxy_env(&opts.build_args),
            current: 0,
        }
    }

    pub fn run(mut self) -> Result<Lowered, FrontendError> {
        for i in 0..self.plan.stages.len() {
            if !self.plan.reachable.contains(&i) {
                continue;
            }
            self.current = i;
            let mut st = self.init_stage(i)?;
            let cmds = std::mem::take(&mut self.plan.stages[i].cmds);
            let result = cmds.iter().try_for_each(|cmd| self.dispatch(&mut st, cmd));
            self.plan.stages[i].cmds = cmds;
            result?;
            self.states[i] = Some(st);
        }
        self.finish()
    }

    fn finish(mut self) -> Result<Lowered, FrontendError> {
        let target = self.plan.target;
        let Some(tstate) = self.states[target].clone() else {
            return Err(FrontendError::NoStages);
        };
        let mut stages = Vec::new();
        for (i, stage) in self.plan.stages.iter().enumerate() {
            let output = self.states[i].as_ref().map(|s| s.root.clone());
            if let Some(out) = &output {
                self.graph
                    .set_stage_output(StageOutput {
                        index: i,
                        name: stage.name.clone(),
                        output: out.clone(),
                    })
                    .map_err(|e| FrontendError::at(stage.from_span, e.to_string()))?;
            }
            let base = match &stage.base {
                Base::Stage(_) => stage.base_text.clone(),
                Base::Scratch => "scratch".into(),
                Base::Image(r) => r.clone(),
            };
            stages.push(StageInfo {
                index: i,
                name: stage.name.clone(),
                base,
                reachable: output.is_some(),
                output,
                span: stage.from_span,
            });
        }
        let from_span = self.plan.stages[target].from_span;
        self.graph
            .set_target(tstate.root.clone())
            .map_err(|e| FrontendError::at(from_span, e.to_string()))?;

        let mut config = tstate.image;
        config
            .config
            .labels
            .extend(self.opts.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        // The target platform is always explicit for us: it names the result's platform.
        let tp = &self.opts.target_platform;
        let same = config.os == tp.os && config.architecture == tp.architecture;
        config.os = tp.os.clone();
        config.architecture = tp.architecture.clone();
        if tp.variant.is_some() || !same {
            config.variant = tp.variant.clone();
        }

        let mut warnings: Vec<Warning> = self
            .parse_warnings
            .iter()
            .map(|w| Warning {
                rule: w.rule,
                message: w.message.clone(),
                span: w.span,
            })
            .collect();
        warnings.append(&mut self.plan.warnings);
        warnings.append(&mut self.warnings);
        warnings.sort_by_key(|w| (w.span.line, w.span.col));
        warnings.dedup();
        Ok(Lowered {
            graph: self.graph,
            stages,
            target,
            config,
            warnings,
        })
    }

    fn add(
        &mut self,
        op: Op,
        inputs: Vec<Digest>,
        description: String,
        st: Option<&StageState>,
        span: Option<Span>,
    ) -> Result<Digest, FrontendError> {
        let meta = VertexMeta {
            description,
            stage: st.map(|s| s.label.clone()),
            location: span.and_then(location),
        };
        let err_span = span.unwrap_or(self.plan.stages[self.current].from_span);
        self.graph
            .add(op, inputs, meta)
            .map_err(|e| FrontendError::at(err_span, e.to_string()))
    }

    fn scratch(&mut self) -> Result<Digest, FrontendError> {
        if let Some(d) = &self.scratch {
            return Ok(d.clone());
        }
        let d = self.add(
            Op::Source(SourceOp::Scratch),
            vec![],
            "scratch".into(),
            None,
            None,
        )?;
        self.scratch = Some(d.clone());
        Ok(d)
    }

    fn context(&mut self) -> Result<Digest, FrontendError> {
        if let Some(d) = &self.context {
            return Ok(d.clone());
        }
        let op = Op::Source(SourceOp::Context(rbuild_graph::ContextSource {
            name: "context".into(),
            include: vec![],
            exclude: self.opts.context_excludes.clone(),
        }));
        let d = self.add(
            op,
            vec![],
            "[internal] load build context".into(),
            None,
            None,
        )?;
        self.context = Some(d.clone());
        Ok(d)
    }

    /// The source vertex of a registry image.
    fn image_source(
        &mut self,
        reference: &str,
        resolved: Option<&crate::ResolvedImage>,
        platform: &Platform,
        description_prefix: Option<&mut StageState>,
        span: Span,
    ) -> Result<Digest, FrontendError> {
        let (reference, digest) = match resolved {
            Some(r) => {
                let canonical = crate::Reference::parse_normalized(&r.canonical_ref)
                    .map(|x| x.to_string())
                    .unwrap_or_else(|_| reference.to_string());
                (canonical, r.digest.clone())
            }
            None => (reference.to_string(), None),
        };
        let shown = match &digest {
            Some(d) if !reference.contains('@') => format!("{reference}@{d}"),
            _ => reference.clone(),
        };
        let (description, st) = match description_prefix {
            Some(st) => (
                self.describe(st, &format!("FROM {shown}"), false),
                Some(&*st),
            ),
            None => (format!("FROM {shown}"), None),
        };
        let op = Op::Source(SourceOp::Image(rbuild_graph::ImageSource {
            reference,
            digest,
            platform: platform.clone(),
        }));
        self.add(op, vec![], description, st, Some(span))
    }

    /// The root filesystem of a `COPY --from` / `--mount from=` source.
    fn source_root(
        &mut self,
        src: SourceRef,
        what: &str,
        span: Span,
    ) -> Result<Digest, FrontendError> {
        match src {
            SourceRef::Stage(j) => match &self.states[j] {
                Some(s) => Ok(s.root.clone()),
                None => Err(FrontendError::at(span, what.to_string())),
            },
            SourceRef::External(e) => {
                if let Some(d) = self.external_roots.get(&e) {
                    return Ok(d.clone());
                }
                let ext = self.plan.externals[e].clone();
                let d = match &ext.base {
                    Base::Image(reference) => {
                        let platform = self.opts.target_platform.clone();
                        self.image_source(reference, ext.resolved.as_ref(), &platform, None, span)?
                    }
                    _ => self.scratch()?,
                };
                self.external_roots.insert(e, d.clone());
                Ok(d)
            }
        }
    }

    fn init_stage(&mut self, i: usize) -> Result<StageState, FrontendError> {
        let stage = self.plan.stages[i].clone();
        let label = self.plan.stage_label(i);
        let prefix_name = if self.plan.stages.len() == 1 {
            String::new()
        } else {
            label.clone()
        };
        let counted = stage
            .cmds
            .iter()
            .filter(|c| {
                !c.on_build
                    && matches!(
                        c.ins.command,
                        Command::Add(_) | Command::Copy(_) | Command::Run(_) | Command::Workdir(_)
                    )
            })
            .count();
        let cmd_total =
            counted + stage.trigger_count + usize::from(matches!(stage.base, Base::Image(_)));
        let platform = stage
            .platform
            .clone()
            .unwrap_or_else(|| self.opts.target_platform.clone());

        let mut st = match &stage.base {
            Base::Stage(b) => {
                let Some(mut st) = self.states[*b].clone() else {
                    return Err(FrontendError::at(
                        stage.from_span,
                        format!("base stage {} was not built", self.plan.stage_label(*b)),
                    ));
                };
                st.image.config.on_build.clear();
                st.cmd_set = false;
                st.cmd_index = 0;
                st.cmd_total = cmd_total;
                st.label = label;
                st.prefix_name = prefix_name;
                st
            }
            base => {
                let mut st = StageState {
                    // Replaced below, once the FROM description has taken step 1.
                    root: Digest::sha256(b""),
                    env: Vec::new(),
                    cwd: "/".into(),
                    user: String::new(),
                    image: empty_image(&platform),
                    build_args: Vec::new(),
                    platform: platform.clone(),
                    cmd_set: false,
                    cmd_index: 0,
                    cmd_total,
                    label,
                    prefix_name,
                };
                st.root = match base {
                    Base::Image(reference) => {
                        if let Some(r) = &stage.resolved {
                            st.image = r.config.clone();
                            // The triggers ran as this stage's first commands.
                            st.image.config.on_build.clear();
                            if st.image.os.is_empty() {
                                st.image.os = platform.os.clone();
                                st.image.architecture = platform.architecture.clone();
                                st.image.variant = platform.variant.clone();
                            }
                        }
                        let resolved = stage.resolved.as_ref();
                        self.image_source(
                            reference,
                            resolved,
                            &platform,
                            Some(&mut st),
                            stage.from_span,
                        )?
                    }
                    _ => self.scratch()?,
                };
                st
            }
        };

        if st.image.os != "windows" && st.image.config.env_value("PATH").is_none() {
            st.image.config.env.push(format!("PATH={DEFAULT_PATH}"));
        }
        for kv in &st.image.config.env {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            crate::plan::set_var(&mut st.env, k, v);
        }
        if !st.image.config.working_dir.is_empty() {
            st.cwd = crate::values::normalize_path(&st.cwd, &st.image.config.working_dir, false);
        }
        st.user = st.image.config.user.clone();
        Ok(st)
    }

    /// BuildKit's `prefixCommand`: `[stage 2/5] ` plus the text.
    fn describe(&self, st: &mut StageState, text: &str, on_build: bool) -> String {
        if st.cmd_total == 0 {
            return text.to_string();
        }
        st.cmd_index += 1;
        let width = st.cmd_total.to_string().len();
        let mut out = String::from("[");
        if !st.prefix_name.is_empty() {
            out.push_str(&st.prefix_name);
            out.push(' ');
        }
        out.push_str(&format!("{:>width$}/{}] ", st.cmd_index, st.cmd_total));
        if on_build {
            out.push_str("ONBUILD ");
        }
        out.push_str(text);
        out
    }

    /// The instruction text for a description: variables expanded where possible
    /// (`processCmdEnv`), keyword upper-cased.
    fn command_text(&self, st: &StageState, original: &str, raw_quotes: bool) -> String {
        let mut lexer = self.lexer.clone();
        if raw_quotes {
            lexer.raw_quotes = true;
            lexer.skip_unset_env = true;
        }
        // A trigger from a stage's ONBUILD keeps its heredoc bodies in `original`: only
        // the instruction line names the step.
        let original = original.lines().next().unwrap_or("").trim();
        let text = lexer
            .process_word(original, &st.env)
            .map(|r| r.value)
            .unwrap_or_else(|_| original.to_string());
        uppercase_cmd(&text)
    }

    /// Expands one word with the stage's variables; reports undefined ones.
    fn expand(&mut self, st: &StageState, word: &str, span: Span) -> Result<String, FrontendError> {
        let r = self
            .lexer
            .process_word(word, &st.env)
            .map_err(|e| FrontendError::Expand {
                word: word.to_string(),
                span,
                source: e,
            })?;
        self.report_unmatched(st, &r.unmatched, span);
        Ok(r.value)
    }

    fn report_unmatched(
        &mut self,
        st: &StageState,
        unmatched: &std::collections::BTreeSet<String>,
        span: Span,
    ) {
        for name in unmatched {
            if st.build_args.iter().any(|(k, _)| k == name) {
                continue;
            }
            let mut message = format!("Usage of undefined variable '${name}'");
            let keys = st.env.iter().map(|(k, _)| k.as_str());
            if let Some(k) = crate::values::suggest(name, keys) {
                message.push_str(&format!(" (did you mean ${k}?)"));
            }
            self.warnings.push(Warning {
                rule: "UndefinedVar",
                message,
                span,
            });
        }
    }

    /// Appends a history entry; `layer` says the step adds a layer. BuildKit marks the
    /// entries of RUN/COPY/ADD (not WORKDIR) with ` # buildkit`.
    fn history(&self, st: &mut StageState, created_by: String, layer: bool) {
        self.history_entry(st, created_by, layer, false);
    }

    fn history_entry(&self, st: &mut StageState, created_by: String, layer: bool, mark: bool) {
        let created_by = if mark {
            format!("{created_by} # buildkit")
        } else {
            created_by
        };
        st.image.history.push(History {
            created: None,
            created_by,
            author: String::new(),
            comment: HISTORY_COMMENT.into(),
            empty_layer: !layer,
        });
    }

    fn dispatch(&mut self, st: &mut StageState, cmd: &Cmd<'_>) -> Result<(), FrontendError> {
        let ins = &*cmd.ins;
        let span = ins.span;
        match &ins.command {
            Command::From(_) => Err(FrontendError::at(
                span,
                "FROM isn't allowed inside a stage's commands",
            )),
            Command::Run(run) => self.dispatch_run(st, cmd, run),
            Command::Copy(c) => self.dispatch_copy(st, cmd, c, false),
            Command::Add(c) => self.dispatch_copy(st, cmd, c, true),
            Command::Workdir(w) => self.dispatch_workdir(st, cmd, w),
            Command::Env(kvs) => self.dispatch_env(st, kvs, span),
            Command::Label(kvs) => self.dispatch_label(st, kvs, span),
            Command::Maintainer(m) => {
                st.image.author = Some(m.text.clone());
                self.history(st, format!("MAINTAINER {}", m.text), false);
                Ok(())
            }
            Command::Arg(decls) => self.dispatch_arg(st, decls, span),
            Command::Cmd(line) => self.dispatch_cmd(st, line, false),
            Command::Entrypoint(line) => self.dispatch_cmd(st, line, true),
            Command::Healthcheck(h) => self.dispatch_healthcheck(st, h, span),
            Command::Expose(ports) => self.dispatch_expose(st, ports, span),
            Command::User(u) => {
                let user = self.expand(st, &u.text, span)?;
                st.user = user.clone();
                st.image.config.user = user.clone();
                self.history(st, format!("USER {user}"), false);
                Ok(())
            }
            Command::Volume(vols) => self.dispatch_volume(st, vols, span),
            Command::StopSignal(sig) => {
                let sig = self.expand(st, &sig.text, span)?;
                crate::values::check_signal(&sig).map_err(|m| FrontendError::at(span, m))?;
                st.image.config.stop_signal = sig.clone();
                self.history(st, format!("STOPSIGNAL {sig}"), false);
                Ok(())
            }
            Command::Shell(words) => {
                let shell: Vec<String> = words.iter().map(|w| w.text.clone()).collect();
                st.image.config.shell = shell.clone();
                self.history(
                    st,
                    format!("SHELL {}", crate::values::go_list(&shell)),
                    false,
                );
                Ok(())
            }
            Command::Onbuild(inner) => {
                st.image.config.on_build.push(trigger_text(inner));
                Ok(())
            }
        }
    }
}

/// The text an `ONBUILD` stores: the trigger instruction as written, heredoc bodies
/// included (the parser keeps them in the nested instruction's `original`).
fn trigger_text(inner: &rbuild_parser::ast::Instruction) -> String {
    inner.original.trim().to_string()
}
