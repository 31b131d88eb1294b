//! `rbuild build`: parse and lower the Dockerfile (base images resolved through the local
//! store, then registries), then one call to `rbuild_solver::build::build`, which runs the
//! steps and stores the image, then the `--output`/`--push` exporters. Progress goes
//! through `crate::progress` (tty, plain, rawjson or quiet).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use rbuild_frontend::{ImageResolver, Platform, ResolveError, ResolvedImage};
use rbuild_graph::{Graph, Op, SourceOp};
use rbuild_image::compress::Compression;
use rbuild_image::export::{ExportReport, Exporter, OutputSpec};
use rbuild_parser::ast::Span;
use rbuild_solver::build::{
    BaseResolver, BuildError, BuildRequest, CacheImage, ExplainOptions, ExplainReport,
    SandboxHelper, explain,
};
use rbuild_solver::context::{ignore_file_for, parse_ignore};
use rbuild_solver::{CancelToken, Task};

use super::run::SANDBOX_INIT;
use super::settings::DockerfileSettings;
use crate::cli::{BuildArgs, RegistryArgs};
use crate::diag::{Level, render};
use crate::progress::{self, ProgressMode, StepInfo};

pub fn run(root: Option<&Path>, args: &BuildArgs) -> anyhow::Result<ExitCode> {
    // The build's overlays must go away with the process, however it ends.
    rbuild_executor::sys::private_mount_namespace();
    let mut s = DockerfileSettings::resolve(&args.dockerfile)?;
    let dockerfile = args
        .dockerfile
        .file
        .clone()
        .unwrap_or_else(|| args.dockerfile.context.join("Dockerfile"));
    if !s.context.is_dir() {
        anyhow::bail!("build context {} is not a directory", s.context.display());
    }
    if let Some(ignore) = ignore_file_for(&s.context, &dockerfile) {
        let text = std::fs::read_to_string(&ignore)
            .with_context(|| format!("cannot read {}", ignore.display()))?;
        s.options.context_excludes = parse_ignore(&text);
    }
    for label in &args.labels {
        let (k, v) = label.split_once('=').unwrap_or((label.as_str(), ""));
        if k.is_empty() {
            anyhow::bail!("invalid label {label:?}: empty name");
        }
        s.options.labels.insert(k.to_owned(), v.to_owned());
    }
    let mut outputs = args
        .outputs
        .iter()
        .map(|o| OutputSpec::parse(o).with_context(|| format!("invalid --output {o:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if args.push {
        outputs.push(OutputSpec::parse("type=registry")?);
    }
    // The store keeps built layers uncompressed, as docker and buildah do: compressing
    // is the cost of an artifact or a push, not of a build. When an output will want them
    // compressed, they are compressed once, as the first such output wants them (one pass
    // instead of a tar and then a conversion); other outputs convert.
    let compression = outputs
        .iter()
        .find_map(OutputSpec::layer_compression)
        .unwrap_or(Compression::None);
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => Some(
            v.trim()
                .parse::<i64>()
                .map_err(|_| anyhow::anyhow!("invalid SOURCE_DATE_EPOCH {v:?}"))?,
        ),
        _ => None,
    };

    // Held until the build ends: files of secrets taken from the environment.
    let secrets = super::secrets::secrets(&args.secrets)?;
    let ssh_agents = super::secrets::ssh_agents(&args.ssh)?;

    let images = super::store::open(root)?;
    let runtime = super::registry::runtime()?;
    let client = super::registry::client(super::registry::config(&RegistryArgs {
        mirrors: Vec::new(),
        insecure: Vec::new(),
        no_hub_fallback: false,
    })?)?;
    let resolver = StoreResolver(BaseResolver::new(
        images.clone(),
        Some(client.clone()),
        args.pull,
        Some(runtime.handle().clone()),
    ));

    let mut arg_names = BTreeSet::new();
    let lowered = rbuild_frontend::check::parse(&s.source)
        .map_err(|e| (e.message, e.span))
        .and_then(|df| {
            arg_names = declared_args(&df);
            rbuild_frontend::lower(&df, &s.options, &resolver)
                .map_err(|e| (format!("{e:#}"), e.span()))
        });
    let lowered = match lowered {
        Ok(l) => l,
        Err((message, span)) => {
            eprint!(
                "{}",
                render(&s.display, &s.source, Level::Error, None, &message, span)
            );
            return Ok(ExitCode::from(1));
        }
    };
    if !args.quiet {
        for w in &lowered.warnings {
            eprint!(
                "{}",
                render(
                    &s.display,
                    &s.source,
                    Level::Warning,
                    Some(w.rule),
                    &w.message,
                    Some(w.span)
                )
            );
        }
    }

    let mode = if args.quiet {
        ProgressMode::Quiet
    } else {
        args.progress
    };
    let steps = lowered
        .graph
        .vertices()
        .iter()
        .filter(|v| !matches!(v.op, Op::Source(SourceOp::Scratch)))
        .filter(|v| !v.meta.description.is_empty())
        .map(|v| {
            (
                v.digest.clone(),
                StepInfo::from((s.display.as_str(), &v.meta)),
            )
        })
        .collect();
    let no_cache_filter = stage_labels(&lowered.stages, &args.no_cache_filter)?;
    // `type=registry` cache images are always asked of the registry.
    let puller = BaseResolver::new(
        images.clone(),
        Some(client.clone()),
        true,
        Some(runtime.handle().clone()),
    );
    let cache_from = args
        .cache_from
        .iter()
        .map(|spec| cache_image(&images, &puller, &s.options.target_platform, spec))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let explain = ExplainOptions {
        id: explain::build_id(
            &absolute(&s.context),
            &absolute(&dockerfile),
            args.dockerfile.target.as_deref(),
        ),
        enabled: args.explain,
        args: arg_names,
    };
    let progress = progress::start(mode, steps, Box::new(std::io::stderr()))?;
    let cancel = CancelToken::new();
    let graph = lowered.graph.clone();
    let request = BuildRequest {
        graph: lowered.graph,
        config: lowered.config,
        context: s.context.clone(),
        store: images.store().clone(),
        tags: args.tags.clone(),
        no_cache: args.no_cache,
        no_cache_filter,
        cache_from,
        explain: Some(explain),
        jobs: args.jobs.unwrap_or_else(rbuild_solver::default_jobs).max(1),
        // An explicit --jobs bounds every step; by default RUN steps get a pool of their
        // own.
        run_jobs: match args.jobs {
            Some(_) => None,
            None => Some(rbuild_solver::build::DEFAULT_RUN_JOBS),
        },
        compression,
        source_date_epoch,
        client: Some(client.clone()),
        helper: SandboxHelper::CurrentExe(vec![OsString::from(SANDBOX_INIT)]),
        // A base taken from the store is no reused step (see `BasesAsDone`).
        progress: Arc::new(progress::BasesAsDone::new(
            progress.sink(),
            graph
                .vertices()
                .iter()
                .filter(|v| matches!(v.op, Op::Source(SourceOp::Image(_))))
                .map(|v| v.digest.clone())
                .collect(),
        )),
        cancel: cancel.clone(),
        secrets: secrets.files.clone(),
        ssh_agents,
    };
    let tags = args.tags.clone();
    let result = runtime.block_on(async {
        let watcher = tokio::spawn(cancel_on_signal(cancel.clone()));
        let result = match rbuild_solver::build::build(request).await {
            Ok(report) => export(&images, &client, &progress, &report, &tags, &outputs)
                .await
                .map(|exported| (report, exported))
                .map_err(Failure::Export),
            Err(e) => Err(Failure::Build(e)),
        };
        watcher.abort();
        result
    });
    progress.finish(result.is_ok())?;
    if let Ok((report, _)) = &result
        && let Some(explained) = &report.explain
    {
        print_explanation(explained, mode);
    }
    let (report, exported) = match result {
        Ok(r) => r,
        Err(Failure::Build(e)) => {
            eprint!("{}", describe_error(&e, &graph, &s.display, &s.source));
            return Ok(ExitCode::from(1));
        }
        Err(Failure::Export(e)) => return Err(e),
    };
    if let Some(path) = &args.report_file {
        let json = serde_json::to_string(&report)?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.iidfile {
        std::fs::write(path, &report.image_id)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.metadata_file {
        let stats = serde_json::to_value(&report)?;
        let extra = BTreeMap::from([("rbuild.build.stats".to_owned(), stats)]);
        rbuild_image::export::write_metadata_file(path, &exported, &extra)?;
    }
    if args.quiet {
        outln!("{}", report.image_id);
    }
    Ok(ExitCode::SUCCESS)
}

/// The names of the `ARG`s a Dockerfile declares (before and inside stages).
fn declared_args(df: &rbuild_parser::ast::Dockerfile) -> BTreeSet<String> {
    df.instructions
        .iter()
        .filter_map(|i| match &i.command {
            rbuild_parser::ast::Command::Arg(decls) => Some(decls),
            _ => None,
        })
        .flatten()
        .map(|d| d.name.text.clone())
        .collect()
}

/// A path made absolute (canonical when it exists), as text: part of the explain id.
fn absolute(path: &Path) -> String {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_owned())
        .to_string_lossy()
        .into_owned()
}

/// The vertex labels of the stages `--no-cache-filter` names (by name or index).
fn stage_labels(
    stages: &[rbuild_frontend::StageInfo],
    names: &[String],
) -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let lower = name.to_ascii_lowercase();
        let label = |s: &rbuild_frontend::StageInfo| {
            s.name
                .clone()
                .unwrap_or_else(|| format!("stage-{}", s.index))
        };
        let stage = stages
            .iter()
            .find(|s| label(s) == lower)
            .or_else(|| {
                name.parse::<usize>()
                    .ok()
                    .and_then(|i| stages.iter().find(|s| s.index == i))
            })
            .ok_or_else(|| anyhow::anyhow!("--no-cache-filter: no stage named {name:?}"))?;
        out.insert(label(stage));
    }
    Ok(out)
}

