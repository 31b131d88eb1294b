//! Golden tests: recorded event sequences through the real sink, channel and renderer
//! thread, with a clock the test sets before every event.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rbuild_graph::Digest;
use rbuild_solver::{LogStream, ProgressSink};

use super::{Clock, ProgressMode, StepInfo, start_with, transfer_mode};

#[derive(Default)]
struct FakeClock(AtomicU64);

impl FakeClock {
    fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn elapsed(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::SeqCst))
    }
}

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

fn digest(n: u8) -> Digest {
    Digest::sha256(&[n])
}

/// Steps 0..4 of a two-stage Dockerfile.
fn steps() -> Vec<(Digest, StepInfo)> {
    let names = [
        ("[base 1/2] FROM busybox", 1),
        ("[base 2/2] COPY . /src", 2),
        ("[build 1/2] RUN make", 4),
        ("[test 1/1] RUN make test", 7),
    ];
    names
        .iter()
        .enumerate()
        .map(|(i, (name, line))| {
            let info = StepInfo {
                name: (*name).to_owned(),
                location: Some(format!("Dockerfile:{line}")),
            };
            (digest(i as u8), info)
        })
        .collect()
}

/// One recorded event: at `ms`, call the sink.
enum Step {
    Start(u8),
    Cached(u8),
    Out(u8, &'static str),
    Err(u8, &'static [u8]),
    Bytes(u8, u64, Option<u64>),
    Done(u8, u64),
    Fail(u8, &'static str),
    Miss(u8, &'static str),
    Task(&'static str),
    TaskBytes(&'static str, u64, Option<u64>),
    TaskDone(&'static str),
}

/// Plays `events` through a progress display in `mode` and returns what it wrote.
fn play(mode: ProgressMode, events: &[(u64, Step)], end: u64, ok: bool) -> String {
    let clock = Arc::new(FakeClock::default());
    let out = Shared::default();
    let progress = start_with(
        mode,
        steps(),
        Box::new(out.clone()),
        clock.clone(),
        (60, 20),
    )
    .unwrap();
    let sink = progress.sink();
    let mut tasks = std::collections::BTreeMap::new();
    for (ms, step) in events {
        clock.set(*ms);
        match step {
            Step::Start(n) => sink.vertex_started(&digest(*n)),
            Step::Cached(n) => sink.vertex_cached(&digest(*n)),
            Step::Out(n, text) => sink.vertex_log(&digest(*n), LogStream::Stdout, text.as_bytes()),
            Step::Err(n, bytes) => sink.vertex_log(&digest(*n), LogStream::Stderr, bytes),
            Step::Bytes(n, cur, total) => sink.vertex_progress(&digest(*n), *cur, *total),
            Step::Done(n, ms) => sink.vertex_done(&digest(*n), Duration::from_millis(*ms)),
            Step::Fail(n, e) => sink.vertex_failed(&digest(*n), e),
            Step::Miss(n, reason) => sink.vertex_cache_miss(&digest(*n), reason),
            Step::Task(name) => {
                tasks.insert(*name, progress.task(name));
            }
            Step::TaskBytes(name, cur, total) => tasks[name].progress(*cur, *total),
            Step::TaskDone(name) => tasks.remove(name).unwrap().done(),
        }
    }
    clock.set(end);
    progress.finish(ok).unwrap();
    String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
}

fn cached_build() -> Vec<(u64, Step)> {
    vec![
        (5, Step::Cached(0)),
        (6, Step::Cached(1)),
        (10, Step::Start(2)),
        (225, Step::Out(2, "cc -c main.c\n")),
        (1300, Step::Done(2, 1290)),
    ]
}

/// Steps 2 and 3 run at once; their output arrives in pieces that split lines.
fn interleaved() -> Vec<(u64, Step)> {
    vec![
        (0, Step::Cached(0)),
        (0, Step::Cached(1)),
        (100, Step::Start(2)),
        (100, Step::Start(3)),
        (200, Step::Out(2, "compil")),
        (250, Step::Out(3, "test 1 ok\ntest 2")),
        (300, Step::Out(2, "ing main.c\nlinking\n")),
        (350, Step::Out(3, " ok\n")),
        (400, Step::Done(2, 300)),
        (500, Step::Out(3, "summary: 2 passed")),
        (600, Step::Done(3, 500)),
    ]
}

fn failure() -> Vec<(u64, Step)> {
    vec![
        (0, Step::Cached(0)),
        (0, Step::Start(1)),
        (100, Step::Done(1, 100)),
        (100, Step::Start(2)),
        (100, Step::Start(3)),
        (150, Step::Err(2, b"make: *** [all] Error 1")),
        (
            180,
            Step::Fail(
                2,
                "process \"/bin/sh -c make\" did not complete successfully: exit code: 2",
            ),
        ),
        (190, Step::Out(3, "still going\n")),
    ]
}

fn tasks() -> Vec<(u64, Step)> {
    vec![
        (0, Step::Cached(0)),
        (0, Step::Start(1)),
        (100, Step::Bytes(1, 1000, None)),
        (200, Step::Done(1, 200)),
        (1000, Step::Task("exporting layers")),
        (
            1000,
            Step::TaskBytes("exporting layers", 0, Some(40_000_000)),
        ),
        (
            1500,
            Step::TaskBytes("exporting layers", 5_000_000, Some(40_000_000)),
        ),
        (
            2200,
            Step::TaskBytes("exporting layers", 20_000_000, Some(40_000_000)),
        ),
        (
            2500,
            Step::TaskBytes("exporting layers", 40_000_000, Some(40_000_000)),
        ),
        (2600, Step::TaskDone("exporting layers")),
        (2600, Step::Task("naming to docker.io/library/app:latest")),
        (
            2610,
            Step::TaskDone("naming to docker.io/library/app:latest"),
        ),
    ]
}

#[test]
fn plain_cached_steps_print_cached() {
    let out = play(ProgressMode::Plain, &cached_build(), 1400, true);
    let want = "\
#1 [base 1/2] FROM busybox
#1 CACHED

#2 [base 2/2] COPY . /src
#2 CACHED

#3 [build 1/2] RUN make
#3 0.215 cc -c main.c
#3 DONE 1.3s
";
    assert_eq!(out, want);
    assert_eq!(out.lines().filter(|l| l.contains("CACHED")).count(), 2);
}

#[test]
fn plain_interleaves_whole_lines_only() {
    let out = play(ProgressMode::Plain, &interleaved(), 700, true);
    let want = "\
#1 [base 1/2] FROM busybox
#1 CACHED

#2 [base 2/2] COPY . /src
#2 CACHED

#3 [build 1/2] RUN make

#4 [test 1/1] RUN make test
#4 0.150 test 1 ok

#3 [build 1/2] RUN make
#3 0.200 compiling main.c
#3 0.200 linking

#4 [test 1/1] RUN make test
#4 0.250 test 2 ok

#3 [build 1/2] RUN make
#3 DONE 0.3s

#4 [test 1/1] RUN make test
#4 0.500 summary: 2 passed
#4 DONE 0.5s
";
    assert_eq!(out, want);
}

#[test]
fn plain_failure_flushes_the_last_line_then_errors_and_cancels_the_rest() {
    let out = play(ProgressMode::Plain, &failure(), 200, false);
    let want = "\
#1 [base 1/2] FROM busybox
#1 CACHED

#2 [base 2/2] COPY . /src
#2 DONE 0.1s

#3 [build 1/2] RUN make

#4 [test 1/1] RUN make test

#3 [build 1/2] RUN make
#3 0.080 make: *** [all] Error 1
#3 ERROR: process \"/bin/sh -c make\" did not complete successfully: exit code: 2

#4 [test 1/1] RUN make test
#4 0.090 still going
#4 CANCELED
";
    assert_eq!(out, want);
}

#[test]
fn plain_tasks_show_bytes_at_most_once_a_second_and_when_complete() {
    let out = play(ProgressMode::Plain, &tasks(), 2700, true);
    let want = "\
#1 [base 1/2] FROM busybox
#1 CACHED

#2 [base 2/2] COPY . /src
#2 1.00kB 10.00kB/s 0.1s
#2 DONE 0.2s

#3 exporting layers
#3 0B / 40.00MB 0.0s
#3 20.00MB / 40.00MB 16.67MB/s 1.2s
#3 40.00MB / 40.00MB 26.67MB/s 1.5s
#3 DONE 1.6s

#4 naming to docker.io/library/app:latest
#4 DONE 0.0s
";
    assert_eq!(out, want);
}

#[test]
fn rawjson_is_one_object_per_event() {
    let out = play(ProgressMode::RawJson, &failure(), 200, false);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let d2 = digest(2).to_string();
    let summary: Vec<String> = lines
        .iter()
        .map(|v| format!("{} {} {}", v["t_ms"], v["id"], v["event"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            "0 1 cached",
            "0 2 started",
            "100 2 done",
            "100 3 started",
            "100 4 started",
            "150 3 log",
            "180 3 error",
            "190 4 log",
            "200 4 canceled",
            "200 null finish",
        ]
    );
    let failed = serde_json::json!({
        "t_ms": 180, "id": 3, "kind": "step", "digest": d2, "name": "[build 1/2] RUN make",
        "location": "Dockerfile:4", "event": "error", "duration_ms": 80,
        "error": "process \"/bin/sh -c make\" did not complete successfully: exit code: 2",
    });
    assert_eq!(lines[6], failed);
    assert_eq!(lines[5]["stream"], "stderr");
    assert_eq!(lines[5]["data"], "make: *** [all] Error 1");
    assert_eq!(
        lines[9],
        serde_json::json!({"t_ms": 200, "event": "finish", "ok": false, "finished": 2, "total": 4})
    );
}

#[test]
fn rawjson_keeps_raw_bytes_and_task_progress() {
    let mut events = tasks();
    events.insert(2, (50, Step::Err(1, b"\xff\xfepartial")));
    let out = play(ProgressMode::RawJson, &events, 2700, true);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let log = lines.iter().find(|v| v["event"] == "log").unwrap();
    assert_eq!(log["data_base64"], "//5wYXJ0aWFs");
    assert!(log.get("data").is_none());
    let progress: Vec<_> = lines
        .iter()
        .filter(|v| v["event"] == "progress" && v["kind"] == "task")
        .map(|v| (v["t_ms"].as_u64().unwrap(), v["current"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        progress,
        [
            (1000, 0),
            (1500, 5_000_000),
            (2200, 20_000_000),
            (2500, 40_000_000)
        ]
    );
    let task = lines
        .iter()
        .find(|v| v["kind"] == "task" && v["event"] == "progress")
        .unwrap();
    assert_eq!(task["name"], "exporting layers");
    assert_eq!(task["total"], 40_000_000);
    assert_eq!(lines.last().unwrap()["ok"], true);
}

#[test]
fn cache_misses_follow_the_step_header_and_are_rawjson_events() {
    let events = vec![
        (0, Step::Cached(0)),
        (10, Step::Start(1)),
        (10, Step::Miss(1, "COPY . /src — file a.c content changed")),
        (50, Step::Done(1, 40)),
    ];
    let out = play(ProgressMode::Plain, &events, 60, true);
    let want = "\
#1 [base 1/2] FROM busybox
#1 CACHED

#2 [base 2/2] COPY . /src
#2 cache miss: COPY . /src — file a.c content changed
#2 DONE 0.0s
";
    assert_eq!(out, want);
    let out = play(ProgressMode::RawJson, &events, 60, true);
    let miss: serde_json::Value = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["event"] == "cache_miss")
        .unwrap();
    assert_eq!(miss["id"], 2);
    assert_eq!(miss["reason"], "COPY . /src — file a.c content changed");
}

#[test]
fn quiet_writes_nothing() {
    assert_eq!(play(ProgressMode::Quiet, &failure(), 200, false), "");
}

#[test]
fn tty_ends_with_the_summary() {
    let out = play(ProgressMode::Tty, &cached_build(), 1400, true);
    let want = "\
[+] Building 1.4s (3/4) FINISHED
 => CACHED [base 1/2] FROM busybox                      0.0s
 => CACHED [base 2/2] COPY . /src                       0.0s
 => [build 1/2] RUN make                                1.3s
";
    assert!(out.ends_with(want), "{out:?}");
}

#[test]
fn auto_reads_the_environment_then_the_terminal() {
    let auto = ProgressMode::Auto;
    assert_eq!(auto.resolve(None, true).unwrap(), ProgressMode::Tty);
    assert_eq!(auto.resolve(None, false).unwrap(), ProgressMode::Plain);
    assert_eq!(auto.resolve(Some(""), false).unwrap(), ProgressMode::Plain);
    assert_eq!(
        auto.resolve(Some("rawjson"), true).unwrap(),
        ProgressMode::RawJson
    );
    assert_eq!(
        auto.resolve(Some("QUIET"), true).unwrap(),
        ProgressMode::Quiet
    );
    assert_eq!(
        auto.resolve(Some("auto"), false).unwrap(),
        ProgressMode::Plain
    );
    let err = auto.resolve(Some("fancy"), true).unwrap_err();
    assert!(err.to_string().contains("RBUILD_PROGRESS"), "{err}");
    assert_eq!(
        ProgressMode::Plain.resolve(Some("tty"), true).unwrap(),
        ProgressMode::Plain
    );
}

#[test]
fn transfers_are_silent_without_a_terminal_unless_asked() {
    assert_eq!(transfer_mode(None, false).unwrap(), ProgressMode::Quiet);
    assert_eq!(
        transfer_mode(Some("auto"), false).unwrap(),
        ProgressMode::Quiet
    );
    assert_eq!(transfer_mode(None, true).unwrap(), ProgressMode::Tty);
    assert_eq!(
        transfer_mode(Some("plain"), true).unwrap(),
        ProgressMode::Plain
    );
    assert_eq!(
        transfer_mode(Some("rawjson"), false).unwrap(),
        ProgressMode::RawJson
    );
    assert!(transfer_mode(Some("fancy"), false).is_err());
}

#[test]
fn step_info_comes_from_the_graph() {
    let meta = rbuild_graph::VertexMeta {
        description: "[build 3/5] RUN make".into(),
        stage: Some("build".into()),
        location: Some(rbuild_graph::Location {
            line: 12,
            col: 1,
            end_line: 12,
        }),
    };
    assert_eq!(
        StepInfo::from(("Dockerfile", &meta)),
        StepInfo {
            name: "[build 3/5] RUN make".into(),
            location: Some("Dockerfile:12".into()),
        }
    );
}

#[test]
fn concurrent_steps_never_split_a_line() {
    let clock = Arc::new(FakeClock::default());
    let out = Shared::default();
    let progress = start_with(
        ProgressMode::Plain,
        steps(),
        Box::new(out.clone()),
        clock,
        (60, 20),
    )
    .unwrap();
    let writers: Vec<_> = [2u8, 3]
        .into_iter()
        .map(|n| {
            let sink = progress.sink();
            std::thread::spawn(move || {
                let key = digest(n);
                sink.vertex_started(&key);
                let text: String = (0..200).map(|i| format!("step {n} line {i}\n")).collect();
                // Chunks of 1..=7 bytes, so nearly every chunk ends mid-line.
                let mut rest = text.as_bytes();
                let mut size = 1;
                while !rest.is_empty() {
                    let (chunk, tail) = rest.split_at(size.min(rest.len()));
                    sink.vertex_log(&key, LogStream::Stdout, chunk);
                    rest = tail;
                    size = size % 7 + 1;
                }
                sink.vertex_done(&key, Duration::from_millis(1));
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    progress.finish(true).unwrap();
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    // Which step got which number depends on the threads: read it from the headers.
    for (n, name) in [(2, "[build 1/2] RUN make"), (3, "[test 1/1] RUN make test")] {
        let header = text
            .lines()
            .find(|l| l.ends_with(&format!(" {name}")))
            .unwrap_or_else(|| panic!("no header for {name}:\n{text}"));
        let number = header.split(' ').next().unwrap();
        let prefix = format!("{number} 0.000 ");
        let got: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .collect();
        let want: Vec<String> = (0..200).map(|i| format!("step {n} line {i}")).collect();
        assert_eq!(got, want, "{text}");
    }
}
