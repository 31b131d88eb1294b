//! The renderer-side picture of a build: every step and task reported so far, numbered in
//! the order first reported, with its state, timers, bytes, complete output lines and the
//! tail of its output. Every renderer feeds events through one [`Model`].

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use rbuild_graph::Digest;
use rbuild_solver::{LogStream, TaskId};

use super::StepInfo;

/// Output lines kept per item for the TTY view.
pub const TAIL_LINES: usize = 6;
/// A partial line longer than this is emitted as a line of its own, so that output
/// without newlines cannot grow a buffer without bound.
const MAX_PARTIAL: usize = 16 * 1024;

/// What an event is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ItemKey {
    Step(Digest),
    Task(TaskId),
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    /// A step started, or a task started under `name`.
    Started {
        name: Option<String>,
    },
    Cached,
    Log(LogStream, Vec<u8>),
    Bytes {
        current: u64,
        total: Option<u64>,
    },
    /// The solver's measured duration for a step; tasks are timed by the clock.
    Done(Option<Duration>),
    Failed(String),
    /// Why the step missed the cache (`--explain`).
    CacheMiss(String),
}

/// One event, stamped with the time since the build started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub at: Duration,
    pub key: ItemKey,
    pub ev: Ev,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Running,
    Cached,
    Done,
    Failed(String),
    /// Still running when the build ended.
    Canceled,
}

impl State {
    pub fn is_finished(&self) -> bool {
        !matches!(self, State::Running)
    }
}

/// One step or task.
#[derive(Debug)]
pub struct Item {
    /// 1-based, in the order first reported.
    pub number: usize,
    pub key: ItemKey,
    pub name: String,
    pub location: Option<String>,
    pub state: State,
    pub started: Duration,
    /// How long it ran, once finished.
    pub duration: Option<Duration>,
    pub bytes: Option<(u64, Option<u64>)>,
    /// The last complete output lines.
    pub tail: VecDeque<String>,
    partial: [Vec<u8>; 2],
}

impl Item {
    /// Seconds it has run at `now` (its final duration once finished).
    pub fn elapsed(&self, now: Duration) -> Duration {
        self.duration
            .unwrap_or_else(|| now.saturating_sub(self.started))
    }
}

/// What an event changed, in the order a log should show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The item was reported for the first time.
    New,
    /// A complete output line (without its newline).
    Line(String),
    Cached,
    Bytes,
    Done,
    Failed(String),
    Canceled,
    /// Why the step missed the cache.
    CacheMiss(String),
}

#[derive(Debug)]
pub struct Model {
    steps: BTreeMap<Digest, StepInfo>,
    items: Vec<Item>,
    index: BTreeMap<ItemKey, usize>,
}

impl Model {
    pub fn new(steps: Vec<(Digest, StepInfo)>) -> Model {
        Model {
            steps: steps.into_iter().collect(),
            items: Vec::new(),
            index: BTreeMap::new(),
        }
    }

    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// Steps of the graph plus tasks and unknown vertices seen so far.
    pub fn total(&self) -> usize {
        let extra = self
            .items
            .iter()
            .filter(|i| match &i.key {
                ItemKey::Step(d) => !self.steps.contains_key(d),
                ItemKey::Task(_) => true,
            })
            .count();
        self.steps.len() + extra
    }

    pub fn finished(&self) -> usize {
        self.items
            .iter()
            .filter(|i| matches!(i.state, State::Cached | State::Done))
            .count()
    }

    /// The index of `key`'s item, created (and numbered) if it is new.
    fn entry(&mut self, key: &ItemKey, at: Duration, name: Option<&str>) -> (usize, bool) {
        if let Some(&i) = self.index.get(key) {
            return (i, false);
        }
        let (name, location) = match key {
            ItemKey::Step(d) => match self.steps.get(d) {
                Some(info) => (info.name.clone(), info.location.clone()),
                None => (short_digest(d), None),
            },
            ItemKey::Task(id) => (name.map_or_else(|| id.to_string(), str::to_owned), None),
        };
        let i = self.items.len();
        self.items.push(Item {
            number: i + 1,
            key: key.clone(),
            name,
            location,
            state: State::Running,
            started: at,
            duration: None,
            bytes: None,
            tail: VecDeque::new(),
            partial: [Vec::new(), Vec::new()],
        });
        self.index.insert(key.clone(), i);
        (i, true)
    }

