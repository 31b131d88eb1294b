//! `--progress rawjson`: one JSON object per line per event, for tools. Output is passed
//! on as it arrives (not split into lines): `data` holds it when it is UTF-8, otherwise
//! `data_base64` does. Times are milliseconds since the build started.
//!
//! ```text
//! {"t_ms":0,"id":1,"kind":"step","digest":"sha256:…","name":"[build 1/3] FROM busybox","event":"cached"}
//! {"t_ms":12,"id":2,"kind":"step",…,"event":"log","stream":"stdout","data":"hi\n"}
//! {"t_ms":20,"id":3,"kind":"task","name":"exporting layers","event":"progress","current":5,"total":10}
//! {"t_ms":21,"id":4,"kind":"step",…,"event":"cache_miss","reason":"COPY . /app — file a.txt content changed"}
//! {"t_ms":900,"event":"finish","ok":true,"finished":3,"total":3}
//! ```
//!
//! With `--explain`, `rbuild build` adds one line after `finish`:
//! `{"event":"explain","earlier_build":true,"misses":[{"step":"[2/3] COPY . /app","reasons":[…]}]}`.

use std::io::{self, Write};
use std::time::Duration;

use base64::Engine as _;
use rbuild_solver::LogStream;
use serde::Serialize;

use super::Renderer;
use super::model::{Change, Ev, ItemKey, Model, Msg};

#[derive(Serialize)]
struct Line<'a> {
    t_ms: u64,
    id: usize,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a str>,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<&'a str>,
    event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    current: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

#[derive(Serialize)]
struct Finish {
    t_ms: u64,
    event: &'static str,
    ok: bool,
    finished: usize,
    total: usize,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub struct RawJson {
    model: Model,
    out: Box<dyn Write + Send>,
}

impl RawJson {
    pub fn new(model: Model, out: Box<dyn Write + Send>) -> RawJson {
        RawJson { model, out }
    }

    /// Writes item `i`'s event; `ev` is `None` for a cancellation at the end.
    fn write(&mut self, i: usize, at: Duration, ev: Option<&Ev>) -> io::Result<()> {
        let item = &self.model.items()[i];
        let (kind, digest) = match &item.key {
            ItemKey::Step(d) => ("step", Some(d.as_str())),
            ItemKey::Task(_) => ("task", None),
        };
        let mut line = Line {
            t_ms: ms(at),
            id: item.number,
            kind,
            digest,
            name: &item.name,
            location: item.location.as_deref(),
            event: "canceled",
            stream: None,
            data: None,
            data_base64: None,
            current: None,
            total: None,
            duration_ms: None,
            error: None,
            reason: None,
        };
        match ev {
            None => line.duration_ms = item.duration.map(ms),
            Some(Ev::Started { .. }) => line.event = "started",
            Some(Ev::Cached) => line.event = "cached",
            Some(Ev::Log(stream, bytes)) => {
                line.event = "log";
                line.stream = Some(match stream {
                    LogStream::Stdout => "stdout",
                    LogStream::Stderr => "stderr",
                });
                match std::str::from_utf8(bytes) {
                    Ok(text) => line.data = Some(text),
                    Err(_) => {
                        line.data_base64 =
                            Some(base64::engine::general_purpose::STANDARD.encode(bytes));
                    }
                }
            }
            Some(Ev::Bytes { current, total }) => {
                line.event = "progress";
                line.current = Some(*current);
                line.total = *total;
            }
            Some(Ev::Done(_)) => {
                line.event = "done";
                line.duration_ms = item.duration.map(ms);
            }
            Some(Ev::Failed(error)) => {
                line.event = "error";
                line.duration_ms = item.duration.map(ms);
                line.error = Some(error);
            }
            Some(Ev::CacheMiss(reason)) => {
                line.event = "cache_miss";
                line.reason = Some(reason);
            }
        }
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")
    }
}

impl Renderer for RawJson {
    fn event(&mut self, msg: Msg) -> io::Result<()> {
        let at = msg.at;
        let ev = msg.ev.clone();
        let (i, _) = self.model.apply(msg);
        self.write(i, at, Some(&ev))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self, now: Duration, ok: bool) -> io::Result<()> {
        for (i, changes) in self.model.cancel_running(now) {
            if changes.contains(&Change::Canceled) {
                self.write(i, now, None)?;
            }
        }
        let finish = Finish {
            t_ms: ms(now),
            event: "finish",
            ok,
            finished: self.model.finished(),
            total: self.model.total(),
        };
        serde_json::to_writer(&mut self.out, &finish)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }
}
