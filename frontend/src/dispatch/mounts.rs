//! `RUN --mount` values: BuildKit's CSV syntax, option names and checks, with every value
//! expanded with the stage's variables.

use rbuild_graph::CacheSharing;
use rbuild_parser::ast::Span;

use super::{Lowerer, StageState};
use crate::error::FrontendError;
use crate::values::csv_fields;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MountType {
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
pub(super) struct MountSpec {
    pub kind: MountType,
    pub source: String,
    pub target: String,
    pub readonly: bool,
    pub size: Option<u64>,
    pub id: String,
    pub sharing: Option<CacheSharing>,
    pub required: bool,
    pub env: Option<String>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
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

impl Lowerer<'_> {
    /// Parses one `--mount` value, expanding every option value with the stage's variables.
    pub(super) fn parse_mount(
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
}
