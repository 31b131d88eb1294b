//! `--progress tty`: a live tree redrawn in place through indicatif, as BuildKit draws it:
//!
//! ```text
//! [+] Building 3.2s (7/9)
//!  => CACHED [build 1/3] FROM busybox                               0.0s
//!  => [build 2/3] RUN make                                           1.2s
//!  => => # cc -c main.c
//!  => exporting layers 12.35MB / 40.00MB 6.17MB/s                    2.0s
//! ```
//!
//! Each redraw is a pure [`frame`] of the model; at the end the live view is cleared and
//! the final frame is written once, as a static summary.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

use super::Renderer;
use super::model::{Item, Model, Msg, State, bytes_status};

/// How often the live view is redrawn (timers move even without events).
pub const TICK: Duration = Duration::from_millis(100);

/// The lines of one picture of the build, each at most `width` columns. `limit` bounds the
/// number of lines of a live view: the oldest finished items are left out first.
pub fn frame(
    model: &Model,
    now: Duration,
    width: usize,
    finished: Option<bool>,
    limit: Option<usize>,
) -> Vec<String> {
    let mut header = format!(
        "[+] Building {:.1}s ({}/{})",
        now.as_secs_f64(),
        model.finished(),
        model.total()
    );
    if finished == Some(true) {
        header.push_str(" FINISHED");
    }
    let mut blocks: Vec<(bool, Vec<String>)> = model
        .items()
        .iter()
        .map(|item| (item.state.is_finished(), item_lines(item, now, width)))
        .collect();
    if let Some(limit) = limit {
        let mut count: usize = 1 + blocks.iter().map(|(_, l)| l.len()).sum::<usize>();
        while count > limit {
            let Some(pos) = blocks.iter().position(|(done, _)| *done) else {
                break;
            };
            count -= blocks.remove(pos).1.len();
        }
    }
    let mut lines = vec![fit(&header, width)];
    lines.extend(blocks.into_iter().flat_map(|(_, l)| l));
    if let Some(limit) = limit
        && lines.len() > limit
    {
        // Only running items are left and they do not fit: keep the newest.
        let cut = lines.len() - limit;
        lines.drain(1..=cut.min(lines.len() - 1));
    }
    lines
}

fn item_lines(item: &Item, now: Duration, width: usize) -> Vec<String> {
    let prefix = match &item.state {
        State::Running | State::Done => "",
        State::Cached => "CACHED ",
        State::Failed(_) => "ERROR ",
        State::Canceled => "CANCELED ",
    };
    let elapsed = item.elapsed(now);
    let mut left = format!(" => {prefix}{}", item.name);
    if let Some((current, total)) = item.bytes {
        left.push(' ');
        left.push_str(&bytes_status(current, total, elapsed));
    }
    let right = format!("{:.1}s", elapsed.as_secs_f64());
    let mut lines = vec![align(&left, &right, width)];
    let show_tail = matches!(item.state, State::Running | State::Failed(_));
    if show_tail {
        for line in &item.tail {
            lines.push(fit(&format!(" => => # {}", printable(line)), width));
        }
    }
    if let State::Failed(error) = &item.state {
        let at = item
            .location
            .as_deref()
            .map_or_else(String::new, |l| format!(" ({l})"));
        let first = error.lines().next().unwrap_or("");
        lines.push(fit(
            &format!(" => => ERROR{at}: {}", printable(first)),
            width,
        ));
    }
    lines
}

/// `left`, then `right` flush with the right edge; `left` is cut to make room.
fn align(left: &str, right: &str, width: usize) -> String {
    let room = width.saturating_sub(right.chars().count() + 1);
    let left = fit(left, room);
    let pad = width.saturating_sub(left.chars().count() + right.chars().count());
    format!("{left}{}{right}", " ".repeat(pad.max(1)))
}

fn fit(s: &str, width: usize) -> String {
    s.chars().take(width).collect()
}

/// Output as one line of the tree: tabs become spaces; colour and cursor sequences
/// (`ESC [ … final`) and other control characters are dropped so they cannot move the
/// cursor or bleed into the next line.
fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\t' => out.push(' '),
            '\x1b' => {
                if chars.clone().next() == Some('[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Columns and rows, shared by the renderer (which may re-read them from the terminal)
/// and the draw target.
#[derive(Debug)]
pub struct Size {
    cols: AtomicU16,
    rows: AtomicU16,
}

impl Size {
    fn new((cols, rows): (u16, u16)) -> Size {
        Size {
            cols: AtomicU16::new(cols.max(1)),
            rows: AtomicU16::new(rows.max(1)),
        }
    }

    fn set(&self, (cols, rows): (u16, u16)) {
        self.cols.store(cols.max(1), Ordering::Relaxed);
        self.rows.store(rows.max(1), Ordering::Relaxed);
    }

    fn get(&self) -> (u16, u16) {
        (
            self.cols.load(Ordering::Relaxed),
            self.rows.load(Ordering::Relaxed),
        )
    }
}

/// A terminal reached through a plain writer with ANSI cursor sequences.
pub struct WriterTerm {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    size: Arc<Size>,
}

impl fmt::Debug for WriterTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriterTerm")
            .field("size", &self.size)
            .finish()
    }
}

