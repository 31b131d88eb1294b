//! Build progress on the terminal: the solver's [`ProgressSink`] and [`TaskSink`] events
//! rendered as a live tree (`tty`), a CI log (`plain`), a JSON event stream (`rawjson`) or
//! not at all (`quiet`).
//!
//! The sinks never block the vertex tasks: they stamp each event with the [`Clock`] and
//! send it over an unbounded channel to one renderer thread, which owns the output.
//!
//! `--progress auto` (the default) reads `RBUILD_PROGRESS` (`tty`, `plain`, `rawjson`,
//! `quiet`) and otherwise picks `tty` when stderr is a terminal and `plain` when not.
//!
//! A build wires it like this (steps in graph order, so `tty` knows the total):
//!
//! ```text
//! let steps = graph.vertices().iter()
//!     .map(|v| (v.digest.clone(), StepInfo::from(("Dockerfile", &v.meta))))
//!     .collect();
//! let progress = progress::start(args.progress, steps, Box::new(io::stderr()))?;
//! let solver = Solver::new(exec).with_progress(progress.sink());
//! let solved = runtime.block_on(solver.solve(&dag, &targets));
//! let export = progress.task("exporting layers");   // export.progress(done, Some(total))
//! …
//! progress.finish(result.is_ok())?;                    // before printing the error
//! ```
//!
//! Nothing else may write to stderr between `start` and `finish` in `tty` mode: the live
//! tree is redrawn in place.

mod base;
mod json;
mod model;
mod plain;
mod transfer;
mod tty;

#[cfg(test)]
mod tests;

use std::io::{self, IsTerminal as _, Write};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rbuild_graph::{Digest, VertexMeta};

pub use base::BasesAsDone;
use rbuild_solver::{LogStream, ProgressSink, Task, TaskId, TaskSink};

use model::{Ev, ItemKey, Model, Msg};

pub use transfer::Reporting;

/// The environment variable `auto` mode reads.
pub const ENV: &str = "RBUILD_PROGRESS";

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// `RBUILD_PROGRESS` if set, else `tty` on a terminal and `plain` otherwise.
    Auto,
    /// A live tree redrawn in place.
    Tty,
    /// Numbered log lines, as BuildKit's `--progress=plain`.
    Plain,
    /// One JSON object per event and line.
    #[value(name = "rawjson")]
    RawJson,
    /// Nothing.
    Quiet,
}

impl ProgressMode {
    /// The concrete mode for `auto`, given `RBUILD_PROGRESS` and whether stderr is a
    /// terminal. Other modes are returned as they are.
    pub fn resolve(self, env: Option<&str>, stderr_is_tty: bool) -> io::Result<ProgressMode> {
        if self != ProgressMode::Auto {
            return Ok(self);
        }
        if let Some(value) = env.filter(|v| !v.is_empty()) {
            let mode = <ProgressMode as clap::ValueEnum>::from_str(value, true).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{ENV}={value:?}: expected auto, tty, plain, rawjson or quiet"),
                )
            })?;
            if mode != ProgressMode::Auto {
                return Ok(mode);
            }
        }
        Ok(if stderr_is_tty {
            ProgressMode::Tty
        } else {
            ProgressMode::Plain
        })
    }

    /// The mode for transfers outside a build (`pull`, `push`), whose normal output is
    /// docker's text on stdout: `RBUILD_PROGRESS` if set, else byte bars on a terminal and
    /// nothing otherwise.
    pub fn for_transfers() -> io::Result<ProgressMode> {
        let env = std::env::var(ENV).ok();
        transfer_mode(env.as_deref(), io::stderr().is_terminal())
    }
}

fn transfer_mode(env: Option<&str>, stderr_is_tty: bool) -> io::Result<ProgressMode> {
    match env.filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("auto")) {
        Some(value) => ProgressMode::Auto.resolve(Some(value), stderr_is_tty),
        None if stderr_is_tty => Ok(ProgressMode::Tty),
        None => Ok(ProgressMode::Quiet),
    }
}

/// How a step is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepInfo {
    /// `[build 3/5] RUN make`.
    pub name: String,
    /// `Dockerfile:12`.
    pub location: Option<String>,
}

/// From the Dockerfile's name and a vertex's metadata: `StepInfo::from(("Dockerfile", &v.meta))`.
impl From<(&str, &VertexMeta)> for StepInfo {
    fn from((dockerfile, meta): (&str, &VertexMeta)) -> StepInfo {
        StepInfo {
            name: meta.description.clone(),
            location: meta
                .location
                .as_ref()
                .map(|l| format!("{dockerfile}:{}", l.line)),
        }
    }
}

