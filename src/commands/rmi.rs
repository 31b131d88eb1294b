//! `rbuild rmi`: untag and delete images, printing what happened like `docker rmi`. Blobs
//! stay until `rbuild prune`.

use std::path::Path;
use std::process::ExitCode;

use rbuild_image::local::RemoveEvent;

use crate::cli::RmiArgs;

pub fn run(root: Option<&Path>, args: &RmiArgs) -> anyhow::Result<ExitCode> {
    let store = super::store::open(root)?;
    let mut failed = false;
    for (_, result) in store.remove(&args.images, args.force) {
        match result {
            Ok(events) => {
                for event in events {
                    match event {
                        RemoveEvent::Untagged(name) => outln!("Untagged: {name}"),
                        RemoveEvent::Deleted(id) => outln!("Deleted: {id}"),
                    }
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
