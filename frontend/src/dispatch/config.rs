//! Instructions that change the image config and the stage's variables: `ENV`, `LABEL`,
//! `ARG`, `CMD`, `ENTRYPOINT`, `HEALTHCHECK`, `EXPOSE`, `VOLUME`, `WORKDIR`.

use rbuild_graph::{FileOp, Healthcheck, MkdirAction, Op};
use rbuild_parser::ast::{ArgDecl, CommandLine, HealthcheckCmd, KeyValue, Span, Word};

use super::{Lowerer, StageState};
use crate::duration;
use crate::error::FrontendError;
use crate::plan::{Cmd, set_var};
use crate::values::{go_list, go_quote_list, normalize_path, parse_ports};

/// The shell that wraps shell-form commands: the image's `SHELL`, else `/bin/sh -c`
/// (`cmd /S /C` on Windows).
pub(super) fn with_shell(st: &StageState, args: Vec<String>) -> Vec<String> {
    let mut shell = if !st.image.config.shell.is_empty() {
        st.image.config.shell.clone()
    } else if st.image.os == "windows" {
        vec!["cmd".into(), "/S".into(), "/C".into()]
    } else {
        vec!["/bin/sh".into(), "-c".into()]
    };
    shell.push(args.join(" "));
    shell
}

fn command_line(st: &StageState, line: &CommandLine) -> Vec<String> {
    match line {
        CommandLine::Exec(words) => words.iter().map(|w| w.text.clone()).collect(),
        CommandLine::Shell(w) => with_shell(st, vec![w.text.clone()]),
    }
}

