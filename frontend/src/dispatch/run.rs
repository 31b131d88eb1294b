//! `RUN`: the command line (shell wrapping, heredocs), `--mount` specs, network and
//! security modes, and the `Exec` vertex.

use rbuild_graph::{
    CacheSharing, ExecOp, FileOp, MkfileAction, Mount, MountKind, NetworkMode, Op, SecurityMode,
};
use rbuild_parser::ast::{CommandLine, RunCmd, Span};

use super::config::with_shell;
use super::{Lowerer, StageState};
use crate::error::FrontendError;
use crate::plan::Cmd;
use crate::values::{clean, csv_fields, go_list};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    fn name(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// A parsed `--mount` value (BuildKit's `instructions.Mount`).
#[derive(Debug, Clone)]
struct MountSpec {
    kind: MountType,
    source: String,
    target: String,
    readonly: bool,
    size: Option<u64>,
    id: String,
    sharing: Option<CacheSharing>,
    required: bool,
    env: Option<String>,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// docker/go-units `RAMInBytes`: `64m`, `1.5GiB`, `1024` (binary multiples).
fn ram_in_bytes(v: &str) -> Option<u64> {
    let t = v.trim();
    let num_len = t
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (num, unit) = t.split_at(num_len);
    let value: f64 = num.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return None,
    };
    Some((value * mult as f64) as u64)
}

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
    /// Parses one `--mount` value, expanding every option value with the stage's variables.
    fn parse_mount(
        &mut self,
        st: &StageState,
        raw: &str,
        span: Span,
    ) -> Result<MountSpec, FrontendError> {
        let err = |m: String| FrontendError::at(span, m);
        let fields =
            csv_fields(raw).map_err(|e| err(format!("failed to parse csv mounts: {e}")))?;
        let mut m = MountSpec {
            kind: MountType::Bind,
            source: String::new(),
            target: String::new(),
            readonly: false,
            size: None,
            id: String::new(),
            sharing: None,
            required: false,
            env: None,
            mode: None,
            uid: None,
            gid: None,
        };
        let mut ro_auto = true;
        for field in &fields {
            let (key, value) = match field.split_once('=') {
                Some((k, v)) => (k.to_ascii_lowercase(), v),
                None => {
                    let key = field.to_ascii_lowercase();
                    match key.as_str() {
                        "readonly" | "ro" => {
                            m.readonly = true;
                            ro_auto = false;
                        }
                        "readwrite" | "rw" => {
                            m.readonly = false;
                            ro_auto = false;
                        }
                        "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                            m.required = true;
                        }
                        "required" => {
                            return Err(err(format!(
                                "unexpected key '{key}' for mount type '{}'",
                                m.kind.name()
                            )));
                        }
                        _ => {
                            return Err(err(format!(
                                "invalid field '{field}' must be a key=value pair"
                            )));
                        }
                    }
                    continue;
                }
            };
            let value = self.expand(st, value, span)?;
            let bad_value = || err(format!("invalid value for {key}: {value}"));
            match key.as_str() {
                "type" => {
                    m.kind = match value.to_ascii_lowercase().as_str() {
                        "bind" => MountType::Bind,
                        "cache" => MountType::Cache,
                        "tmpfs" => MountType::Tmpfs,
                        "secret" => MountType::Secret,
                        "ssh" => MountType::Ssh,
                        _ => return Err(err(format!("unsupported mount type {value:?}"))),
                    }
                }
                "from" => {}
                "source" | "src" => m.source = value,
                "target" | "dst" | "destination" => m.target = value,
                "readonly" | "ro" => {
                    m.readonly = parse_bool(&value).ok_or_else(bad_value)?;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = !parse_bool(&value).ok_or_else(bad_value)?;
                    ro_auto = false;
                }
                "required" => {
                    if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                        return Err(err(format!(
                            "unexpected key '{key}' for mount type '{}'",
                            m.kind.name()
                        )));
                    }
                    m.required = parse_bool(&value).ok_or_else(bad_value)?;
                }
                "size" => {
                    if m.kind != MountType::Tmpfs {
                        return Err(err(format!(
                            "unexpected key '{key}' for mount type '{}'",
                            m.kind.name()
                        )));
                    }
                    m.size = Some(ram_in_bytes(&value).ok_or_else(bad_value)?);
                }
                "id" => m.id = value,
                "sharing" => {
                    m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                        "shared" => CacheSharing::Shared,
                        "private" => CacheSharing::Private,
                        "locked" => CacheSharing::Locked,
                        _ => return Err(err(format!("unsupported sharing value {value:?}"))),
                    })
                }
                "mode" => {
                    m.mode = Some(
                        u32::from_str_radix(&value, 8)
                            .map_err(|_| err(format!("invalid value {value} for mode")))?,
                    )
                }
                "uid" => {
                    m.uid = Some(
                        value
                            .parse()
                            .map_err(|_| err(format!("invalid value {value} for uid")))?,
                    )
                }
                "gid" => {
                    m.gid = Some(
                        value
                            .parse()
                            .map_err(|_| err(format!("invalid value {value} for gid")))?,
                    )
                }
                "env" => m.env = Some(value),
                _ => return Err(err(format!("unexpected key '{key}' in '{field}'"))),
            }
        }
        let file_info_allowed = matches!(
            m.kind,
            MountType::Secret | MountType::Ssh | MountType::Cache
        );
        if !file_info_allowed {
            for (set, what) in [
                (m.mode.is_some(), "mode"),
                (m.uid.is_some(), "uid"),
                (m.gid.is_some(), "gid"),
            ] {
                if set {
                    return Err(err(format!(
                        "{what} not allowed for {:?} type mounts",
                        m.kind.name()
                    )));
                }
            }
        }
        if ro_auto {
            m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
        }
        if m.kind == MountType::Secret {
            let has_from = fields.iter().any(|f| {
                f.split_once('=')
                    .is_some_and(|(k, _)| k.eq_ignore_ascii_case("from"))
            });
            if has_from {
                return Err(err("secret mount should not have a from".into()));
            }
            if m.sharing.is_some() {
                return Err(err("secret mount should not define sharing".into()));
            }
            if m.source.is_empty() && m.target.is_empty() && m.id.is_empty() {
                return Err(err(
                    "invalid secret mount. one of source, target required".into()
                ));
            }
            if !m.source.is_empty() && !m.id.is_empty() {
                return Err(err("both source and id can't be set".into()));
            }
        }
        if m.sharing.is_some() && m.kind != MountType::Cache {
            return Err(err(format!(
                "invalid cache sharing set for {} mount",
                m.kind.name()
            )));
        }
        Ok(m)
    }

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
        let op = Op::Exec(ExecOp {
            args: args.clone(),
            env: st.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cwd: st.cwd.clone(),
            user: st.user.clone(),
            network,
            security,
            platform: st.platform.clone(),
            mounts,
            proxy_env: self.proxy.clone(),
        });
        st.root = self.add(op, inputs, description, Some(st), Some(span))?;
        let history = format!("RUN {}", run_command_string(&args, st));
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
