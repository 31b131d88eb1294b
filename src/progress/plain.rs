//! `--progress plain`: BuildKit's plain log for CI. Every line names its item (`#N`); an
//! item's header (`#N name`) is printed when it is first reported and again, after a
//! blank line, whenever another item wrote in between. Output lines carry the seconds
//! since the item started (`#5 0.215 text`), a cache hit prints `#N CACHED`, and with
//! `--explain` a step that runs says why first (`#N cache miss: COPY . /app — ...`).

use std::io::{self, Write};
use std::time::Duration;

use super::Renderer;
use super::model::{Change, Model, Msg, bytes_status};

/// Byte counts of one item are printed at most this often (and when complete).
const BYTES_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Default, Clone, Copy)]
struct Printed {
    bytes_at: Option<Duration>,
    bytes: Option<u64>,
}

pub struct Plain {
    model: Model,
    out: Box<dyn Write + Send>,
    /// The item whose header was written last.
    current: Option<usize>,
    printed: Vec<Printed>,
}

impl Plain {
    pub fn new(model: Model, out: Box<dyn Write + Send>) -> Plain {
        Plain {
            model,
            out,
            current: None,
            printed: Vec::new(),
        }
    }

    fn header(&mut self, i: usize) -> io::Result<()> {
        if self.current == Some(i) {
            return Ok(());
        }
        if self.current.is_some() {
            writeln!(self.out)?;
        }
        self.current = Some(i);
        let item = &self.model.items()[i];
        writeln!(self.out, "#{} {}", item.number, item.name)
    }

    fn bytes_line(&mut self, i: usize, at: Duration) -> io::Result<()> {
        let item = &self.model.items()[i];
        let Some((current, total)) = item.bytes else {
            return Ok(());
        };
        let elapsed = at.saturating_sub(item.started);
        let line = format!(
            "#{} {} {:.1}s",
            item.number,
            bytes_status(current, total, elapsed),
            elapsed.as_secs_f64()
        );
        self.printed[i] = Printed {
            bytes_at: Some(at),
            bytes: Some(current),
        };
        self.header(i)?;
        writeln!(self.out, "{line}")
    }

    fn change(&mut self, i: usize, at: Duration, change: Change) -> io::Result<()> {
        if self.printed.len() <= i {
            self.printed.resize(i + 1, Printed::default());
        }
        let n = self.model.items()[i].number;
        match change {
            Change::New => self.header(i),
            Change::Line(line) => {
                let since = at.saturating_sub(self.model.items()[i].started);
                self.header(i)?;
                writeln!(self.out, "#{n} {:.3} {line}", since.as_secs_f64())
            }
            Change::Cached => {
                self.header(i)?;
                writeln!(self.out, "#{n} CACHED")
            }
            Change::Bytes => {
                let Some((current, total)) = self.model.items()[i].bytes else {
                    return Ok(());
                };
                let printed = self.printed[i];
                let due = printed
                    .bytes_at
                    .is_none_or(|t| at.saturating_sub(t) >= BYTES_INTERVAL);
                let complete = total.is_some_and(|t| current >= t);
                if (due || complete) && printed.bytes != Some(current) {
                    self.bytes_line(i, at)?;
                }
                Ok(())
            }
            Change::Done => {
                let item = &self.model.items()[i];
                if item
                    .bytes
                    .is_some_and(|(c, _)| self.printed[i].bytes != Some(c))
                {
                    self.bytes_line(i, at)?;
                }
                let secs = self.model.items()[i].elapsed(at).as_secs_f64();
                self.header(i)?;
                writeln!(self.out, "#{n} DONE {secs:.1}s")
            }
            Change::Failed(error) => {
                self.header(i)?;
                let mut lines = error.lines();
                writeln!(self.out, "#{n} ERROR: {}", lines.next().unwrap_or(""))?;
                for line in lines {
                    writeln!(self.out, "#{n} {line}")?;
                }
                Ok(())
            }
            Change::Canceled => {
                self.header(i)?;
                writeln!(self.out, "#{n} CANCELED")
            }
            Change::CacheMiss(reason) => {
                self.header(i)?;
                writeln!(self.out, "#{n} cache miss: {reason}")
            }
        }
    }
}

impl Renderer for Plain {
    fn event(&mut self, msg: Msg) -> io::Result<()> {
        let at = msg.at;
        let (i, changes) = self.model.apply(msg);
        for change in changes {
            self.change(i, at, change)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self, now: Duration, _ok: bool) -> io::Result<()> {
        for (i, changes) in self.model.cancel_running(now) {
            for change in changes {
                self.change(i, now, change)?;
            }
        }
        self.out.flush()
    }
}
