//! The sandbox that runs `RUN` steps: Linux namespaces, `pivot_root`, a minimal `/dev`,
//! dropped capabilities, and the overlayfs snapshotter (prepare, commit, view, remove).
//!
//! Every syscall lives in [`sys`], behind small traits with recording fakes for unit tests;
//! `unsafe` is denied everywhere else.

pub mod sys;
