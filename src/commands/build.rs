//! `rbuild build`: parse and lower the Dockerfile (base images resolved through the local
//! store, then registries), then one call to `rbuild_solver::build::build`, which runs the
//! steps and stores the image. Progress is a plain numbered log on stderr for now.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use rbuild_executor::Helper;
use rbuild_frontend::{ImageResolver, Platform, ResolveError, ResolvedImage};
use rbuild_graph::{Digest, Graph, Op, SourceOp};
use rbuild_image::compress::Compression;
use rbuild_parser::ast::Span;
use rbuild_solver::build::{BaseResolver, BuildError, BuildRequest};
use rbuild_solver::context::{ignore_file_for, parse_ignore};
use rbuild_solver::{CancelToken, LogStream, NoProgress, ProgressSink};

use super::run::SANDBOX_INIT;
use super::settings::DockerfileSettings;
use crate::cli::{BuildArgs, RegistryArgs};
use crate::diag::{Level, render};

pub fn run(root: Option<&Path>, args: &BuildArgs) -> anyhow::Result<ExitCode> {
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
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => Some(
            v.trim()
                .parse::<i64>()
                .map_err(|_| anyhow::anyhow!("invalid SOURCE_DATE_EPOCH {v:?}"))?,
        ),
        _ => None,
    };

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

    let lowered = rbuild_frontend::check::parse(&s.source)
        .map_err(|e| (e.message, e.span))
        .and_then(|df| {
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

    let progress: Arc<dyn ProgressSink<Digest>> = if args.quiet {
        Arc::new(NoProgress)
    } else {
        Arc::new(PlainProgress::new(&lowered.graph))
    };
    let cancel = CancelToken::new();
    let graph = lowered.graph.clone();
    let request = BuildRequest {
        graph: lowered.graph,
        config: lowered.config,
        context: s.context.clone(),
        store: images.store().clone(),
        tags: args.tags.clone(),
        no_cache: args.no_cache,
        jobs: args.jobs.unwrap_or_else(rbuild_solver::default_jobs).max(1),
        compression: Compression::DEFAULT_GZIP,
        source_date_epoch,
        client: Some(client),
        helper: Helper::current_exe(vec![OsString::from(SANDBOX_INIT)])?,
        progress,
        cancel: cancel.clone(),
    };
    let result = runtime.block_on(async {
        let watcher = tokio::spawn(cancel_on_signal(cancel.clone()));
        let result = rbuild_solver::build::build(request).await;
        watcher.abort();
        result
    });
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprint!("{}", describe_error(&e, &graph, &s.display, &s.source));
            return Ok(ExitCode::from(1));
        }
    };
    if let Some(path) = &args.report_file {
        let json = serde_json::to_string(&report)?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.iidfile {
        std::fs::write(path, &report.image_id)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.quiet {
        outln!("{}", report.image_id);
    } else {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "writing image {} done", report.image_id);
        for tag in &report.tags {
            let _ = writeln!(err, "naming to {tag} done");
        }
    }
    Ok(ExitCode::SUCCESS)
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

/// BuildKit's plain progress, reduced: `#N <step>`, then `#N CACHED` or the step's output
/// lines and `#N DONE 0.3s`.
struct PlainProgress {
    shown: BTreeMap<Digest, String>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    numbers: BTreeMap<Digest, usize>,
    partial: BTreeMap<Digest, Vec<u8>>,
}

impl PlainProgress {
    fn new(graph: &Graph) -> PlainProgress {
        let shown = graph
            .vertices()
            .iter()
            .filter(|v| !matches!(v.op, Op::Source(SourceOp::Scratch)))
            .filter(|v| !v.meta.description.is_empty())
            .map(|v| (v.digest.clone(), v.meta.description.clone()))
            .collect();
        PlainProgress {
            shown,
            state: Mutex::new(State::default()),
        }
    }

    /// Runs `f` with the vertex's number and description, if it is shown.
    fn with(&self, key: &Digest, f: impl FnOnce(&mut State, usize, &str, &mut dyn std::io::Write)) {
        let Some(desc) = self.shown.get(key) else {
            return;
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let next = state.numbers.len() + 1;
        let (n, fresh) = match state.numbers.get(key) {
            Some(&n) => (n, false),
            None => {
                state.numbers.insert(key.clone(), next);
                (next, true)
            }
        };
        let mut err = std::io::stderr().lock();
        if fresh {
            let _ = writeln!(err, "#{n} {desc}");
        }
        f(&mut state, n, desc, &mut err);
    }
}

impl ProgressSink<Digest> for PlainProgress {
    fn vertex_started(&self, key: &Digest) {
        self.with(key, |_, _, _, _| {});
    }

    fn vertex_cached(&self, key: &Digest) {
        self.with(key, |_, n, _, err| {
            let _ = writeln!(err, "#{n} CACHED");
        });
    }

    fn vertex_log(&self, key: &Digest, _stream: LogStream, bytes: &[u8]) {
        self.with(key, |state, n, _, err| {
            let buf = state.partial.entry(key.clone()).or_default();
            buf.extend_from_slice(bytes);
            while let Some(i) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                let _ = writeln!(
                    err,
                    "#{n} {}",
                    String::from_utf8_lossy(&line[..line.len() - 1])
                );
            }
        });
    }

    fn vertex_done(&self, key: &Digest, elapsed: Duration) {
        self.with(key, |state, n, _, err| {
            if let Some(rest) = state.partial.remove(key).filter(|r| !r.is_empty()) {
                let _ = writeln!(err, "#{n} {}", String::from_utf8_lossy(&rest));
            }
            let _ = writeln!(err, "#{n} DONE {:.1}s", elapsed.as_secs_f64());
        });
    }

    fn vertex_failed(&self, key: &Digest, error: &str) {
        self.with(key, |state, n, _, err| {
            if let Some(rest) = state.partial.remove(key).filter(|r| !r.is_empty()) {
                let _ = writeln!(err, "#{n} {}", String::from_utf8_lossy(&rest));
            }
            if error == "cancelled" {
                let _ = writeln!(err, "#{n} CANCELED");
            } else {
                let _ = writeln!(err, "#{n} ERROR: {error}");
            }
        });
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
