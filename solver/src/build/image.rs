//! Base images: resolving a `FROM` reference for the front end (local store first, then the
//! registry; `--pull` asks the registry first), and turning a resolved image into the
//! snapshot layers of a `Source::Image` vertex.

use std::sync::Arc;

use rbuild_cache::Digest;
use rbuild_executor::snapshot::Snapshotter;
use rbuild_graph::{ImageConfig, ImageSource, Platform};
use rbuild_image::local::{Image, ImageStore, LocalError, NewImage};
use rbuild_image::registry::{self, Reference, RegistryClient};
use rbuild_image::unpack;

use super::fs::{Fs, Layer, LayerBlob};

/// Errors of resolving or loading a base image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Local(#[from] LocalError),
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    #[error(transparent)]
    Reference(#[from] registry::ReferenceError),
    #[error(transparent)]
    Unpack(#[from] unpack::UnpackError),
    #[error("cannot hold the store against garbage collection")]
    Store(#[source] rbuild_cache::StoreError),
    #[error("image {0} is not in the local store and no registry is configured")]
    NotLocal(String),
    #[error("invalid config of image {reference}")]
    Config {
        reference: String,
        #[source]
        source: serde_json::Error,
    },
}

/// A base image as the front end needs it.
#[derive(Debug, Clone)]
pub struct BaseImage {
    pub canonical_ref: String,
    /// Manifest digest.
    pub digest: String,
    pub config: ImageConfig,
}

/// Looks base images up in the local store and, failing that (or always with `pull`), in
/// registries; pulled images are stored and tagged like `rbuild pull` does.
#[derive(Debug, Clone)]
pub struct BaseResolver {
    images: ImageStore,
    client: Option<RegistryClient>,
    pull: bool,
    runtime: Option<tokio::runtime::Handle>,
}

impl BaseResolver {
    /// `runtime` drives registry requests from synchronous callers (the front end).
    pub fn new(
        images: ImageStore,
        client: Option<RegistryClient>,
        pull: bool,
        runtime: Option<tokio::runtime::Handle>,
    ) -> BaseResolver {
        BaseResolver {
            images,
            client,
            pull,
            runtime,
        }
    }

    /// Resolves a normalised reference (`docker.io/library/busybox:latest`). Blocks; call
    /// it from outside the async runtime.
    pub fn resolve(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<Option<BaseImage>, ImageError> {
        if !self.pull {
            match self.images.resolve(reference) {
                Ok(image) => return Ok(Some(base_of(&self.images, reference, &image)?)),
                Err(LocalError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let (Some(client), Some(rt)) = (&self.client, &self.runtime) else {
            return match self.images.resolve(reference) {
                Ok(image) => Ok(Some(base_of(&self.images, reference, &image)?)),
                Err(LocalError::NotFound(_)) => Err(ImageError::NotLocal(reference.to_owned())),
                Err(e) => Err(e.into()),
            };
        };
        let image = rt.block_on(pull(&self.images, client, reference, platform))?;
        Ok(Some(base_of(&self.images, reference, &image)?))
    }
}

fn base_of(images: &ImageStore, reference: &str, image: &Image) -> Result<BaseImage, ImageError> {
    // The stored config blob is Docker's image JSON, which the front end's type reads.
    let bytes = images.read_document("config", &image.id)?;
    let config: ImageConfig =
        serde_json::from_slice(&bytes).map_err(|source| ImageError::Config {
            reference: reference.to_owned(),
            source,
        })?;
    Ok(BaseImage {
        canonical_ref: reference.to_owned(),
        digest: image.manifest_digest.as_str().to_owned(),
        config,
    })
}

/// Pulls `reference` into the store and records it under its tag.
async fn pull(
    images: &ImageStore,
    client: &RegistryClient,
    reference: &str,
    platform: &Platform,
) -> Result<Image, ImageError> {
    let parsed = Reference::parse(reference)?;
    let platform = registry::Platform::new(
        &platform.os,
        &platform.architecture,
        platform.variant.as_deref(),
    );
    let gc = images.store().gc_guard().map_err(ImageError::Store)?;
    let content = Arc::new(images.store().content().clone());
    let pulled = client.pull_image(&parsed, &platform, &content).await?;
    let tags = match (parsed.digest(), parsed.tag()) {
        (None, Some(tag)) => vec![format!("{}:{tag}", parsed.name())],
        _ => Vec::new(),
    };
    images.record_images(&[NewImage {
        manifest: pulled.manifest_digest.clone(),
        tags,
    }])?;
    drop(gc);
    Ok(images.resolve(&by_digest(reference, &pulled.manifest_digest))?)
}

/// `name@digest` for a reference that may carry a tag.
fn by_digest(reference: &str, digest: &Digest) -> String {
    let name = reference.split('@').next().unwrap_or(reference);
    // A tag is a `:` after the last `/` (a registry port comes before it).
    let name = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    };
    format!("{name}@{}", digest.as_str())
}

/// The layers of a base image, unpacked into snapshots (pulled first if the store lacks it).
pub async fn load(
    images: &ImageStore,
    snapshotter: &Arc<Snapshotter>,
    client: Option<&RegistryClient>,
    source: &ImageSource,
) -> Result<Fs, ImageError> {
    let name = match &source.digest {
        Some(d) => match Digest::parse(d) {
            Ok(d) => by_digest(&source.reference, &d),
            Err(_) => source.reference.clone(),
        },
        None => source.reference.clone(),
    };
    let image = match images.resolve(&name) {
        Ok(i) => i,
        Err(LocalError::NotFound(_)) => match client {
            Some(c) => pull(images, c, &name, &source.platform).await?,
            None => return Err(ImageError::NotLocal(name)),
        },
        Err(e) => return Err(e.into()),
    };
    let images2 = images.clone();
    let snap = snapshotter.clone();
    let layers = tokio::task::spawn_blocking(move || image_layers(&images2, &snap, &image))
        .await
        .map_err(|_| ImageError::NotLocal(name.clone()))??;
    Ok(Fs::layers(layers))
}

/// The layers of a stored image, unpacked into snapshots where needed. Blocks.
pub fn image_layers(
    images: &ImageStore,
    snapshotter: &Snapshotter,
    image: &Image,
) -> Result<Vec<Layer>, ImageError> {
    let unpacked = unpack::unpack(images, snapshotter, image)?;
    Ok(unpacked
        .layers
        .iter()
        .zip(&image.manifest.layers)
        .zip(&image.config.rootfs.diff_ids)
        .map(|((snap, desc), diff_id)| Layer {
            snapshot: snap.key().to_owned(),
            blob: Some(LayerBlob {
                media_type: desc.media_type.clone(),
                digest: desc.digest.clone(),
                size: desc.size,
                diff_id: diff_id.clone(),
            }),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_digest_drops_the_tag_but_not_the_port() {
        let d = Digest::sha256_of(b"m");
        assert_eq!(
            by_digest("docker.io/library/busybox:latest", &d),
            format!("docker.io/library/busybox@{}", d.as_str())
        );
        assert_eq!(
            by_digest("127.0.0.1:5000/app", &d),
            format!("127.0.0.1:5000/app@{}", d.as_str())
        );
        assert_eq!(
            by_digest("127.0.0.1:5000/app:1", &d),
            format!("127.0.0.1:5000/app@{}", d.as_str())
        );
    }
}
