//! `--iidfile` and `--metadata-file` as docker and buildx write them.
//!
//! The iidfile holds the image id, `sha256:<config digest>`, without a newline (as
//! `docker build --iidfile` writes it). The metadata file is buildx's JSON object:
//! `containerimage.config.digest`, `containerimage.digest`, `containerimage.descriptor`
//! (mediaType, digest, size) and `image.name` (the names joined by commas; left out when
//! there are none), plus whatever keys the caller adds (build statistics, `buildx.build.ref`).
//! Caller keys never replace the image keys.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use super::{ExportReport, OutputError, write_file};

/// The metadata object for `report`, with `extra` keys merged in.
pub fn metadata_json(report: &ExportReport, extra: &BTreeMap<String, Value>) -> Value {
    let mut out: serde_json::Map<String, Value> =
        extra.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    out.insert(
        "containerimage.config.digest".to_owned(),
        Value::String(report.config.to_string()),
    );
    out.insert(
        "containerimage.digest".to_owned(),
        Value::String(report.manifest.digest.to_string()),
    );
    out.insert(
        "containerimage.descriptor".to_owned(),
        json!({
            "mediaType": report.manifest.media_type,
            "digest": report.manifest.digest.to_string(),
            "size": report.manifest.size,
        }),
    );
    if report.names.is_empty() {
        out.remove("image.name");
    } else {
        out.insert(
            "image.name".to_owned(),
            Value::String(report.names.join(",")),
        );
    }
    Value::Object(out)
}

/// Writes [`metadata_json`] to `path` (pretty-printed, as buildx does), atomically.
pub fn write_metadata_file(
    path: &Path,
    report: &ExportReport,
    extra: &BTreeMap<String, Value>,
) -> Result<(), OutputError> {
    let value = metadata_json(report, extra);
    let mut bytes = serde_json::to_vec_pretty(&value).map_err(OutputError::Metadata)?;
    bytes.push(b'\n');
    write_bytes(path, &bytes)
}

/// Writes the image id (`sha256:<config digest>`) to `path`, atomically.
pub fn write_iidfile(path: &Path, report: &ExportReport) -> Result<(), OutputError> {
    write_bytes(path, report.config.as_str().as_bytes())
}

fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    write_file(path, |mut w| {
        std::io::Write::write_all(&mut w, bytes).map_err(|source| OutputError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(w)
    })
}
