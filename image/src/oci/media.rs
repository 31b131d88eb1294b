//! Media types of Docker v2 schema 2 and OCI image documents and layers.

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const OCI_FOREIGN_LAYER_TAR: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
pub const OCI_FOREIGN_LAYER_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
pub const OCI_FOREIGN_LAYER_ZSTD: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Not in the Docker spec, but written by some tools for uncompressed layers.
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_FOREIGN_LAYER_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// How a layer blob is compressed, as its media type says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    None,
    Gzip,
    Zstd,
}

/// The compression of a layer media type, or `None` if it is not a layer type we know.
pub fn layer_compression(media_type: &str) -> Option<LayerCompression> {
    match media_type {
        OCI_LAYER_TAR | OCI_FOREIGN_LAYER_TAR | DOCKER_LAYER_TAR => Some(LayerCompression::None),
        OCI_LAYER_GZIP | OCI_FOREIGN_LAYER_GZIP | DOCKER_LAYER_GZIP | DOCKER_FOREIGN_LAYER_GZIP => {
            Some(LayerCompression::Gzip)
        }
        OCI_LAYER_ZSTD | OCI_FOREIGN_LAYER_ZSTD => Some(LayerCompression::Zstd),
        _ => None,
    }
}

/// Whether a layer may be absent from a registry or archive (it is fetched from its `urls`).
pub fn is_foreign_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_FOREIGN_LAYER_TAR
            | OCI_FOREIGN_LAYER_GZIP
            | OCI_FOREIGN_LAYER_ZSTD
            | DOCKER_FOREIGN_LAYER_GZIP
    )
}

/// The OCI layer media type for a compression.
pub fn oci_layer(compression: LayerCompression) -> &'static str {
    match compression {
        LayerCompression::None => OCI_LAYER_TAR,
        LayerCompression::Gzip => OCI_LAYER_GZIP,
        LayerCompression::Zstd => OCI_LAYER_ZSTD,
    }
}

/// Whether a media type is an image manifest (OCI or Docker v2 schema 2).
pub fn is_manifest(media_type: &str) -> bool {
    matches!(media_type, OCI_MANIFEST | DOCKER_MANIFEST)
}

/// Whether a media type is an index or manifest list.
pub fn is_index(media_type: &str) -> bool {
    matches!(media_type, OCI_INDEX | DOCKER_MANIFEST_LIST)
}
