//! Scheduler tests with toy ops, in the manner of BuildKit's scheduler tests: counting
//! executions, forcing interleavings with barriers and notifications, never timing.

mod cache;
mod cancel;
mod dag;
mod load;
mod random;
mod schedule;
mod toy;
