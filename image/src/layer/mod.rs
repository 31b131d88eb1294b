//! Layers: deterministic layer tars from a directory diff or an overlayfs upper directory, and
//! safe application of layer tars onto a directory.
