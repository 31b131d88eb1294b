//! `rbuild save`: a `docker save` archive (default), an OCI layout tar, or an OCI layout
//! directory. Files are written to a temp file next to the target and renamed into place,
//! so a failed save never leaves a half archive under the requested name.

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use rbuild_image::layout::{Flavor, plan, write_dir, write_tar};

use crate::cli::{SaveArgs, SaveFormat};

pub fn run(root: Option<&Path>, args: &SaveArgs) -> anyhow::Result<ExitCode> {
    let store = super::store::open(root)?;
    let flavor = match args.format {
        SaveFormat::Docker => Flavor::Docker,
        SaveFormat::Oci => Flavor::Oci,
        SaveFormat::OciDir => {
            let dir = args
                .output
                .as_deref()
                .context("--format oci-dir needs -o DIR")?;
            let images = plan(&store, &args.images)?;
            write_dir(&store, &images, dir)?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    let images = plan(&store, &args.images)?;
    match &args.output {
        Some(path) => {
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let temp = tempfile::Builder::new()
                .prefix(".rbuild-save.")
                .tempfile_in(parent)
                .with_context(|| format!("cannot create a file in {}", parent.display()))?;
            let file = write_tar(&store, &images, flavor, std::io::BufWriter::new(temp))?;
            let temp = file
                .into_inner()
                .map_err(|e| e.into_error())
                .with_context(|| format!("cannot write {}", path.display()))?;
            temp.as_file()
                .sync_all()
                .with_context(|| format!("cannot write {}", path.display()))?;
            temp.persist(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                anyhow::bail!(
                    "cowardly refusing to save to a terminal: use the -o flag or redirect"
                );
            }
            let mut out = write_tar(&store, &images, flavor, std::io::BufWriter::new(stdout))?;
            out.flush().context("cannot write to stdout")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
