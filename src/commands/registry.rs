//! Settings shared by the registry commands: the client configuration from flags and
//! `RBUILD_REGISTRY_MIRRORS`, and the tokio runtime the async client runs on.

use std::sync::Arc;

use anyhow::Context as _;
use rbuild_image::registry::auth::DockerConfig;
use rbuild_image::registry::{RegistryClient, RegistryConfig};

use crate::cli::RegistryArgs;

/// Comma-separated Docker Hub mirrors, used when no `--registry-mirror` is given.
const MIRRORS_ENV: &str = "RBUILD_REGISTRY_MIRRORS";

pub fn config(args: &RegistryArgs) -> anyhow::Result<RegistryConfig> {
    let mut raw = args.mirrors.clone();
    if raw.is_empty()
        && let Ok(list) = std::env::var(MIRRORS_ENV)
    {
        raw = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
    }
    let mirrors = raw
        .iter()
        .map(|m| url::Url::parse(m).with_context(|| format!("invalid registry mirror URL {m:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(RegistryConfig {
        insecure: args.insecure.clone(),
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
