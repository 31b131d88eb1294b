//! `RUN`: the command line (shell wrapping, heredocs), `--mount` specs, network and
//! security modes, and the `Exec` vertex.

use rbuild_graph::{ExecOp, FileOp, MkfileAction, Mount, MountKind, NetworkMode, Op, SecurityMode};
use rbuild_parser::ast::{CommandLine, RunCmd};

use super::config::with_shell;
use super::mounts::MountType;
use super::{Lowerer, StageState};
use crate::error::FrontendError;
use crate::plan::Cmd;
use crate::values::{clean, csv_fields, go_list};

/// Whether `cmd` is exactly one heredoc word (`<<EOF`, `<<-"EOF"`), BuildKit's
/// `MustParseHeredoc`.
fn is_heredoc_word(cmd: &str) -> bool {
    let s = cmd.trim().trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(rest) = s.strip_prefix("<<") else {
        return false;
    };
    let rest = rest.strip_prefix('-').unwrap_or(rest).trim_start();
    !rest.is_empty() && !rest.contains(char::is_whitespace) && !rest.contains('<')
}

/// First line of a heredoc body, `...` when there are more (`summarizeHeredoc`).
fn summarize_heredoc(doc: &str) -> String {
    let doc = doc.trim();
    let mut lines = doc.split('\n');
    let first = lines.next().unwrap_or("").trim_end_matches('\r');
    if lines.next().is_some() {
        format!("{first}...")
    } else {
        first.to_string()
    }
}

/// History text of a `RUN`: `|N K=V ... args` with the stage's build args (BuildKit's
/// `runCommandString`).
fn run_command_string(args: &[String], st: &StageState) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (k, v) in &st.build_args {
        let value = st
            .env
            .iter()
            .find(|(ek, _)| ek == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| v.clone().unwrap_or_default());
        match pairs.iter_mut().find(|(pk, _)| pk == k) {
            Some(slot) => slot.1 = value,
            None => pairs.push((k.clone(), value)),
        }
    }
    let mut parts = Vec::new();
    if !pairs.is_empty() {
        parts.push(format!("|{}", pairs.len()));
        parts.extend(pairs.into_iter().map(|(k, v)| format!("{k}={v}")));
    }
    parts.extend(args.iter().cloned());
    parts.join(" ")
}