/// Time since the build started. Injected so that tests see fixed times.
pub trait Clock: Send + Sync {
    fn elapsed(&self) -> Duration;
}

/// The real clock, from the instant it was made.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock(Instant);

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock(Instant::now())
    }
}

impl Clock for SystemClock {
    fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

/// Renders events; owned by the renderer thread.
trait Renderer: Send {
    fn event(&mut self, msg: Msg) -> io::Result<()>;
    /// Called once the queue is drained.
    fn flush(&mut self) -> io::Result<()>;
    fn finish(&mut self, now: Duration, ok: bool) -> io::Result<()>;
    /// Redraw period for live views.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }
    fn tick(&mut self, _now: Duration) -> io::Result<()> {
        Ok(())
    }
}

enum Control {
    Event(Msg),
    Finish(bool),
}

/// The sink handed to the solver and to tasks: stamps events and queues them.
pub struct Sink {
    tx: Option<Sender<Control>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("quiet", &self.tx.is_none())
            .finish()
    }
}

impl Sink {
    fn send(&self, key: ItemKey, ev: Ev) {
        if let Some(tx) = &self.tx {
            let at = self.clock.elapsed();
            // A closed channel means rendering stopped (the output failed or the build
            // finished); the build itself goes on.
            let _ = tx.send(Control::Event(Msg { at, key, ev }));
        }
    }
}

impl ProgressSink<Digest> for Sink {
    fn vertex_started(&self, key: &Digest) {
        self.send(ItemKey::Step(key.clone()), Ev::Started { name: None });
    }
    fn vertex_cached(&self, key: &Digest) {
        self.send(ItemKey::Step(key.clone()), Ev::Cached);
    }
    fn vertex_log(&self, key: &Digest, stream: LogStream, bytes: &[u8]) {
        self.send(ItemKey::Step(key.clone()), Ev::Log(stream, bytes.to_vec()));
    }
    fn vertex_done(&self, key: &Digest, elapsed: Duration) {
        self.send(ItemKey::Step(key.clone()), Ev::Done(Some(elapsed)));
    }
    fn vertex_failed(&self, key: &Digest, error: &str) {
        self.send(ItemKey::Step(key.clone()), Ev::Failed(error.to_owned()));
    }
    fn vertex_progress(&self, key: &Digest, current: u64, total: Option<u64>) {
        self.send(ItemKey::Step(key.clone()), Ev::Bytes { current, total });
    }
    fn vertex_cache_miss(&self, key: &Digest, reason: &str) {
        self.send(ItemKey::Step(key.clone()), Ev::CacheMiss(reason.to_owned()));
    }
}

impl TaskSink for Sink {
    fn task_started(&self, id: TaskId, name: &str) {
        let name = Some(name.to_owned());
        self.send(ItemKey::Task(id), Ev::Started { name });
    }
    fn task_progress(&self, id: TaskId, current: u64, total: Option<u64>) {
        self.send(ItemKey::Task(id), Ev::Bytes { current, total });
    }
    fn task_log(&self, id: TaskId, stream: LogStream, bytes: &[u8]) {
        self.send(ItemKey::Task(id), Ev::Log(stream, bytes.to_vec()));
    }
    fn task_done(&self, id: TaskId) {
        self.send(ItemKey::Task(id), Ev::Done(None));
    }
    fn task_failed(&self, id: TaskId, error: &str) {
        self.send(ItemKey::Task(id), Ev::Failed(error.to_owned()));
    }
}

/// A running progress display. Call [`Progress::finish`] at the end of the build; a
/// dropped `Progress` finishes as failed.
pub struct Progress {
    sink: Arc<Sink>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("sink", &self.sink)
            .finish()
    }
}

/// Starts showing progress on `out` (normally stderr) for a build of `steps`, given in
/// graph order. `auto` is resolved with `RBUILD_PROGRESS` and whether stderr is a terminal;
/// an invalid `RBUILD_PROGRESS` is an error.
pub fn start(
    mode: ProgressMode,
    steps: Vec<(Digest, StepInfo)>,
    out: Box<dyn Write + Send>,
) -> io::Result<Progress> {
    let stderr_is_tty = io::stderr().is_terminal();
    let mode = mode.resolve(std::env::var(ENV).ok().as_deref(), stderr_is_tty)?;
    let (width, height) = terminal_size().unwrap_or((80, 24));
    start_with(
        mode,
        steps,
        out,
        Arc::new(SystemClock::new()),
        (width, height),
    )
}