    /// Applies one event; returns the item's index and what changed.
    pub fn apply(&mut self, msg: Msg) -> (usize, Vec<Change>) {
        let name = match &msg.ev {
            Ev::Started { name } => name.as_deref(),
            _ => None,
        };
        let (i, new) = self.entry(&msg.key, msg.at, name);
        let mut changes = Vec::new();
        if new {
            changes.push(Change::New);
        }
        let item = &mut self.items[i];
        match msg.ev {
            Ev::Started { .. } => {}
            Ev::Cached => {
                item.state = State::Cached;
                item.duration = Some(Duration::ZERO);
                changes.push(Change::Cached);
            }
            Ev::Log(stream, bytes) => push_log(item, stream, &bytes, &mut changes),
            Ev::Bytes { current, total } => {
                item.bytes = Some((current, total));
                changes.push(Change::Bytes);
            }
            Ev::Done(measured) => {
                flush_partial(item, &mut changes);
                item.state = State::Done;
                item.duration =
                    Some(measured.unwrap_or_else(|| msg.at.saturating_sub(item.started)));
                changes.push(Change::Done);
            }
            Ev::Failed(error) => {
                flush_partial(item, &mut changes);
                item.duration = Some(msg.at.saturating_sub(item.started));
                item.state = State::Failed(error.clone());
                changes.push(Change::Failed(error));
            }
            Ev::CacheMiss(reason) => {
                // Shown under the running step like its output.
                if item.tail.len() == TAIL_LINES {
                    item.tail.pop_front();
                }
                item.tail.push_back(format!("cache miss: {reason}"));
                changes.push(Change::CacheMiss(reason));
            }
        }
        (i, changes)
    }

    /// Ends every item still running as canceled; returns what changed per item.
    pub fn cancel_running(&mut self, at: Duration) -> Vec<(usize, Vec<Change>)> {
        let mut out = Vec::new();
        for (i, item) in self.items.iter_mut().enumerate() {
            if item.state.is_finished() {
                continue;
            }
            let mut changes = Vec::new();
            flush_partial(item, &mut changes);
            item.state = State::Canceled;
            item.duration = Some(at.saturating_sub(item.started));
            changes.push(Change::Canceled);
            out.push((i, changes));
        }
        out
    }
}

fn stream_index(stream: LogStream) -> usize {
    match stream {
        LogStream::Stdout => 0,
        LogStream::Stderr => 1,
    }
}

/// Splits output into complete lines per stream; the rest waits for its newline.
fn push_log(item: &mut Item, stream: LogStream, bytes: &[u8], changes: &mut Vec<Change>) {
    let s = stream_index(stream);
    let mut rest = bytes;
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        item.partial[s].extend_from_slice(&rest[..nl]);
        let line = std::mem::take(&mut item.partial[s]);
        emit_line(item, &line, changes);
        rest = &rest[nl + 1..];
    }
    item.partial[s].extend_from_slice(rest);
    if item.partial[s].len() > MAX_PARTIAL {
        let line = std::mem::take(&mut item.partial[s]);
        emit_line(item, &line, changes);
    }
}

fn flush_partial(item: &mut Item, changes: &mut Vec<Change>) {
    for s in 0..item.partial.len() {
        if !item.partial[s].is_empty() {
            let line = std::mem::take(&mut item.partial[s]);
            emit_line(item, &line, changes);
        }
    }
}

fn emit_line(item: &mut Item, line: &[u8], changes: &mut Vec<Change>) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = String::from_utf8_lossy(line).into_owned();
    if item.tail.len() == TAIL_LINES {
        item.tail.pop_front();
    }
    item.tail.push_back(text.clone());
    changes.push(Change::Line(text));
}

/// `sha256:` and the first 12 hex digits, for vertices the caller did not describe.
pub fn short_digest(d: &Digest) -> String {
    d.as_str().chars().take("sha256:".len() + 12).collect()
}

/// Decimal units as registries and BuildKit print them: `532B`, `12.35MB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n}B");
    }
    let mut v = n as f64 / 1000.0;
    let mut unit = 0;
    while v >= 999.995 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.2}{}", UNITS[unit])
}

