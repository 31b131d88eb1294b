//! The only place in rbuild where `unsafe` and raw syscalls are allowed. Each syscall family
//! sits behind a small trait so the code above it can be unit-tested with a recording fake.
#![allow(unsafe_code)]