impl Lowerer<'_> {
    pub(super) fn dispatch_run(
        &mut self,
        st: &mut StageState,
        cmd: &Cmd<'_>,
        run: &RunCmd,
    ) -> Result<(), FrontendError> {
        let span = cmd.ins.span;
        let mut inputs = vec![st.root.clone()];
        let mut mounts = Vec::new();
        let mut ssh_count = 0usize;

        for (k, raw) in run.mounts.iter().enumerate() {
            let m = self.parse_mount(st, &raw.text, span)?;
            let from = cmd.mount_from.get(k).copied().flatten();
            let kind = match m.kind {
                MountType::Tmpfs => MountKind::Tmpfs { size: m.size },
                MountType::Secret => {
                    let id = if m.source.is_empty() {
                        m.id.clone()
                    } else {
                        m.source.clone()
                    };
                    let id = if id.is_empty() {
                        if m.target.is_empty() {
                            return Err(FrontendError::at(span, "one of source, target required"));
                        }
                        base_name(&m.target)
                    } else {
                        id
                    };
                    let path = match (&m.env, m.target.is_empty()) {
                        (None, true) => Some(format!("/run/secrets/{}", base_name(&id))),
                        (_, false) => Some(m.target.clone()),
                        (Some(_), true) => None,
                    };
                    MountKind::Secret {
                        id,
                        path,
                        env: m.env.clone(),
                        required: m.required,
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                        mode: m.mode.unwrap_or(0o400),
                    }
                }
                MountType::Ssh => {
                    if !m.source.is_empty() {
                        return Err(FrontendError::at(span, "ssh does not support source"));
                    }
                    ssh_count += 1;
                    MountKind::Ssh {
                        id: if m.id.is_empty() {
                            "default".into()
                        } else {
                            m.id.clone()
                        },
                        required: m.required,
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                        mode: m.mode.unwrap_or(0o600),
                    }
                }
                MountType::Bind | MountType::Cache => {
                    let input = match from {
                        Some(src) => {
                            let what = format!(
                                "cannot mount from stage {:?} to {:?}, stage needs to be defined before current command",
                                mount_from_text(&raw.text),
                                m.target
                            );
                            let d = self.source_root(src, &what, span)?;
                            Some(push_input(&mut inputs, d))
                        }
                        None if m.kind == MountType::Bind => {
                            let d = self.context()?;
                            Some(push_input(&mut inputs, d))
                        }
                        None => None,
                    };
                    let source = clean(&format!("/{}", m.source));
                    if m.kind == MountType::Bind {
                        MountKind::Bind {
                            // A bind mount always has an input (context or `from`).
                            input: input.unwrap_or(0),
                            source,
                            readonly: m.readonly,
                        }
                    } else {
                        MountKind::Cache {
                            id: if m.id.is_empty() {
                                clean(&m.target)
                            } else {
                                m.id.clone()
                            },
                            sharing: m.sharing.unwrap_or_default(),
                            input,
                            source,
                            readonly: m.readonly,
                            uid: m.uid,
                            gid: m.gid,
                            mode: m.mode,
                        }
                    }
                }
            };
            let target = match kind {
                MountKind::Secret { .. } => m.target.clone(),
                MountKind::Ssh { .. } if m.target.is_empty() => {
                    format!("/run/buildkit/ssh_agent.{}", ssh_count - 1)
                }
                MountKind::Ssh { .. } => m.target.clone(),
                _ => {
                    let t = if clean(&m.target).starts_with('/') {
                        m.target.clone()
                    } else {
                        clean(&format!("/{}/{}", st.cwd, m.target))
                    };
                    if clean(&t) == "/" {
                        return Err(FrontendError::at(
                            span,
                            format!("invalid mount target {:?}", clean(&t)),
                        ));
                    }
                    t
                }
            };
            mounts.push(Mount { target, kind });
        }

        let network = match run.network.as_ref().map(|w| w.text.as_str()) {
            None | Some("default") => NetworkMode::Default,
            Some("none") => NetworkMode::None,
            Some("host") => NetworkMode::Host,
            Some(other) => {
                return Err(FrontendError::at(
                    span,
                    format!("invalid network mode {other:?}"),
                ));
            }
        };
        let security = match run.security.as_ref().map(|w| w.text.as_str()) {
            None | Some("sandbox") => SecurityMode::Sandbox,
            Some("insecure") => SecurityMode::Insecure,
            Some(other) => {
                return Err(FrontendError::at(
                    span,
                    format!("security {other:?} is not valid"),
                ));
            }
        };

        let (mut args, prepend_shell) = match &run.cmd {
            CommandLine::Exec(words) => (words.iter().map(|w| w.text.clone()).collect(), false),
            CommandLine::Shell(w) => (vec![w.text.clone()], true),
        };
        let mut description_suffix = String::new();
        if let Some(first) = run.heredocs.first() {
            if args.len() != 1 || !prepend_shell {
                return Err(FrontendError::at(
                    span,
                    format!(
                        "parsing produced an invalid run command: {}",
                        go_list(&args)
                    ),
                ));
            }
            if is_heredoc_word(&args[0]) {
                let data = first.content.clone();
                if st.image.os != "windows" && data.starts_with("#!") {
                    // A script with a shebang: written to a file and run from there.
                    let scratch = self.scratch()?;
                    let op = Op::File(FileOp::Mkfile(MkfileAction {
                        path: format!("/{}", first.name),
                        mode: 0o755,
                        data,
                        owner: None,
                    }));
                    let file = self.add(
                        op,
                        vec![scratch],
                        "preparing inline document".into(),
                        Some(st),
                        Some(span),
                    )?;
                    let input = push_input(&mut inputs, file);
                    mounts.push(Mount {
                        target: "/dev/pipes/".into(),
                        kind: MountKind::Bind {
                            input,
                            source: "/".into(),
                            readonly: true,
                        },
                    });
                    args = vec![clean(&format!("/dev/pipes/{}", first.name))];
                } else {
                    args = vec![data];
                }
                description_suffix = format!(" ({})", summarize_heredoc(&first.content));
            } else {
                let mut full = args[0].clone();
                for h in &run.heredocs {
                    full.push('\n');
                    full.push_str(&h.content);
                    full.push_str(&h.name);
                }
                args = vec![full];
            }
        }
        if prepend_shell {
            args = with_shell(st, args);
        }

        let text = self.command_text(st, &cmd.ins.original, true);
        let description = self.describe(st, &format!("{text}{description_suffix}"), cmd.on_build);
        // The history text reads the args, which then move into the op.
        let history = format!("RUN {}", run_command_string(&args, st));
        let op = Op::Exec(ExecOp {
            args,
            env: st
                .env
                .iter()
                .map(|(k, v)| [k.as_str(), v].join("="))
                .collect(),
            cwd: st.cwd.clone(),
            user: st.user.clone(),
            network,
            security,
            platform: st.platform.clone(),
            mounts,
            proxy_env: self.proxy.clone(),
        });
        st.root = self.add(op, inputs, description, Some(st), Some(span))?;
        self.history_entry(st, history, true, true);
        Ok(())
    }
}

/// Adds `d` to the input list unless present; returns its index.
pub(super) fn push_input(inputs: &mut Vec<rbuild_graph::Digest>, d: rbuild_graph::Digest) -> usize {
    match inputs.iter().position(|x| *x == d) {
        Some(i) => i,
        None => {
            inputs.push(d);
            inputs.len() - 1
        }
    }
}

fn base_name(p: &str) -> String {
    let c = clean(p);
    match c.rsplit_once('/') {
        Some((_, b)) if !b.is_empty() => b.to_string(),
        _ => c,
    }
}

/// The raw `from=` value of a mount, for messages.
fn mount_from_text(raw: &str) -> String {
    csv_fields(raw)
        .unwrap_or_default()
        .iter()
        .find_map(|f| {
            let (k, v) = f.split_once('=')?;
            k.eq_ignore_ascii_case("from").then(|| v.to_string())
        })
        .unwrap_or_default()
}