/// `12.35MB / 40.00MB 6.17MB/s`: bytes, total when known, and the mean rate since start.
pub fn bytes_status(current: u64, total: Option<u64>, elapsed: Duration) -> String {
    let mut s = human_bytes(current);
    if let Some(total) = total {
        s.push_str(" / ");
        s.push_str(&human_bytes(total));
    }
    let secs = elapsed.as_secs_f64();
    if secs >= 0.001 {
        s.push(' ');
        s.push_str(&human_bytes((current as f64 / secs) as u64));
        s.push_str("/s");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(n: u8) -> Digest {
        Digest::sha256(&[n])
    }

    fn msg(ms: u64, key: &ItemKey, ev: Ev) -> Msg {
        Msg {
            at: Duration::from_millis(ms),
            key: key.clone(),
            ev,
        }
    }

    fn lines(changes: &[Change]) -> Vec<&str> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::Line(l) => Some(l.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn partial_lines_wait_for_their_newline_per_stream() {
        let mut m = Model::new(Vec::new());
        let k = ItemKey::Step(step(1));
        m.apply(msg(0, &k, Ev::Started { name: None }));
        let (_, c) = m.apply(msg(1, &k, Ev::Log(LogStream::Stdout, b"hel".to_vec())));
        assert!(lines(&c).is_empty());
        let (_, c) = m.apply(msg(2, &k, Ev::Log(LogStream::Stderr, b"warn\n".to_vec())));
        assert_eq!(lines(&c), ["warn"]);
        let (_, c) = m.apply(msg(
            3,
            &k,
            Ev::Log(LogStream::Stdout, b"lo\r\nwor".to_vec()),
        ));
        assert_eq!(lines(&c), ["hello"]);
        let (_, c) = m.apply(msg(4, &k, Ev::Done(None)));
        assert_eq!(lines(&c), ["wor"]);
        assert_eq!(m.items()[0].tail, ["warn", "hello", "wor"]);
        assert_eq!(m.items()[0].duration, Some(Duration::from_millis(4)));
    }

    #[test]
    fn endless_line_is_cut_into_bounded_pieces() {
        let mut m = Model::new(Vec::new());
        let k = ItemKey::Step(step(1));
        let big = vec![b'x'; MAX_PARTIAL + 1];
        let (_, c) = m.apply(msg(0, &k, Ev::Log(LogStream::Stdout, big)));
        assert_eq!(lines(&c).len(), 1);
        assert_eq!(lines(&c)[0].len(), MAX_PARTIAL + 1);
    }

    #[test]
    fn items_are_numbered_in_first_report_order_and_counted() {
        let (a, b) = (step(1), step(2));
        let info = |n: &str| StepInfo {
            name: n.into(),
            location: None,
        };
        let mut m = Model::new(vec![(a.clone(), info("A")), (b.clone(), info("B"))]);
        assert_eq!(m.total(), 2);
        m.apply(msg(0, &ItemKey::Step(b.clone()), Ev::Cached));
        let t = ItemKey::Task(TaskId::next());
        m.apply(msg(
            1,
            &t,
            Ev::Started {
                name: Some("export".into()),
            },
        ));
        m.apply(msg(2, &ItemKey::Step(a), Ev::Started { name: None }));
        let names: Vec<_> = m
            .items()
            .iter()
            .map(|i| (i.number, i.name.as_str()))
            .collect();
        assert_eq!(names, [(1, "B"), (2, "export"), (3, "A")]);
        assert_eq!((m.finished(), m.total()), (1, 3));
        let canceled = m.cancel_running(Duration::from_millis(5));
        assert_eq!(canceled.len(), 2);
        assert_eq!(m.items()[2].state, State::Canceled);
    }

    #[test]
    fn byte_sizes_and_rates_read_like_buildkit() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(999), "999B");
        assert_eq!(human_bytes(12_345_678), "12.35MB");
        assert_eq!(human_bytes(999_999), "1.00MB");
        assert_eq!(human_bytes(40_000_000_000), "40.00GB");
        assert_eq!(
            bytes_status(12_000_000, Some(40_000_000), Duration::from_secs(2)),
            "12.00MB / 40.00MB 6.00MB/s"
        );
        assert_eq!(bytes_status(532, None, Duration::ZERO), "532B");
    }
}