/// A `--cache-from` image: a local image name, or `type=registry,ref=NAME` (pulled, so the
/// newest image of the tag is used).
fn cache_image(
    images: &rbuild_image::local::ImageStore,
    resolver: &BaseResolver,
    platform: &Platform,
    spec: &str,
) -> anyhow::Result<CacheImage> {
    let name = if spec.starts_with("type=") {
        let mut kind = "";
        let mut reference = None;
        for part in spec.split(',') {
            match part.split_once('=') {
                Some(("type", v)) => kind = v,
                Some(("ref", v)) => reference = Some(v),
                _ => {}
            }
        }
        if kind != "registry" {
            anyhow::bail!(
                "--cache-from {spec:?}: type={kind} is not supported (use a local image name or type=registry,ref=NAME)"
            );
        }
        let reference = reference
            .ok_or_else(|| anyhow::anyhow!("--cache-from {spec:?}: ref=NAME is missing"))?;
        let parsed = rbuild_image::registry::Reference::parse(reference)
            .with_context(|| format!("--cache-from {spec:?}"))?;
        let base = resolver
            .resolve(&parsed.to_string(), platform)
            .with_context(|| format!("--cache-from {spec:?}: cannot pull {reference}"))?
            .ok_or_else(|| anyhow::anyhow!("--cache-from {spec:?}: {reference} not found"))?;
        format!("{}@{}", parsed.name(), base.digest)
    } else {
        spec.to_owned()
    };
    let image = images.resolve(&name).map_err(|e| match e {
        rbuild_image::local::LocalError::NotFound(_) => anyhow::anyhow!(
            "--cache-from {spec:?}: no such image in the local store (use type=registry,ref={spec} to pull it)"
        ),
        e => anyhow::anyhow!("--cache-from {spec:?}: {e}"),
    })?;
    Ok(CacheImage {
        name: spec.to_owned(),
        image,
    })
}

