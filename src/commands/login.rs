//! `rbuild login` / `rbuild logout`: check credentials against the registry, then write or
//! remove them in docker's `config.json` (or its credential helper), as docker does.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use rbuild_image::registry::auth::{self, Credentials, StaticCredentials};
use rbuild_image::registry::{RegistryClient, RegistryConfig};

use crate::cli::{LoginArgs, LogoutArgs};

fn config_path() -> anyhow::Result<PathBuf> {
    auth::default_config_path()
        .context("cannot find docker's config.json: set DOCKER_CONFIG or HOME")
}

pub fn login(_root: Option<&Path>, args: &LoginArgs) -> anyhow::Result<ExitCode> {
    let username = args
        .username
        .clone()
        .context("a username is required: use -u USER")?;
    let password = match (&args.password, args.password_stdin) {
        (Some(p), _) => {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            p.clone()
        }
        (None, true) => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the password from stdin")?;
            s.trim_end_matches(['\n', '\r']).to_owned()
        }
        (None, false) => anyhow::bail!("a password is required: use -p or --password-stdin"),
    };
    if password.is_empty() {
        anyhow::bail!("the password is empty");
    }
    let credentials = StaticCredentials::new().with(
        &args.server,
        Credentials::Basic {
            username: username.clone(),
            password: password.clone(),
        },
    );
    let config = RegistryConfig {
        insecure: args.insecure.clone(),
        ..RegistryConfig::default()
    };
    let client = RegistryClient::new(config, Arc::new(credentials))?;
    super::registry::runtime()?.block_on(client.ping(&args.server))?;
    let path = config_path()?;
    auth::login(&path, &args.server, &username, &password)?;
    outln!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

pub fn logout(_root: Option<&Path>, args: &LogoutArgs) -> anyhow::Result<ExitCode> {
    let path = config_path()?;
    if auth::logout(&path, &args.server)? {
        outln!("Removing login credentials for {}", args.server);
    } else {
        outln!("Not logged in to {}", args.server);
    }
    Ok(ExitCode::SUCCESS)
}
