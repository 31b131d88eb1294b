//! `rbuild images`: the image table, ids only (`-q`), or one JSON object per line.

use std::process::ExitCode;

use rbuild_cache::meta::now_unix;
use rbuild_image::local::reference::{familiar, split_tag};
use rbuild_image::local::{ImageRow, normalize_tag, short_id};

use super::render::{ago, human_size, table};
use crate::cli::{ImagesArgs, ListFormat};

pub fn run(root: Option<&std::path::Path>, args: &ImagesArgs) -> anyhow::Result<ExitCode> {
    let mut rows = super::store::open(root)?.list()?;
    if let Some(filter) = &args.filter {
        let keep = matcher(filter)?;
        rows.retain(|r| keep(r));
    }
    let now = now_unix();
    let mut out = String::new();
    if args.quiet {
        for row in &rows {
            out.push_str(short_id(&row.id));
            out.push('\n');
        }
    } else if args.format == ListFormat::Json {
        for row in &rows {
            let value = serde_json::json!({
                "Containers": "N/A",
                "CreatedAt": row.created.clone().unwrap_or_default(),
                "CreatedSince": ago(row.created_unix, now),
                "Digest": row.manifest.to_string(),
                "ID": short_id(&row.id),
                "Repository": row.repository,
                "SharedSize": "N/A",
                "Size": human_size(row.size),
                "Tag": row.tag,
                "UniqueSize": "N/A",
                "VirtualSize": human_size(row.size),
            });
            out.push_str(&value.to_string());
            out.push('\n');
        }
    } else {
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.repository.clone(),
                    r.tag.clone(),
                    short_id(&r.id).to_owned(),
                    ago(r.created_unix, now),
                    human_size(r.size),
                ]
            })
            .collect();
        out = table(
            &["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
            &cells,
        );
    }
    out!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// What `rbuild images REPOSITORY[:TAG]` keeps: rows of that repository, and of that tag
/// when one is given (as docker, a bare repository matches every tag).
fn matcher(filter: &str) -> anyhow::Result<impl Fn(&ImageRow) -> bool> {
    let last = filter.rsplit('/').next().unwrap_or(filter);
    let has_tag = last.contains(':');
    let full = normalize_tag(filter)?;
    let (repository, tag) = split_tag(&full);
    let repository = familiar(repository).to_owned();
    let tag = has_tag.then(|| tag.to_owned());
    Ok(move |row: &ImageRow| {
        row.repository == repository && tag.as_ref().is_none_or(|t| *t == row.tag)
    })
}