/// The `--explain` summary after the progress display.
fn print_explanation(report: &ExplainReport, mode: ProgressMode) {
    if mode == ProgressMode::Quiet {
        return;
    }
    let resolved = mode.resolve(
        std::env::var(progress::ENV).ok().as_deref(),
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    );
    if matches!(resolved, Ok(ProgressMode::RawJson)) {
        let line = serde_json::json!({
            "event": "explain",
            "earlier_build": report.earlier_build,
            "misses": report.misses,
        });
        eprintln!("{line}");
        return;
    }
    let mut out = String::new();
    if !report.earlier_build {
        let n = report.misses.len();
        eprintln!(
            "explain: no earlier build of this Dockerfile ({n} step{} ran)",
            if n == 1 { "" } else { "s" }
        );
        return;
    }
    match report.misses.len() {
        0 => out.push_str("explain: every step came from the cache\n"),
        n => {
            out.push_str(&format!(
                "explain: {n} step{} missed the cache:\n",
                if n == 1 { "" } else { "s" }
            ));
            for m in &report.misses {
                out.push_str(&format!("  {}: {}\n", m.step, m.reasons.join("; ")));
            }
        }
    }
    eprint!("{out}");
}

/// Why a build ended without an image.
enum Failure {
    /// A step or the store: shown as a diagnostic at the step's line.
    Build(BuildError),
    /// An `--output` or `--push`: a plain error.
    Export(anyhow::Error),
}

/// Writes every output (each a progress task) and returns what the last one exported, or
/// the stored image itself when there are no outputs (for `--metadata-file`).
async fn export(
    images: &rbuild_image::local::ImageStore,
    client: &rbuild_image::registry::RegistryClient,
    progress: &progress::Progress,
    report: &rbuild_solver::build::BuildReport,
    tags: &[String],
    outputs: &[OutputSpec],
) -> anyhow::Result<ExportReport> {
    let manifest: rbuild_cache::Digest = report
        .manifest
        .parse()
        .map_err(|e| anyhow::anyhow!("built manifest digest {:?}: {e}", report.manifest))?;
    let mut last = None;
    for spec in outputs {
        let task = TaskProgress::new(progress.task(&format!("exporting to {}", spec.kind.name())));
        let exporter = Exporter::new(images).tags(tags).progress(&task);
        match exporter.export_or_push(client, &manifest, spec).await {
            Ok(exported) => {
                task.done();
                last = Some(exported);
            }
            Err(e) => {
                let message = error_chain(&e);
                task.fail(&message);
                return Err(anyhow::anyhow!(message));
            }
        }
    }
    match last {
        Some(exported) => Ok(exported),
        None => {
            // The build tagged the image in the store; say so as BuildKit does.
            progress
                .task(&format!("writing image {}", report.image_id))
                .done();
            for tag in &report.tags {
                progress.task(&format!("naming to {tag}")).done();
            }
            Ok(Exporter::new(images).tags(tags).describe(&manifest)?)
        }
    }
}

