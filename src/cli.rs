//! Command-line definitions (clap). Nothing here does work: `commands` turns these into
//! resolved settings and makes one library call per command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "rbuild",
    version,
    about = "A daemonless Dockerfile build engine"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and lint a Dockerfile without building it.
    Check(CheckArgs),
    /// Print the build graph a Dockerfile lowers to.
    Graph(GraphArgs),
    /// Run a command in a new sandbox from a stored image.
    Run(RunArgs),
}

/// Flags shared by every command that reads a Dockerfile from a build context.
#[derive(Debug, Args)]
pub struct DockerfileArgs {
    /// Name of the Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Build stage to lower; stages it does not reach are left out.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Set a build-time variable (`K=V`, or `K` to take it from the environment).
    #[arg(long = "build-arg", value_name = "K=V")]
    pub build_args: Vec<String>,
    /// Build context directory.
    #[arg(value_name = "CONTEXT", default_value = ".")]
    pub context: PathBuf,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub dockerfile: DockerfileArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Json,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    #[command(flatten)]
    pub dockerfile: DockerfileArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "dot")]
    pub format: GraphFormat,
}

/// Network of a `run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkMode {
    /// Own network namespace with outbound access through slirp4netns.
    Sandbox,
    /// The host's network.
    Host,
    /// Only loopback.
    None,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Store root (default: $RBUILD_ROOT, /var/lib/rbuild as root, else the XDG data dir).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Accepted for compatibility: the container's filesystem is always removed at exit.
    #[arg(long)]
    pub rm: bool,
    /// Set an environment variable (`K=V`, or `K` to take it from this environment).
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Read environment variables from a file (one `K=V` a line).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// User (`name|uid[:group|gid]`).
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// Network mode.
    #[arg(long, value_enum, default_value = "sandbox")]
    pub network: NetworkMode,
    /// Bind a host path: `HOST:CONTAINER[:ro|rw]`.
    #[arg(short = 'v', long = "volume", value_name = "HOST:CTR[:ro]")]
    pub volumes: Vec<String>,
    /// Memory limit (bytes, or with a b/k/m/g suffix).
    #[arg(short = 'm', long, value_name = "N")]
    pub memory: Option<String>,
    /// Number of CPUs (fractions allowed).
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,
    /// Override the image's entrypoint (clears its command unless one is given).
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Container host name.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Keep stdin open and pass it to the command.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Image name or id.
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Command and arguments (replace the image's CMD).
    #[arg(
        value_name = "CMD",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub cmd: Vec<String>,
}