/// [`start`] with a resolved mode, an explicit clock and the fixed size (columns, rows)
/// of the terminal the `tty` view draws on.
pub fn start_with(
    mode: ProgressMode,
    steps: Vec<(Digest, StepInfo)>,
    out: Box<dyn Write + Send>,
    clock: Arc<dyn Clock>,
    size: (u16, u16),
) -> io::Result<Progress> {
    start_inner(mode, steps, out, clock, size, None)
}

fn start_inner(
    mode: ProgressMode,
    steps: Vec<(Digest, StepInfo)>,
    out: Box<dyn Write + Send>,
    clock: Arc<dyn Clock>,
    size: (u16, u16),
    probe: Option<tty::Probe>,
) -> io::Result<Progress> {
    let model = Model::new(steps);
    let renderer: Box<dyn Renderer> = match mode {
        ProgressMode::Quiet => {
            return Ok(Progress {
                sink: Arc::new(Sink { tx: None, clock }),
                thread: None,
            });
        }
        ProgressMode::Plain => {
            Box::new(plain::Plain::new(model, Box::new(io::BufWriter::new(out))))
        }
        ProgressMode::RawJson => {
            Box::new(json::RawJson::new(model, Box::new(io::BufWriter::new(out))))
        }
        // `start` resolves `auto`; a caller of `start_with` that did not gets the tree.
        ProgressMode::Tty | ProgressMode::Auto => Box::new(tty::Tty::new(model, out, size, probe)),
    };
    let (tx, rx) = mpsc::channel();
    let thread_clock = Arc::clone(&clock);
    let thread = std::thread::Builder::new()
        .name("progress".into())
        .spawn(move || render_loop(renderer, &rx, thread_clock.as_ref()))?;
    Ok(Progress {
        sink: Arc::new(Sink {
            tx: Some(tx),
            clock,
        }),
        thread: Some(thread),
    })
}

fn render_loop(
    mut renderer: Box<dyn Renderer>,
    rx: &mpsc::Receiver<Control>,
    clock: &dyn Clock,
) -> io::Result<()> {
    let interval = renderer.tick_interval();
    let mut drawn = clock.elapsed();
    loop {
        let next = match interval {
            // Wait only for what is left of the period: a steady stream of events must
            // not hold back redraws.
            Some(every) => {
                let since = clock.elapsed().saturating_sub(drawn);
                rx.recv_timeout(every.saturating_sub(since))
            }
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let mut control = match next {
            Ok(c) => c,
            Err(RecvTimeoutError::Timeout) => {
                drawn = clock.elapsed();
                renderer.tick(drawn)?;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => Control::Finish(false),
        };
        loop {
            match control {
                Control::Event(msg) => renderer.event(msg)?,
                Control::Finish(ok) => return renderer.finish(clock.elapsed(), ok),
            }
            match rx.try_recv() {
                Ok(c) => control = c,
                Err(_) => break,
            }
        }
        renderer.flush()?;
        if let Some(every) = interval {
            let now = clock.elapsed();
            if now.saturating_sub(drawn) >= every {
                drawn = now;
                renderer.tick(now)?;
            }
        }
    }
}

impl Progress {
    /// The sink for the solver (`Solver::with_progress`) and for [`Task::start`].
    pub fn sink(&self) -> Arc<Sink> {
        Arc::clone(&self.sink)
    }

    /// Starts a named task outside the graph (pulling, exporting, pushing).
    pub fn task(&self, name: &str) -> Task {
        Task::start(self.sink(), name)
    }

    /// Ends the display: items still running are shown as canceled, the `tty` view leaves
    /// its final summary. Returns the renderer's output error, if any.
    pub fn finish(mut self, ok: bool) -> io::Result<()> {
        self.stop(ok)
    }

    fn stop(&mut self, ok: bool) -> io::Result<()> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        if let Some(tx) = &self.sink.tx {
            let _ = tx.send(Control::Finish(ok));
        }
        thread
            .join()
            .map_err(|_| io::Error::other("progress renderer panicked"))?
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        let _ = self.stop(false);
    }
}

/// Columns and rows of the terminal on stderr.
fn terminal_size() -> Option<(u16, u16)> {
    let size = rustix::termios::tcgetwinsize(io::stderr()).ok()?;
    (size.ws_col > 0 && size.ws_row > 0).then_some((size.ws_col, size.ws_row))
}
