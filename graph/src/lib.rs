//! The build-graph vocabulary shared by the front end and the solver: ops, vertices,
//! canonical digests and the image-config type.
