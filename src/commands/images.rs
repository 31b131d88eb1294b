//! `rbuild images`: the image table, ids only (`-q`), or one JSON object per line.

use std::process::ExitCode;

use rbuild_cache::meta::now_unix;
use rbuild_image::local::short_id;

use super::render::{ago, human_size, table};
use crate::cli::{ImagesArgs, ListFormat};

pub fn run(root: Option<&std::path::Path>, args: &ImagesArgs) -> anyhow::Result<ExitCode> {
    let rows = super::store::open(root)?.list()?;
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
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}
