//! `COPY`/`ADD`/`WORKDIR`/inline files: the file operation applied to a fresh writable
//! snapshot of input 0, with the other inputs seen through read-only views (stages,
//! images) or directly (the build context), committed as a new layer.

use std::path::PathBuf;
use std::sync::Arc;

use rbuild_executor::snapshot::View;
use rbuild_graph::{Digest, FileOp};

use super::error::StepError;
use super::fs::{Fs, Layer};
use super::ops::{Env, committed, layers_of, new_snapshot_key};
use crate::fileop;
use crate::scheduler::ExecContext;

/// How one input is seen by the file operation.
enum Seen {
    Dest,
    View(View),
    Context(PathBuf, crate::context::Matcher),
}

pub async fn run(
    env: &Arc<Env>,
    op: &FileOp,
    inputs: Vec<Fs>,
    ctx: &ExecContext<Digest>,
) -> Result<Fs, StepError> {
    let base = inputs.first().ok_or(StepError::ContextAsLayers)?;
    let parent_layers = layers_of(base)?.to_vec();
    let key = new_snapshot_key("file");
    let env2 = Arc::clone(env);
    let op = op.clone();
    let cancel = ctx.cancel_token().clone();
    let parents = parent_layers.clone();
    let snap_key = key.clone();
    tokio::task::spawn_blocking(move || -> Result<(), StepError> {
        let snap = &env2.snapshotter;
        let active = snap
            .prepare(&snap_key, &committed(snap, &parents)?)
            .map_err(StepError::Snapshot)?;
        let mut seen = Vec::with_capacity(inputs.len());
        for (i, fs) in inputs.iter().enumerate() {
            seen.push(match fs.as_context() {
                Some(c) => Seen::Context(c.root.clone(), c.ignore.clone()),
                None if i == 0 => Seen::Dest,
                None => {
                    let chain = committed(snap, layers_of(fs)?)?;
                    Seen::View(
                        snap.view(&new_snapshot_key("view"), &chain)
                            .map_err(StepError::Snapshot)?,
                    )
                }
            });
        }
        let sources: Vec<fileop::FileSource<'_>> = seen
            .iter()
            .map(|s| match s {
                Seen::Dest => fileop::FileSource {
                    root: active.path(),
                    ignore: None,
                    keep_owner: true,
                },
                Seen::View(v) => fileop::FileSource {
                    root: v.path(),
                    ignore: None,
                    keep_owner: true,
                },
                Seen::Context(root, ignore) => fileop::FileSource {
                    root,
                    ignore: Some(ignore),
                    keep_owner: false,
                },
            })
            .collect();
        fileop::apply(&op, active.path(), &sources, &cancel)?;
        drop(sources);
        drop(seen);
        // Durable with the next cache flush, which syncs before it records anything.
        snap.commit(active).map_err(StepError::Snapshot)?;
        Ok(())
    })
    .await
    .map_err(|_| StepError::Cancelled)??;
    let mut layers = parent_layers;
    layers.push(Layer {
        snapshot: key,
        blob: None,
    });
    Ok(Fs::layers(layers))
}
