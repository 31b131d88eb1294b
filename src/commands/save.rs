//! `rbuild save`: a `docker save` archive (default), an OCI layout tar, or an OCI layout
//! directory, written by the same exporter as `rbuild build --output`: files go to a temp
//! file next to the target and are renamed into place, so a failed save never leaves a half
//! archive under the requested name.

use std::io::IsTerminal as _;
use std::path::Path;
use std::process::ExitCode;

use rbuild_image::export::{Destination, Flavor, save};

use crate::cli::{SaveArgs, SaveFormat};

pub fn run(root: Option<&Path>, args: &SaveArgs) -> anyhow::Result<ExitCode> {
    let store = super::store::open(root)?;
    let (flavor, dest) = match (&args.format, &args.output) {
        (SaveFormat::OciDir, Some(dir)) => (Flavor::Oci, Destination::Dir(dir.clone())),
        (SaveFormat::OciDir, None) => anyhow::bail!("--format oci-dir needs -o DIR"),
        (SaveFormat::Docker, Some(path)) => (Flavor::Docker, Destination::File(path.clone())),
        (SaveFormat::Oci, Some(path)) => (Flavor::Oci, Destination::File(path.clone())),
        (format, None) => {
            if std::io::stdout().is_terminal() {
                anyhow::bail!(
                    "cowardly refusing to save to a terminal: use the -o flag or redirect"
                );
            }
            let flavor = match format {
                SaveFormat::Oci => Flavor::Oci,
                _ => Flavor::Docker,
            };
            (flavor, Destination::Stdout)
        }
    };
    save(&store, &args.images, flavor, &dest)?;
    Ok(ExitCode::SUCCESS)
}
