//! Resolved settings shared by the commands that read a Dockerfile: where it is, its text,
//! and the front-end options (target, build args).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rbuild_frontend::BuildOptions;

use crate::cli::DockerfileArgs;

#[derive(Debug)]
pub struct DockerfileSettings {
    /// How to name the file in diagnostics (as the user gave it).
    pub display: String,
    pub source: String,
    pub options: BuildOptions,
    #[allow(dead_code)] // read by `rbuild build` once it lands
    pub context: PathBuf,
}

impl DockerfileSettings {
    pub fn resolve(args: &DockerfileArgs) -> anyhow::Result<Self> {
        let path = match &args.file {
            Some(f) => f.clone(),
            None => args.context.join("Dockerfile"),
        };
        let bytes = std::fs::read(&path)
            .with_context(|| format!("cannot read Dockerfile {}", path.display()))?;
        let source = String::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("{}: not valid UTF-8", path.display()))?;
        let mut options = BuildOptions {
            target: args.target.clone(),
            build_args: parse_build_args(&args.build_args, |k| std::env::var(k).ok())?,
            ..BuildOptions::default()
        };
        options.dockerfile_name = file_name(&path);
        Ok(Self {
            display: path.display().to_string(),
            source,
            options,
            context: args.context.clone(),
        })
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".into())
}

/// `K=V` sets K; a bare `K` takes K from the environment and is skipped when unset, as
/// `docker build --build-arg` does.
pub fn parse_build_args(
    raw: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for arg in raw {
        match arg.split_once('=') {
            Some(("", _)) => anyhow::bail!("invalid build arg {arg:?}: empty name"),
            Some((k, v)) => {
                out.insert(k.to_string(), v.to_string());
            }
            None => {
                if let Some(v) = env(arg) {
                    out.insert(arg.clone(), v);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_args_from_flags_and_env() {
        let raw = vec!["A=1".to_string(), "B".into(), "C".into(), "D=x=y".into()];
        let args = parse_build_args(&raw, |k| (k == "B").then(|| "from-env".to_string())).unwrap();
        assert_eq!(args.get("A").map(String::as_str), Some("1"));
        assert_eq!(args.get("B").map(String::as_str), Some("from-env"));
        assert!(!args.contains_key("C"));
        assert_eq!(args.get("D").map(String::as_str), Some("x=y"));
        assert!(parse_build_args(&["=v".to_string()], |_| None).is_err());
    }
}
