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
    /// Store root (default: $RBUILD_ROOT, else /var/lib/rbuild for root, else
    /// $XDG_DATA_HOME/rbuild).
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile.
    Build(BuildArgs),
    /// Parse and lint a Dockerfile without building it.
    Check(CheckArgs),
    /// Print the build graph a Dockerfile lowers to.
    Graph(GraphArgs),
    /// List images.
    Images(ImagesArgs),
    /// Show low-level information on images as JSON.
    Inspect(InspectArgs),
    /// Show the history of an image.
    History(HistoryArgs),
    /// Create a tag DST that refers to image SRC.
    Tag(TagArgs),
    /// Remove images.
    Rmi(RmiArgs),
    /// Save images to a docker archive, an OCI layout tar or an OCI layout directory.
    Save(SaveArgs),
    /// Load images from a docker archive or an OCI layout tar.
    Load(LoadArgs),
    /// Make an image from a root filesystem tarball.
    Import(ImportArgs),
    /// Download an image from a registry.
    Pull(PullArgs),
    /// Upload an image to a registry.
    Push(PushArgs),
    /// Log in to a registry (writes docker's config.json).
    Login(LoginArgs),
    /// Log out from a registry.
    Logout(LogoutArgs),
    /// Show the space the store uses.
    Df,
    /// Remove blobs nothing references.
    Prune(PruneArgs),
    /// Run a command in a new sandbox from a stored image.
    Run(RunArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only show image ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: ListFormat,
    /// Only images of this repository (and tag).
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub filter: Option<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Don't truncate output.
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    #[arg(value_name = "SOURCE_IMAGE")]
    pub source: String,
    #[arg(value_name = "TARGET_IMAGE")]
    pub target: String,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Remove an image referenced by several tags.
    #[arg(short, long)]
    pub force: bool,
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaveFormat {
    /// A `docker save` archive (also an OCI layout).
    Docker,
    /// An OCI image layout tar.
    Oci,
    /// An OCI image layout directory (`-o DIR`).
    OciDir,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write to this file (or directory for `oci-dir`) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "docker")]
    pub format: SaveFormat,
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from this file instead of stdin.
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Apply a Dockerfile instruction to the image config (CMD, ENV, WORKDIR, ...).
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Set the commit message of the imported image.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Root filesystem tarball (`-` for stdin).
    #[arg(value_name = "FILE|-")]
    pub file: String,
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub name: Option<String>,
}

/// Registry settings shared by pull and push. Defaults come from the config file
/// (`$RBUILD_CONFIG`, else `/etc/rbuild/config.toml` as root, else
/// `$XDG_CONFIG_HOME/rbuild/config.toml`): `registry-mirrors` and `insecure-registries`.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// A Docker Hub mirror to try first (repeatable; replaces the config file's
    /// `registry-mirrors`).
    #[arg(long = "registry-mirror", value_name = "URL")]
    pub mirrors: Vec<String>,
    /// A registry that may be reached over plain HTTP (repeatable; added to the config
    /// file's `insecure-registries`).
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure: Vec<String>,
    /// Pull Docker Hub images from the mirrors only, never from Docker Hub itself
    /// (air-gapped setups).
    #[arg(long)]
    pub no_hub_fallback: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Platform to pull (`os/arch[/variant]`; default: this host).
    #[arg(long)]
    pub platform: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[arg(value_name = "NAME[:TAG]")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    #[arg(short, long)]
    pub username: Option<String>,
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Take the password from stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// Registries that may be reached over plain HTTP (repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure: Vec<String>,
    #[arg(value_name = "SERVER")]
    pub server: String,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    #[arg(value_name = "SERVER")]
    pub server: String,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Also remove untagged images first.
    #[arg(short, long)]
    pub all: bool,
    /// Keep at most this much unreferenced data (e.g. `512MB`, `10GB`).
    #[arg(long, value_name = "SIZE")]
    pub keep_storage: Option<String>,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    pub force: bool,
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
    /// Give the command a terminal (with `-i`, this terminal is put in raw mode).
    #[arg(short = 't', long)]
    pub tty: bool,
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

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name and optionally a tag (`name:tag`) for the image (repeatable).
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    #[command(flatten)]
    pub dockerfile: DockerfileArgs,
    /// Set a label on the image (`K=V`, repeatable).
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// Do not reuse cached steps.
    #[arg(long)]
    pub no_cache: bool,
    /// Do not reuse cached steps of this stage, nor of the steps built on them (repeatable,
    /// or comma-separated; a stage name or index).
    #[arg(long = "no-cache-filter", value_name = "STAGE", value_delimiter = ',')]
    pub no_cache_filter: Vec<String>,
    /// Reuse steps from an image whose history and layers match this build, as classic
    /// docker does (repeatable): a local image `NAME[:TAG]`, or `type=registry,ref=NAME`
    /// (pulled first).
    #[arg(long = "cache-from", value_name = "IMAGE")]
    pub cache_from: Vec<String>,
    /// Say why each step that runs missed the cache: which context file, build arg,
    /// parent step or base image changed since the last build of this Dockerfile.
    #[arg(long)]
    pub explain: bool,
    /// Always ask the registry for newer versions of base images.
    #[arg(long)]
    pub pull: bool,
    /// Steps run at once, RUN steps included. Default: one step per core for work that
    /// keeps a core busy (COPY, hashing, layers), and besides those up to 64 RUN steps,
    /// which mostly wait on their process (as BuildKit does not limit them).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Print only the image id.
    #[arg(short, long)]
    pub quiet: bool,
    /// Write the image id to this file.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Where the image goes besides the local store (buildx syntax, repeatable):
    /// `type=oci|docker|local|tar|image|registry[,dest=PATH][,name=N][,push=true]
    /// [,compression=gzip|zstd|uncompressed][,compression-level=N]`, or `-o DIR` / `-o -`.
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    pub outputs: Vec<String>,
    /// Push the image to its registry under every `-t` name (`--output type=registry`).
    #[arg(long)]
    pub push: bool,
    /// Write the image's digests and names as JSON to this file (as buildx does).
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// How progress is shown: auto (tty on a terminal, else plain), tty, plain, rawjson, quiet.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: crate::progress::ProgressMode,
    /// A secret for `RUN --mount=type=secret` (buildx syntax, repeatable):
    /// `id=ID[,src=PATH]` or `id=ID,env=VAR`. Its value never enters the cache, a layer
    /// or the history.
    #[arg(long = "secret", value_name = "id=ID[,src=PATH|,env=VAR]")]
    pub secrets: Vec<String>,
    /// An SSH agent for `RUN --mount=type=ssh` (repeatable): `default` (`$SSH_AUTH_SOCK`)
    /// or `ID=SOCKET`.
    #[arg(long = "ssh", value_name = "default|ID[=SOCKET]")]
    pub ssh: Vec<String>,
    /// Write the build's counters as JSON to this file (for tests).
    #[arg(long, hide = true, value_name = "FILE")]
    pub report_file: Option<PathBuf>,
}
