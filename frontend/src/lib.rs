//! Lowers a parsed Dockerfile to the content-addressed build graph: stages, `--target`
//! pruning, ARG/ENV scoping and expansion, image-config accumulation, ONBUILD triggers.
