//! Lowers a parsed Dockerfile to the content-addressed build graph: stages, `--target`
//! pruning, ARG/ENV scoping and expansion, image-config accumulation, ONBUILD triggers.
//!
//! Behaviour follows BuildKit's Dockerfile front end (`dockerfile2llb`): the same words are
//! expanded with the same variables, the same image config and history come out, and a
//! step's digest changes only when its meaning does.

#[doc(hidden)]
pub mod bench_input;
pub mod check;
mod dispatch;
mod duration;
mod error;
pub mod lint;
mod plan;
mod reference;
mod resolver;
mod values;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use rbuild_graph::{Digest, Graph, ImageConfig};
use rbuild_parser::ast::{Dockerfile, Span};

pub use error::FrontendError;
pub use rbuild_graph::{Platform, parse_dockerignore};
pub use reference::{Reference, ReferenceError};
pub use resolver::{ImageResolver, MemoryResolver, NoopResolver, ResolveError, ResolvedImage};

/// What the user asked for besides the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// Stage to build (`--target`); the last stage when `None`.
    pub target: Option<String>,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    pub target_platform: Platform,
    pub build_platform: Platform,
    /// `--label` values, added to the final image.
    pub labels: BTreeMap<String, String>,
    /// Name of the Dockerfile, for messages.
    pub dockerfile_name: String,
    /// `.dockerignore` patterns of the build context (see [`parse_dockerignore`]).
    pub context_excludes: Vec<String>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            target: None,
            build_args: BTreeMap::new(),
            target_platform: Platform::linux_amd64(),
            build_platform: Platform::linux_amd64(),
            labels: BTreeMap::new(),
            dockerfile_name: "Dockerfile".into(),
            context_excludes: Vec::new(),
        }
    }
}

/// A non-fatal finding (BuildKit's lint rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Stable rule name (`UndefinedVar`, `UndefinedArgInFrom`, `CopyFromUnknownStage`).
    pub rule: &'static str,
    pub message: String,
    pub span: Span,
}

/// One stage of the Dockerfile and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageInfo {
    pub index: usize,
    /// Lower-cased `AS` name.
    pub name: Option<String>,
    /// The base after expansion: a normalised image reference, `scratch` or a stage name.
    pub base: String,
    /// Whether the target needs this stage (only reachable stages become vertices).
    pub reachable: bool,
    /// The stage's result, for reachable stages.
    pub output: Option<Digest>,
    /// The `FROM` instruction.
    pub span: Span,
}

/// The result of [`lower`].
#[derive(Debug, Clone)]
pub struct Lowered {
    pub graph: Graph,
    pub stages: Vec<StageInfo>,
    /// Index of the target stage in `stages`.
    pub target: usize,
    /// The final image's configuration and history.
    pub config: ImageConfig,
    /// Findings in file order.
    pub warnings: Vec<Warning>,
}

impl Lowered {
    /// Everything for tools (`rbuild graph --format json`): stages, target, warnings, the
    /// final image config and the graph. Stable: same input, same text.
    pub fn to_json(&self) -> serde_json::Value {
        let stages: Vec<serde_json::Value> = self
            .stages
            .iter()
            .map(|s| {
                serde_json::json!({
                    "index": s.index,
                    "name": s.name,
                    "base": s.base,
                    "reachable": s.reachable,
                    "output": s.output,
                    "line": s.span.line,
                })
            })
            .collect();
        let warnings: Vec<serde_json::Value> = self
            .warnings
            .iter()
            .map(|w| {
                serde_json::json!({
                    "rule": w.rule,
                    "message": w.message,
                    "line": w.span.line,
                    "col": w.span.col,
                })
            })
            .collect();
        serde_json::json!({
            "stages": stages,
            "target": self.target,
            "warnings": warnings,
            "config": self.config,
            "graph": self.graph.to_json(),
        })
    }
}

/// Lowers `df` to a build graph. Base-image configs come from `resolver`; an image it
/// does not know becomes an unresolved source with an empty config.
pub fn lower(
    df: &Dockerfile,
    opts: &BuildOptions,
    resolver: &dyn ImageResolver,
) -> Result<Lowered, FrontendError> {
    let mut plan = plan::Plan::new(df, opts)?;
    plan.resolve(resolver)?;
    dispatch::Lowerer::new(df, opts, plan).run()
}

/// Parses `source` and lowers it: [`lower`] for callers that hold the text.
pub fn lower_source(
    source: &str,
    opts: &BuildOptions,
    resolver: &dyn ImageResolver,
) -> Result<Lowered, FrontendError> {
    let df = rbuild_parser::parse(source).map_err(|e| FrontendError::Parse {
        message: e.message,
        span: e.span,
    })?;
    lower(&df, opts, resolver)
}
