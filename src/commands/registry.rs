//! Settings shared by the registry commands: the client configuration from flags,
//! `RBUILD_REGISTRY_MIRRORS` and the config file, and the tokio runtime the async client
//! runs on.

use std::sync::Arc;

use anyhow::Context as _;
use rbuild_image::registry::auth::DockerConfig;
use rbuild_image::registry::{RegistryClient, RegistryConfig};

use super::settings::ConfigFile;
use crate::cli::RegistryArgs;

/// Comma-separated Docker Hub mirrors, used when no `--registry-mirror` is given.
const MIRRORS_ENV: &str = "RBUILD_REGISTRY_MIRRORS";

/// The client configuration: mirrors from `--registry-mirror`, else `RBUILD_REGISTRY_MIRRORS`,
/// else the config file's `registry-mirrors`; insecure registries from the flags and the
/// config file's `insecure-registries` together.
pub fn config(args: &RegistryArgs) -> anyhow::Result<RegistryConfig> {
    config_with(args, std::env::var(MIRRORS_ENV).ok(), &ConfigFile::load()?)
}

fn config_with(
    args: &RegistryArgs,
    env_mirrors: Option<String>,
    file: &ConfigFile,
) -> anyhow::Result<RegistryConfig> {
    let mut raw = args.mirrors.clone();
    if raw.is_empty()
        && let Some(list) = env_mirrors
    {
        raw = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
    }
    if raw.is_empty() {
        raw = file.registry_mirrors.clone();
    }
    let mut insecure = args.insecure.clone();
    for host in &file.insecure_registries {
        if !insecure.contains(host) {
            insecure.push(host.clone());
        }
    }
    let mirrors = raw
        .iter()
        .map(|m| url::Url::parse(m).with_context(|| format!("invalid registry mirror URL {m:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(RegistryConfig {
        insecure,
        mirrors,
        hub_fallback: !args.no_hub_fallback,
        ..RegistryConfig::default()
    })
}

/// A client with credentials from docker's `config.json` (`$DOCKER_CONFIG` or `~/.docker`).
pub fn client(config: RegistryConfig) -> anyhow::Result<RegistryClient> {
    Ok(RegistryClient::new(
        config,
        Arc::new(DockerConfig::from_env()),
    )?)
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(mirrors: &[&str], insecure: &[&str]) -> RegistryArgs {
        RegistryArgs {
            mirrors: mirrors.iter().map(|s| s.to_string()).collect(),
            insecure: insecure.iter().map(|s| s.to_string()).collect(),
            no_hub_fallback: false,
        }
    }

    #[test]
    fn flags_then_env_then_config_file_for_mirrors_and_insecure_hosts_merge() {
        let file = ConfigFile {
            registry_mirrors: vec!["http://file:5000".into()],
            insecure_registries: vec!["a:5000".into(), "b:5000".into()],
        };
        let mirrors = |c: RegistryConfig| -> Vec<String> {
            c.mirrors.iter().map(|u| u.to_string()).collect()
        };
        let c = config_with(&args(&[], &[]), None, &file).unwrap();
        assert_eq!(c.insecure, ["a:5000", "b:5000"]);
        assert_eq!(mirrors(c), ["http://file:5000/"]);
        let c = config_with(
            &args(&[], &["b:5000", "c"]),
            Some("http://env/".into()),
            &file,
        )
        .unwrap();
        assert_eq!(c.insecure, ["b:5000", "c", "a:5000"]);
        assert_eq!(mirrors(c), ["http://env/"]);
        let c = config_with(
            &args(&["http://flag/"], &[]),
            Some("http://env/".into()),
            &file,
        )
        .unwrap();
        assert_eq!(mirrors(c), ["http://flag/"]);
        let bad = ConfigFile {
            registry_mirrors: vec!["not a url".into()],
            ..ConfigFile::default()
        };
        assert!(config_with(&args(&[], &[]), None, &bad).is_err());
    }
}