/// An exporter's byte counts as a progress task.
struct TaskProgress {
    task: Mutex<Option<Task>>,
    done: std::sync::atomic::AtomicU64,
    total: Mutex<Option<u64>>,
}

impl TaskProgress {
    fn new(task: Task) -> TaskProgress {
        TaskProgress {
            task: Mutex::new(Some(task)),
            done: std::sync::atomic::AtomicU64::new(0),
            total: Mutex::new(None),
        }
    }

    fn take(&self) -> Option<Task> {
        self.task.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn done(&self) {
        if let Some(t) = self.take() {
            t.done();
        }
    }

    fn fail(&self, message: &str) {
        if let Some(t) = self.take() {
            t.fail(message);
        }
    }
}

impl rbuild_image::export::Progress for TaskProgress {
    fn start(&self, _phase: &str, total: Option<u64>) {
        // Phases of one output (convert, then write) count as one task: restart the bar.
        self.done.store(0, std::sync::atomic::Ordering::Relaxed);
        *self.total.lock().unwrap_or_else(|e| e.into_inner()) = total;
    }

    fn advance(&self, bytes: u64) {
        let now = self
            .done
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed)
            + bytes;
        let total = *self.total.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = self.task.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            t.progress(now, total);
        }
    }
}

/// Cancels the build on SIGINT or SIGTERM: running steps are killed, nothing is tagged.
async fn cancel_on_signal(cancel: CancelToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    cancel.cancel();
}

/// The front end's view of [`BaseResolver`].
struct StoreResolver(BaseResolver);

impl ImageResolver for StoreResolver {
    fn resolve(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<Option<ResolvedImage>, ResolveError> {
        match self.0.resolve(reference, platform) {
            Ok(Some(base)) => Ok(Some(ResolvedImage {
                canonical_ref: base.canonical_ref,
                digest: Some(base.digest),
                config: base.config,
            })),
            Ok(None) => Ok(None),
            Err(e) => Err(ResolveError {
                message: error_chain(&e),
                source: Some(Box::new(e)),
            }),
        }
    }
}

/// `message: cause: cause...`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = c.source();
    }
    out
}

/// A build error as a diagnostic pointing at the step's Dockerfile line, with the last
/// lines of its output.
fn describe_error(e: &BuildError, graph: &Graph, file: &str, source: &str) -> String {
    let Some((vertex, step)) = (match e {
        BuildError::Step { vertex, source, .. } => Some((vertex, source)),
        _ => None,
    }) else {
        return format!("error: {}\n", error_chain(e));
    };
    let meta = graph.vertex(vertex).map(|v| &v.meta);
    let description = meta.map(|m| m.description.as_str()).unwrap_or("");
    let message = format!("{description}: {}", error_chain(step));
    let span = meta.and_then(|m| m.location).map(|l| span_of(source, l));
    let mut out = String::new();
    let lines = step.last_lines();
    if !lines.is_empty() {
        out.push_str("------\n");
        for l in lines {
            out.push_str(&format!(" > {l}\n"));
        }
        out.push_str("------\n");
    }
    out.push_str(&render(file, source, Level::Error, None, &message, span));
    out
}

/// The span of a whole Dockerfile line from a vertex location.
fn span_of(source: &str, loc: rbuild_graph::Location) -> Span {
    let start: usize = source
        .split_inclusive('\n')
        .take(loc.line.saturating_sub(1))
        .map(str::len)
        .sum();
    let line_len = source[start.min(source.len())..]
        .lines()
        .next()
        .map_or(0, str::len);
    let col = loc.col.max(1);
    Span {
        start: (start + col - 1).min(source.len()),
        end: (start + line_len).min(source.len()),
        line: loc.line,
        col,
        end_line: loc.end_line.max(loc.line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_the_located_line() {
        let src = "FROM busybox\nRUN false\n";
        let span = span_of(
            src,
            rbuild_graph::Location {
                line: 2,
                col: 1,
                end_line: 2,
            },
        );
        assert_eq!(&src[span.start..span.end], "RUN false");
        assert_eq!((span.line, span.col), (2, 1));
    }
}
