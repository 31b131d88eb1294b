//! Resolved settings: those of the commands that read a Dockerfile (where it is, its text,
//! the front-end options), and rbuild's config file.
//!
//! The config file is TOML, read from `$RBUILD_CONFIG` when set, else
//! `/etc/rbuild/config.toml` when running as root, else
//! `$XDG_CONFIG_HOME/rbuild/config.toml` (`~/.config/rbuild/config.toml`). A missing file
//! means defaults; a file that does not parse, or has unknown keys, is an error naming it.
//! Its registry keys mean what they mean in docker's `daemon.json`:
//!
//! ```toml
//! # Docker Hub mirrors, tried in order before Docker Hub for pulls (and `FROM`).
//! registry-mirrors = ["http://127.0.0.1:5000"]
//! # Registries that may be reached over plain HTTP (localhost and 127.0.0.0/8 always may).
//! insecure-registries = ["registry.internal:5000"]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rbuild_frontend::BuildOptions;
use serde::Deserialize;

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

/// Names the config file explicitly.
pub const CONFIG_ENV: &str = "RBUILD_CONFIG";

/// rbuild's config file; see the module docs.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub registry_mirrors: Vec<String>,
    #[serde(default)]
    pub insecure_registries: Vec<String>,
}

/// Where the config file is looked for, given the environment and whether we are root.
pub fn config_path(env: impl Fn(&str) -> Option<String>, is_root: bool) -> Option<PathBuf> {
    let set = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(path) = set(CONFIG_ENV) {
        return Some(PathBuf::from(path));
    }
    if is_root {
        return Some(PathBuf::from("/etc/rbuild/config.toml"));
    }
    // The XDG spec says to ignore a relative XDG_CONFIG_HOME.
    let base = match set("XDG_CONFIG_HOME").filter(|d| d.starts_with('/')) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(set("HOME")?).join(".config"),
    };
    Some(base.join("rbuild/config.toml"))
}

impl ConfigFile {
    /// Reads the config file from where [`config_path`] says; defaults when it is missing.
    pub fn load() -> anyhow::Result<ConfigFile> {
        let is_root = rustix::process::geteuid().is_root();
        match config_path(|k| std::env::var(k).ok(), is_root) {
            Some(path) => ConfigFile::read(&path),
            None => Ok(ConfigFile::default()),
        }
    }

    /// Reads `path`; a missing file gives the defaults.
    pub fn read(path: &Path) -> anyhow::Result<ConfigFile> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ConfigFile::default());
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read config {}", path.display()));
            }
        };
        ConfigFile::parse(&text).with_context(|| format!("invalid config {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<ConfigFile> {
        // toml's messages span several lines (a caret under the spot); one line is enough.
        toml::from_str(text).map_err(|e| {
            let message = e.message().to_owned();
            match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    anyhow::anyhow!("line {line}: {message}")
                }
                None => anyhow::anyhow!("{message}"),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_location_follows_env_then_root_then_xdg() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            config_path(env(&[("RBUILD_CONFIG", "/x.toml"), ("HOME", "/h")]), true),
            Some(PathBuf::from("/x.toml"))
        );
        assert_eq!(
            config_path(env(&[("HOME", "/h")]), true),
            Some(PathBuf::from("/etc/rbuild/config.toml"))
        );
        assert_eq!(
            config_path(env(&[("HOME", "/h")]), false),
            Some(PathBuf::from("/h/.config/rbuild/config.toml"))
        );
        assert_eq!(
            config_path(env(&[("XDG_CONFIG_HOME", "/c"), ("HOME", "/h")]), false),
            Some(PathBuf::from("/c/rbuild/config.toml"))
        );
        assert_eq!(config_path(env(&[]), false), None);
    }

    #[test]
    fn config_file_parses_docker_daemon_json_keys_and_rejects_typos() {
        let c = ConfigFile::parse(
            "registry-mirrors = [\"http://127.0.0.1:5000\"]\ninsecure-registries = [\"r:5000\"]\n",
        )
        .unwrap();
        assert_eq!(c.registry_mirrors, ["http://127.0.0.1:5000"]);
        assert_eq!(c.insecure_registries, ["r:5000"]);
        assert_eq!(ConfigFile::parse("").unwrap(), ConfigFile::default());
        let err = ConfigFile::parse("\nregistry-mirror = []\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("line 2: unknown field `registry-mirror`"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            ConfigFile::read(&dir.path().join("missing.toml")).unwrap(),
            ConfigFile::default()
        );
    }

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
