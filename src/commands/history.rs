//! `rbuild history`: an image's layers and steps, newest first, like `docker history`.

use std::path::Path;
use std::process::ExitCode;

use rbuild_cache::meta::now_unix;
use rbuild_image::oci::parse_rfc3339;

use super::render::{ago, ellipsis, human_size, table};
use crate::cli::HistoryArgs;

/// Docker cuts CREATED BY to this many characters without `--no-trunc`.
const CREATED_BY_WIDTH: usize = 45;

pub fn run(root: Option<&Path>, args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let rows = super::store::open(root)?.history(&args.image)?;
    let now = now_unix();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let id = match r.id.strip_prefix("sha256:") {
                Some(hex) if !args.no_trunc => hex.chars().take(12).collect(),
                _ => r.id.clone(),
            };
            let created_by = if args.no_trunc {
                r.created_by.clone()
            } else {
                ellipsis(&r.created_by, CREATED_BY_WIDTH)
            };
            vec![
                id,
                ago(r.created.as_deref().and_then(parse_rfc3339), now),
                created_by,
                human_size(r.size),
                r.comment.clone(),
            ]
        })
        .collect();
    out!(
        "{}",
        table(
            &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
            &cells
        )
    );
    Ok(ExitCode::SUCCESS)
}
