//! `rbuild push`: upload a stored image (blobs the registry lacks, then the manifest by
//! tag; layers stored uncompressed are gzipped first) and print the digest line `docker push` ends with. Uploads show byte progress on
//! stderr when it is a terminal (or as `RBUILD_PROGRESS` says).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use rbuild_image::export::distributable;
use rbuild_image::registry::{BlobPush, Reference};

use crate::cli::PushArgs;
use crate::progress::{self, ProgressMode, Reporting};

pub fn run(root: Option<&Path>, args: &PushArgs) -> anyhow::Result<ExitCode> {
    let reference = Reference::parse(&args.name)?;
    let client = super::registry::client(super::registry::config(&args.registry)?)?;
    let store = super::store::open(root)?;
    let image = store.resolve(&args.name)?;
    outln!("The push refers to repository [{}]", reference.name());
    // Layers the store keeps uncompressed go out gzipped (converted once, remembered);
    // the variant manifest is unreferenced until pushed, so prune stays out meanwhile.
    let _gc = store.store().gc_guard()?;
    let manifest_digest = distributable(&store, &image.manifest_digest, &|_: u64| {})?;
    let manifest = store.read_manifest(&manifest_digest)?;
    let progress = progress::start(
        ProgressMode::for_transfers()?,
        Vec::new(),
        Box::new(std::io::stderr()),
    )?;
    let whole = progress.task(&format!("pushing {reference}"));
    let content = Arc::new(Reporting::new(
        store.store().content().clone(),
        progress.sink(),
        "uploading",
    ));
    let result = super::registry::runtime()?.block_on(client.push_image(
        &reference,
        &manifest_digest,
        &content,
        None,
    ));
    match &result {
        Ok(_) => whole.done(),
        Err(e) => whole.fail(&e.to_string()),
    }
    progress.finish(result.is_ok())?;
    let result = result?;
    // Layers top first with how each got there, as docker prints them.
    for layer in manifest.layers.iter().rev() {
        let how = result
            .blobs
            .iter()
            .find(|(d, _)| *d == layer.digest)
            .map(|(_, how)| *how);
        let status = match how {
            Some(BlobPush::Exists) => "Layer already exists",
            Some(BlobPush::Mounted) => "Mounted",
            Some(BlobPush::Uploaded | BlobPush::Chunked(_)) => "Pushed",
            None => continue,
        };
        outln!("{}: {status}", &layer.digest.hex()[..12]);
    }
    outln!("{result}");
    Ok(ExitCode::SUCCESS)
}
