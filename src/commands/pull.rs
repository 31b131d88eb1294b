//! `rbuild pull`: fetch an image for one platform into the store and tag it, printing what
//! `docker pull` prints. Layer downloads show byte progress on stderr when it is a terminal
//! (or as `RBUILD_PROGRESS` says).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use rbuild_image::local::NewImage;
use rbuild_image::local::reference::familiar_tag;
use rbuild_image::registry::{Platform, Reference};

use crate::cli::PullArgs;
use crate::progress::{self, ProgressMode, Reporting};

pub fn run(root: Option<&Path>, args: &PullArgs) -> anyhow::Result<ExitCode> {
    let reference = Reference::parse(&args.name)?;
    let platform = match &args.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let client = super::registry::client(super::registry::config(&args.registry)?)?;
    let store = super::store::open(root)?;
    let before = store.resolve(&args.name).ok().map(|i| i.manifest_digest);

    outln!(
        "{}: Pulling from {}",
        reference.manifest_reference(),
        reference.repository()
    );
    // Blobs are unreferenced until the image is recorded: keep prune out until then.
    let gc = store.store().gc_guard()?;
    let progress = progress::start(
        ProgressMode::for_transfers()?,
        Vec::new(),
        Box::new(std::io::stderr()),
    )?;
    let whole = progress.task(&format!("pulling {reference}"));
    let content = Arc::new(Reporting::new(
        store.store().content().clone(),
        progress.sink(),
        "downloading",
    ));
    let pulled =
        super::registry::runtime()?.block_on(client.pull_image(&reference, &platform, &content));
    match &pulled {
        Ok(_) => whole.done(),
        Err(e) => whole.fail(&e.to_string()),
    }
    progress.finish(pulled.is_ok())?;
    let pulled = pulled?;
    let tags = match (reference.digest(), reference.tag()) {
        (None, Some(tag)) => vec![format!("{}:{tag}", reference.name())],
        _ => Vec::new(),
    };
    store.record_images(&[NewImage {
        manifest: pulled.manifest_digest.clone(),
        tags: tags.clone(),
    }])?;
    drop(gc);

    let digest = pulled
        .index
        .as_ref()
        .map_or(&pulled.manifest_digest, |i| &i.digest);
    outln!("Digest: {digest}");
    let shown = match tags.first() {
        Some(t) => familiar_tag(t),
        None => args.name.clone(),
    };
    if before.as_ref() == Some(&pulled.manifest_digest) {
        outln!("Status: Image is up to date for {shown}");
    } else {
        outln!("Status: Downloaded newer image for {shown}");
    }
    outln!("{reference}");
    Ok(ExitCode::SUCCESS)
}
