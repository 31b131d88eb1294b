//! `rbuild build --secret` and `--ssh` (buildx syntax): what `RUN --mount=type=secret`
//! and `RUN --mount=type=ssh` get. Secret values from environment variables are written
//! to private files in a temp dir that lives as long as the build, since the sandbox
//! reads every secret from a file.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::PathBuf;

use anyhow::Context as _;

/// The secrets of a build: id → host file.
#[derive(Debug, Default)]
pub struct Secrets {
    pub files: BTreeMap<String, PathBuf>,
    /// Holds the files of values taken from the environment.
    _values: Option<tempfile::TempDir>,
}

/// Where one `--secret` takes its value from.
#[derive(Debug, PartialEq, Eq)]
enum Source {
    File(PathBuf),
    Env(String),
}

/// Parses one `--secret` spec: `id=ID[,type=file|env][,src=PATH|source=PATH][,env=VAR]`.
/// Without a type, `env=` makes it an env secret. A file secret without a source reads
/// the file named like the id; an env secret without `env=` reads the variable named
/// like the id; a spec with only `env=VAR` has the id `VAR`.
fn parse_secret(spec: &str) -> anyhow::Result<(String, Source)> {
    let mut id = None;
    let mut kind = None;
    let mut src = None;
    let mut var = None;
    for field in spec.split(',') {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("invalid field {field:?}: want KEY=VALUE"))?;
        match k.trim().to_ascii_lowercase().as_str() {
            "id" => id = Some(v.to_owned()),
            "type" => match v {
                "file" | "env" => kind = Some(v.to_owned()),
                _ => anyhow::bail!("unsupported secret type {v:?}"),
            },
            "src" | "source" => src = Some(v.to_owned()),
            "env" => var = Some(v.to_owned()),
            other => anyhow::bail!("unexpected key {other:?}"),
        }
    }
    let kind = kind.unwrap_or_else(|| {
        if var.is_some() && src.is_none() {
            "env".to_owned()
        } else {
            "file".to_owned()
        }
    });
    let id = match (id, &var) {
        (Some(id), _) => id,
        (None, Some(var)) if kind == "env" => var.clone(),
        (None, _) => anyhow::bail!("missing id"),
    };
    if id.is_empty() {
        anyhow::bail!("missing id");
    }
    let source = if kind == "env" {
        if src.is_some() {
            anyhow::bail!("src is not valid for an env secret");
        }
        Source::Env(var.unwrap_or_else(|| id.clone()))
    } else {
        if var.is_some() {
            anyhow::bail!("env is not valid for a file secret");
        }
        Source::File(PathBuf::from(src.unwrap_or_else(|| id.clone())))
    };
    Ok((id, source))
}

/// Resolves every `--secret`: files must exist, variables must be set.
pub fn secrets(specs: &[String]) -> anyhow::Result<Secrets> {
    let mut out = Secrets::default();
    for spec in specs {
        let (id, source) =
            parse_secret(spec).with_context(|| format!("invalid --secret {spec:?}"))?;
        let file = match source {
            Source::File(path) => {
                let meta = std::fs::metadata(&path)
                    .with_context(|| format!("secret {id}: cannot read {}", path.display()))?;
                if !meta.is_file() {
                    anyhow::bail!("secret {id}: {} is not a file", path.display());
                }
                std::path::absolute(&path)
                    .with_context(|| format!("secret {id}: {}", path.display()))?
            }
            Source::Env(var) => {
                let value = std::env::var_os(&var).ok_or_else(|| {
                    anyhow::anyhow!("secret {id}: environment variable {var} is not set")
                })?;
                if out._values.is_none() {
                    out._values = Some(
                        tempfile::Builder::new()
                            .prefix("rbuild-secrets-")
                            .tempdir()
                            .context("cannot make a temp dir for secrets")?,
                    );
                }
                let dir = out._values.as_ref().map(|d| d.path().to_owned());
                let path = dir.unwrap_or_default().join(format!("{}", out.files.len()));
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                f.write_all(value.as_encoded_bytes())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                path
            }
        };
        out.files.insert(id, file);
    }
    Ok(out)
}

/// Resolves every `--ssh`: `default` or `ID` alone is `$SSH_AUTH_SOCK`, `ID=SOCKET` names
/// an agent socket. Private key files (which need an agent of our own) are refused.
pub fn ssh_agents(specs: &[String]) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let (id, paths) = match spec.split_once('=') {
            Some((id, paths)) => (id, Some(paths)),
            None => (spec.as_str(), None),
        };
        if id.is_empty() {
            anyhow::bail!("invalid --ssh {spec:?}: missing id");
        }
        let socket = match paths {
            None | Some("") => {
                PathBuf::from(std::env::var_os("SSH_AUTH_SOCK").ok_or_else(|| {
                    anyhow::anyhow!("--ssh {id}: SSH_AUTH_SOCK is not set; give ID=SOCKET")
                })?)
            }
            Some(p) if p.contains(',') => {
                anyhow::bail!("--ssh {spec:?}: only one agent socket per id is supported")
            }
            Some(p) => PathBuf::from(p),
        };
        let meta = std::fs::metadata(&socket)
            .with_context(|| format!("--ssh {id}: {}", socket.display()))?;
        if !meta.file_type().is_socket() {
            anyhow::bail!(
                "--ssh {id}: {} is not an agent socket (key files are not supported)",
                socket.display()
            );
        }
        let socket = std::path::absolute(&socket)
            .with_context(|| format!("--ssh {id}: {}", socket.display()))?;
        out.insert(id.to_owned(), socket);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(p: &str) -> Source {
        Source::File(PathBuf::from(p))
    }

    #[test]
    fn secret_specs_follow_buildx() {
        let ok = |s: &str| parse_secret(s).unwrap();
        assert_eq!(ok("id=a,src=/x"), ("a".into(), file("/x")));
        assert_eq!(ok("id=a,source=/x"), ("a".into(), file("/x")));
        assert_eq!(ok("id=a"), ("a".into(), file("a")));
        assert_eq!(ok("id=a,env=V"), ("a".into(), Source::Env("V".into())));
        assert_eq!(ok("env=V"), ("V".into(), Source::Env("V".into())));
        assert_eq!(ok("id=a,type=env"), ("a".into(), Source::Env("a".into())));
        assert_eq!(ok("type=file,id=a,src=f"), ("a".into(), file("f")));
        for bad in [
            "",
            "src=/x",
            "id=",
            "id=a,type=ssh",
            "id=a,bogus=1",
            "id=a,type=env,src=/x",
            "id=a,type=file,env=V",
            "noequals",
        ] {
            assert!(parse_secret(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sources_must_exist() {
        // An unset variable is an error, not an empty secret (no test sets this one).
        let var = "RBUILD_TEST_SECRET_VALUE_7F3";
        assert!(secrets(&[format!("id=s,env={var}")]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.txt");
        std::fs::write(&f, "file value").unwrap();
        let got = secrets(&[format!("id=f,src={}", f.display())]).unwrap();
        assert_eq!(got.files["f"], f);
        assert!(secrets(&[format!("id=d,src={}", dir.path().display())]).is_err());
        assert!(ssh_agents(&[format!("x={}", f.display())]).is_err());
        assert!(ssh_agents(&["=x".to_owned()]).is_err());
    }
}