impl WriterTerm {
    fn write(&self, s: &str) -> io::Result<()> {
        self.out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_all(s.as_bytes())
    }

    fn csi(&self, n: usize, code: char) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.write(&format!("\x1b[{n}{code}"))
    }
}

impl TermLike for WriterTerm {
    fn width(&self) -> u16 {
        self.size.get().0
    }
    fn height(&self) -> u16 {
        self.size.get().1
    }
    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        self.csi(n, 'A')
    }
    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        self.csi(n, 'B')
    }
    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        self.csi(n, 'C')
    }
    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        self.csi(n, 'D')
    }
    fn write_line(&self, s: &str) -> io::Result<()> {
        self.write(s)?;
        self.write("\n")
    }
    fn write_str(&self, s: &str) -> io::Result<()> {
        self.write(s)
    }
    fn clear_line(&self) -> io::Result<()> {
        self.write("\r\x1b[2K")
    }
    fn flush(&self) -> io::Result<()> {
        self.out.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

/// Reads the terminal's current size.
pub type Probe = fn() -> Option<(u16, u16)>;

pub struct Tty {
    model: Model,
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    bar: ProgressBar,
    size: Arc<Size>,
    probe: Option<Probe>,
}

impl Tty {
    /// A live view of `size` (columns, rows) drawn on `out`; with `probe`, the size is
    /// re-read before every redraw so that a resized terminal is followed.
    pub fn new(
        model: Model,
        out: Box<dyn Write + Send>,
        size: (u16, u16),
        probe: Option<Probe>,
    ) -> Tty {
        let out: Arc<Mutex<Box<dyn Write + Send>>> =
            Arc::new(Mutex::new(Box::new(io::BufWriter::new(out))));
        let size = Arc::new(Size::new(size));
        let term = WriterTerm {
            out: Arc::clone(&out),
            size: Arc::clone(&size),
        };
        // The renderer thread paces redraws (`TICK`), so indicatif draws every message.
        let bar =
            ProgressBar::with_draw_target(None, ProgressDrawTarget::term_like(Box::new(term)));
        bar.set_style(
            ProgressStyle::with_template("{msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        Tty {
            model,
            out,
            bar,
            size,
            probe,
        }
    }

    fn draw(&self, now: Duration) {
        if let Some(size) = self.probe.and_then(|probe| probe()) {
            self.size.set(size);
        }
        let (cols, rows) = self.size.get();
        let limit = usize::from(rows.saturating_sub(1)).max(2);
        let lines = frame(&self.model, now, usize::from(cols), None, Some(limit));
        self.bar.set_message(lines.join("\n"));
    }
}

impl Renderer for Tty {
    fn event(&mut self, msg: Msg) -> io::Result<()> {
        self.model.apply(msg);
        Ok(())
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(TICK)
    }

    fn tick(&mut self, now: Duration) -> io::Result<()> {
        self.draw(now);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn finish(&mut self, now: Duration, ok: bool) -> io::Result<()> {
        self.model.cancel_running(now);
        self.bar.finish_and_clear();
        let lines = frame(
            &self.model,
            now,
            usize::from(self.size.get().0),
            Some(ok),
            None,
        );
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        for line in lines {
            writeln!(out, "{line}")?;
        }
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::StepInfo;
    use crate::progress::model::{Ev, ItemKey};
    use rbuild_graph::Digest;
    use rbuild_solver::{LogStream, TaskId};

    fn at(ms: u64, key: &ItemKey, ev: Ev) -> Msg {
        Msg {
            at: Duration::from_millis(ms),
            key: key.clone(),
            ev,
        }
    }

    fn model() -> (Model, ItemKey, ItemKey, ItemKey) {
        let digests: Vec<Digest> = (0..3u8).map(|n| Digest::sha256(&[n])).collect();
        let names = [
            "[build 1/3] FROM busybox",
            "[build 2/3] COPY . /src",
            "[build 3/3] RUN make",
        ];
        let steps = digests
            .iter()
            .zip(names)
            .map(|(d, n)| {
                (
                    d.clone(),
                    StepInfo {
                        name: n.into(),
                        location: Some("Dockerfile:3".into()),
                    },
                )
            })
            .collect();
        let mut m = Model::new(steps);
        let [a, b, c] = [0, 1, 2].map(|i| ItemKey::Step(digests[i].clone()));
        m.apply(at(0, &a, Ev::Cached));
        m.apply(at(10, &b, Ev::Started { name: None }));
        m.apply(at(310, &b, Ev::Done(Some(Duration::from_millis(300)))));
        m.apply(at(320, &c, Ev::Started { name: None }));
        (m, a, b, c)
    }

    #[test]
    fn live_frame_shows_states_timers_and_the_running_tail() {
        let (mut m, _, _, c) = model();
        for i in 0..8 {
            let line = format!("line {i}\n\x1b[1mbold\x1b[0m\tx");
            m.apply(at(
                400 + i,
                &c,
                Ev::Log(LogStream::Stdout, line.into_bytes()),
            ));
        }
        let t = ItemKey::Task(TaskId::next());
        m.apply(at(
            500,
            &t,
            Ev::Started {
                name: Some("exporting layers".into()),
            },
        ));
        m.apply(at(
            2500,
            &t,
            Ev::Bytes {
                current: 12_000_000,
                total: Some(40_000_000),
            },
        ));
        let lines = frame(&m, Duration::from_millis(2500), 60, None, None);
        let want = [
            "[+] Building 2.5s (2/4)",
            " => CACHED [build 1/3] FROM busybox                     0.0s",
            " => [build 2/3] COPY . /src                             0.3s",
            " => [build 3/3] RUN make                                2.2s",
            " => => # bold xline 2",
            " => => # bold xline 3",
            " => => # bold xline 4",
            " => => # bold xline 5",
            " => => # bold xline 6",
            " => => # bold xline 7",
            " => exporting layers 12.00MB / 40.00MB 6.00MB/s         2.0s",
        ];
        assert_eq!(lines, want);
        assert!(lines.iter().all(|l| l.chars().count() <= 60));
    }

    #[test]
    fn final_frame_is_a_static_summary_with_the_error() {
        let (mut m, _, _, c) = model();
        m.apply(at(
            330,
            &c,
            Ev::Log(LogStream::Stderr, b"make: *** no rule\n".to_vec()),
        ));
        m.apply(at(420, &c, Ev::Failed("exit code: 2\nmore".into())));
        let lines = frame(&m, Duration::from_millis(500), 50, Some(false), None);
        assert_eq!(
            lines,
            [
                "[+] Building 0.5s (2/3)",
                " => CACHED [build 1/3] FROM busybox           0.0s",
                " => [build 2/3] COPY . /src                   0.3s",
                " => ERROR [build 3/3] RUN make                0.1s",
                " => => # make: *** no rule",
                " => => ERROR (Dockerfile:3): exit code: 2",
            ]
        );
        m.apply(at(0, &ItemKey::Task(TaskId::next()), Ev::Done(None)));
        let ok = frame(&m, Duration::from_millis(500), 50, Some(true), None);
        assert_eq!(ok[0], "[+] Building 0.5s (3/4) FINISHED");
    }

    #[test]
    fn live_frame_drops_finished_items_first_when_too_tall() {
        let (m, _, _, _) = model();
        let lines = frame(&m, Duration::from_millis(400), 40, None, Some(2));
        assert_eq!(lines.len(), 2);
        assert!(
            lines[1].starts_with(" => [build 3/3] RUN make"),
            "{lines:?}"
        );
    }

    #[test]
    fn long_names_are_cut_before_the_timer() {
        assert_eq!(align(" => abcdefghij", "1.0s", 12), " => abc 1.0s");
        assert_eq!(align(" => a", "1.0s", 12), " => a   1.0s");
    }

    /// A writer the test can read back after the renderer has taken it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn indicatif_draws_in_place_then_leaves_the_summary() {
        let (m, _, _, _) = model();
        let buf = Shared::default();
        let mut tty = Tty::new(m, Box::new(buf.clone()), (50, 20), None);
        tty.tick(Duration::from_millis(400)).unwrap();
        tty.tick(Duration::from_millis(500)).unwrap();
        tty.finish(Duration::from_millis(600), true).unwrap();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        // Two live frames, the second drawn over the first (cursor up over 4 lines).
        assert!(text.contains("[+] Building 0.4s (2/3)"), "{text}");
        assert!(text.contains("[+] Building 0.5s (2/3)"), "{text}");
        assert!(
            text.contains("\x1b[3A") || text.contains("\x1b[4A"),
            "{text:?}"
        );
        let summary = "[+] Building 0.6s (2/3) FINISHED\n \
                       => CACHED [build 1/3] FROM busybox           0.0s\n \
                       => [build 2/3] COPY . /src                   0.3s\n \
                       => CANCELED [build 3/3] RUN make             0.3s\n";
        assert!(text.ends_with(summary), "{text:?}");
    }
}