impl Lowerer<'_> {
    /// Expands the keys and values of ENV/LABEL pairs, every pair with the variables from
    /// before the instruction.
    fn expand_pairs(
        &mut self,
        st: &StageState,
        kvs: &[KeyValue],
        span: Span,
    ) -> Result<Vec<(String, String)>, FrontendError> {
        kvs.iter()
            .map(|kv| {
                Ok((
                    self.expand(st, &kv.key.text, span)?,
                    self.expand(st, &kv.value.text, span)?,
                ))
            })
            .collect()
    }

    pub(super) fn dispatch_env(
        &mut self,
        st: &mut StageState,
        kvs: &[KeyValue],
        span: Span,
    ) -> Result<(), FrontendError> {
        let pairs = self.expand_pairs(st, kvs, span)?;
        let mut message = String::from("ENV");
        for (k, v) in pairs {
            message.push_str(&format!(" {k}={v}"));
            set_var(&mut st.env, &k, &v);
            st.image.config.set_env(&k, &v);
        }
        self.history(st, message, false);
        Ok(())
    }

    pub(super) fn dispatch_label(
        &mut self,
        st: &mut StageState,
        kvs: &[KeyValue],
        span: Span,
    ) -> Result<(), FrontendError> {
        let pairs = self.expand_pairs(st, kvs, span)?;
        let mut message = String::from("LABEL");
        for (k, v) in pairs {
            message.push_str(&format!(" {k}={v}"));
            st.image.config.labels.insert(k, v);
        }
        self.history(st, message, false);
        Ok(())
    }

    /// A stage `ARG`: the build arg wins, else the default (expanded), else the global
    /// arg of that name. A value enters the stage's variables (and so every later `RUN`).
    pub(super) fn dispatch_arg(
        &mut self,
        st: &mut StageState,
        decls: &[ArgDecl],
        span: Span,
    ) -> Result<(), FrontendError> {
        let mut parts = Vec::with_capacity(decls.len());
        for decl in decls {
            let key = decl.name.text.clone();
            let value = if let Some(v) = self.opts.build_args.get(&key) {
                Some(v.clone())
            } else if let Some(default) = &decl.default {
                Some(self.expand(st, &default.text, span)?)
            } else {
                self.plan
                    .global_env
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.clone())
            };
            if let Some(v) = &value {
                set_var(&mut st.env, &key, v);
                parts.push(format!("{key}={v}"));
            } else {
                parts.push(key.clone());
            }
            st.build_args.push((key, value));
        }
        self.history(st, format!("ARG {}", parts.join(" ")), false);
        Ok(())
    }

    pub(super) fn dispatch_cmd(
        &mut self,
        st: &mut StageState,
        line: &CommandLine,
        entrypoint: bool,
    ) -> Result<(), FrontendError> {
        let args = command_line(st, line);
        let quoted = go_quote_list(&args);
        if entrypoint {
            st.image.config.entrypoint = Some(args);
            if !st.cmd_set {
                st.image.config.cmd = None;
            }
            self.history(st, format!("ENTRYPOINT {quoted}"), false);
        } else {
            st.image.config.cmd = Some(args);
            st.image.config.args_escaped = true;
            st.cmd_set = true;
            self.history(st, format!("CMD {quoted}"), false);
        }
        Ok(())
    }

    pub(super) fn dispatch_healthcheck(
        &mut self,
        st: &mut StageState,
        h: &HealthcheckCmd,
        span: Span,
    ) -> Result<(), FrontendError> {
        let hc = match h {
            HealthcheckCmd::None => Healthcheck {
                test: vec!["NONE".into()],
                ..Default::default()
            },
            HealthcheckCmd::Cmd {
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
                cmd,
            } => {
                let test = match cmd {
                    CommandLine::Exec(words) => {
                        let mut t = vec!["CMD".to_string()];
                        t.extend(words.iter().map(|w| w.text.clone()));
                        t
                    }
                    CommandLine::Shell(w) => vec!["CMD-SHELL".into(), w.text.clone()],
                };
                if test.len() < 2 || test[1..].iter().all(String::is_empty) {
                    return Err(FrontendError::at(
                        span,
                        "Missing command after HEALTHCHECK CMD",
                    ));
                }
                let retries = match retries {
                    None => 0,
                    Some(w) => {
                        let n: i32 = w.text.parse().map_err(|_| {
                            FrontendError::at(
                                span,
                                format!(
                                    "strconv.ParseInt: parsing {}: invalid syntax",
                                    crate::values::go_quote(&w.text)
                                ),
                            )
                        })?;
                        if n < 0 {
                            return Err(FrontendError::at(
                                span,
                                format!("--retries cannot be negative ({n})"),
                            ));
                        }
                        i64::from(n)
                    }
                };
                Healthcheck {
                    test,
                    interval: interval_flag(interval.as_ref(), "interval", span)?,
                    timeout: interval_flag(timeout.as_ref(), "timeout", span)?,
                    start_period: interval_flag(start_period.as_ref(), "start-period", span)?,
                    start_interval: interval_flag(start_interval.as_ref(), "start-interval", span)?,
                    retries,
                }
            }
        };
        let message = format!(
            "HEALTHCHECK {{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
            go_list(&hc.test),
            duration::format(hc.interval),
            duration::format(hc.timeout),
            duration::format(hc.start_period),
            duration::format(hc.start_interval),
            hc.retries
        );
        st.image.config.healthcheck = Some(hc);
        self.history(st, message, false);
        Ok(())
    }

    pub(super) fn dispatch_expose(
        &mut self,
        st: &mut StageState,
        ports: &[Word],
        span: Span,
    ) -> Result<(), FrontendError> {
        // BuildKit sorts the raw words before expanding them.
        let mut raw: Vec<&str> = ports.iter().map(|w| w.text.as_str()).collect();
        raw.sort_unstable();
        let mut words = Vec::new();
        for p in raw {
            let r = self
                .lexer
                .process_words(p, &st.env)
                .map_err(|e| FrontendError::Expand {
                    word: p.to_string(),
                    span,
                    source: e,
                })?;
            words.extend(r.value);
        }
        let parsed = parse_ports(&words).map_err(|m| FrontendError::at(span, m))?;
        for p in &parsed {
            st.image
                .config
                .exposed_ports
                .insert(p.clone(), rbuild_graph::Empty {});
        }
        self.history(st, format!("EXPOSE {}", go_list(&parsed)), false);
        Ok(())
    }

    pub(super) fn dispatch_volume(
        &mut self,
        st: &mut StageState,
        vols: &[Word],
        span: Span,
    ) -> Result<(), FrontendError> {
        let mut expanded = Vec::with_capacity(vols.len());
        for v in vols {
            let v = self.expand(st, &v.text, span)?;
            if v.is_empty() {
                return Err(FrontendError::at(
                    span,
                    "VOLUME specified can not be an empty string",
                ));
            }
            expanded.push(v);
        }
        for v in &expanded {
            st.image
                .config
                .volumes
                .insert(v.clone(), rbuild_graph::Empty {});
        }
        self.history(st, format!("VOLUME {}", go_list(&expanded)), false);
        Ok(())
    }

    /// `WORKDIR`: joins a relative path to the previous one and creates the directory
    /// (owned by the current user) unless it is `/`.
    pub(super) fn dispatch_workdir(
        &mut self,
        st: &mut StageState,
        cmd: &Cmd<'_>,
        w: &Word,
    ) -> Result<(), FrontendError> {
        let span = cmd.ins.span;
        let path = self.expand(st, &w.text, span)?;
        if path.is_empty() {
            return Err(FrontendError::at(
                span,
                "WORKDIR requires exactly one argument",
            ));
        }
        let wd = normalize_path(&st.image.config.working_dir, &path, false);
        st.image.config.working_dir = wd.clone();
        st.cwd = wd.clone();
        let layer = wd != "/";
        if layer {
            let text = self.command_text(st, &cmd.ins.original, false);
            let description = self.describe(st, &text, cmd.on_build);
            let owner = (!st.image.config.user.is_empty()).then(|| st.image.config.user.clone());
            let op = Op::File(FileOp::Mkdir(MkdirAction {
                path: wd.clone(),
                mode: 0o755,
                parents: true,
                owner,
            }));
            st.root = self.add(op, vec![st.root.clone()], description, Some(st), Some(span))?;
        }
        self.history(st, format!("WORKDIR {wd}"), layer);
        Ok(())
    }
}

/// A `HEALTHCHECK` duration flag: 0 when absent or zero, at least 1ms otherwise.
fn interval_flag(w: Option<&Word>, name: &str, span: Span) -> Result<i64, FrontendError> {
    let Some(w) = w else { return Ok(0) };
    if w.text.is_empty() {
        return Ok(0);
    }
    let d = duration::parse(&w.text).map_err(|m| FrontendError::at(span, m))?;
    if d == 0 {
        return Ok(0);
    }
    if d < 1_000_000 {
        return Err(FrontendError::at(
            span,
            format!("Interval {name:?} cannot be less than 1ms"),
        ));
    }
    Ok(d)
}
