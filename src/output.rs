//! Writing command output to stdout. A reader that goes away early (`rbuild graph | head`)
//! ends the output quietly, as it does for other Unix tools, instead of a panic.

use std::io::{self, Write as _};

/// Writes `text` to stdout; a closed pipe is not an error.
pub fn print_stdout(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
