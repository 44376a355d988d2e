//! The optional JSON-lines export (`export:` in the config): every exposure, assignment
//! and conversion as one line, for loading into a warehouse.
//!
//! The request path hands an [`ExportEvent`] to a bounded channel and never waits: a
//! writer thread formats and appends them to `<dir>/events.jsonl`, flushes and fsyncs
//! once a second, and rotates the file past `max_file_size` to
//! `events-<unix ms>.jsonl`, keeping the newest `keep_files` rotated files. If the
//! writer falls behind by more than [`QUEUE`] events, new ones are dropped and counted in
//! `abproxy_export_dropped_total` (the counts in the data directory are unaffected: the
//! export is a copy, the counts log is the record).
//!
//! Schema, one object per line:
//!
//! ```json
//! {"ts":"2026-11-23T13:36:16.911Z","type":"conversion","experiment":"moon_mars","run":1,
//!  "variant":"Mars","device_id":"4b1f…","goal":"revenue","value":12.5}
//! ```
//!
//! `type` is `exposure`, `assignment` or `conversion`; `goal` only on conversions;
//! `value` only on conversions of value goals.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::config::ExportConfig;

/// Events waiting for the writer before new ones are dropped.
pub const QUEUE: usize = 65_536;
const CURRENT: &str = "events.jsonl";
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Exposure,
    Assignment,
    Conversion,
}

/// One line of the export.
#[derive(Debug, Clone, Serialize)]
pub struct ExportEvent {
    #[serde(serialize_with = "rfc3339_ms")]
    pub ts: SystemTime,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub experiment: String,
    pub run: u32,
    pub variant: String,
    pub device_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

fn rfc3339_ms<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

enum Message {
    Event(ExportEvent),
    Stop,
}

/// The sending side, shared by snapshots; the writer thread's handle.
pub struct Exporter {
    tx: SyncSender<Message>,
    dropped: prometheus::IntCounter,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Exporter {
    /// Create the directory and the current file, and start the writer.
    pub fn start(
        config: &ExportConfig,
        dropped: prometheus::IntCounter,
    ) -> std::io::Result<Exporter> {
        std::fs::create_dir_all(&config.dir)?;
        let writer = Writer::open(config.clone())?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("abproxy-export".into())
            .spawn(move || writer.run(rx))?;
        Ok(Exporter {
            tx,
            dropped,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queue `event`; never blocks (a full queue drops it and counts the drop).
    pub fn send(&self, event: ExportEvent) {
        match self.tx.try_send(Message::Event(event)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }

    /// Write what is queued, flush, fsync, and stop the writer.
    pub fn stop(&self) {
        let _ = self.tx.send(Message::Stop);
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

struct Writer {
    config: ExportConfig,
    file: BufWriter<File>,
    size: u64,
    dirty: bool,
}

impl Writer {
    fn open(config: ExportConfig) -> std::io::Result<Writer> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(config.dir.join(CURRENT))?;
        let size = file.metadata()?.len();
        Ok(Writer {
            config,
            file: BufWriter::with_capacity(64 * 1024, file),
            size,
            dirty: false,
        })
    }

    fn run(mut self, rx: mpsc::Receiver<Message>) {
        let mut failing = false;
        let mut report = |result: std::io::Result<()>, dir: &Path| match result {
            Err(err) if !failing => {
                tracing::error!(
                    "export to {}: {err}; retrying (lines may be lost)",
                    dir.display()
                );
                failing = true;
            }
            Err(_) => {}
            Ok(()) => failing = false,
        };
        let mut last_sync = Instant::now();
        loop {
            // However busy: lines are on disk at most a second after they arrive.
            if last_sync.elapsed() >= FLUSH_INTERVAL {
                report(self.sync(), &self.config.dir);
                last_sync = Instant::now();
            }
            match rx.recv_timeout(FLUSH_INTERVAL.saturating_sub(last_sync.elapsed())) {
                Ok(Message::Event(event)) => report(self.write(&event), &self.config.dir),
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    report(self.sync(), &self.config.dir);
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    fn write(&mut self, event: &ExportEvent) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        self.dirty = true;
        if self.size >= self.config.max_file_size {
            self.rotate()?;
        }
        Ok(())
    }

    /// Flush and fsync what was written since the last sync.
    fn sync(&mut self) -> std::io::Result<()> {
        if self.dirty {
            self.file.flush()?;
            self.file.get_ref().sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.sync()?;
        let now = crate::util::time::unix_ms(SystemTime::now());
        let mut rotated = self.config.dir.join(format!("events-{now}.jsonl"));
        let mut n = now;
        while rotated.exists() {
            n += 1;
            rotated = self.config.dir.join(format!("events-{n}.jsonl"));
        }
        std::fs::rename(self.config.dir.join(CURRENT), &rotated)?;
        *self = Writer::open(self.config.clone())?;
        prune(&self.config.dir, self.config.keep_files)
    }
}

/// Remove the oldest rotated files beyond `keep` (0 keeps all).
fn prune(dir: &Path, keep: usize) -> std::io::Result<()> {
    if keep == 0 {
        return Ok(());
    }
    let mut rotated = rotated_files(dir)?;
    if rotated.len() > keep {
        let excess = rotated.len() - keep;
        for (_, path) in rotated.drain(..excess) {
            std::fs::remove_file(path)?;
        }
    }
    Ok(())
}

/// `events-<unix ms>.jsonl` files, oldest first.
pub fn rotated_files(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let ms = name
                .strip_prefix("events-")?
                .strip_suffix(".jsonl")?
                .parse()
                .ok()?;
            Some((ms, e.path()))
        })
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: u32) -> ExportEvent {
        ExportEvent {
            ts: std::time::UNIX_EPOCH + Duration::from_millis(1_790_000_000_123),
            kind: if i % 2 == 0 {
                Kind::Exposure
            } else {
                Kind::Conversion
            },
            experiment: "moon_mars".into(),
            run: 3,
            variant: "Mars".into(),
            device_id: format!("d{i}"),
            goal: (i % 2 == 1).then(|| "revenue".into()),
            value: (i % 2 == 1).then_some(12.5),
        }
    }

    #[test]
    fn lines_follow_the_schema() {
        let line = serde_json::to_string(&event(1)).unwrap();
        assert_eq!(
            line,
            r#"{"ts":"2026-09-21T14:13:20.123Z","type":"conversion","experiment":"moon_mars","run":3,"variant":"Mars","device_id":"d1","goal":"revenue","value":12.5}"#
        );
        let exposure = serde_json::to_string(&event(0)).unwrap();
        assert!(!exposure.contains("goal") && !exposure.contains("value"));
    }

    #[test]
    fn lines_reach_the_disk_within_a_second_under_steady_traffic() {
        let dir = tempfile::tempdir().unwrap();
        let config = ExportConfig {
            dir: dir.path().to_path_buf(),
            max_file_size: 1 << 30,
            keep_files: 0,
        };
        let exporter =
            Exporter::start(&config, prometheus::IntCounter::new("d", "d").unwrap()).unwrap();
        // An event every 50 ms never leaves the writer a quiet second.
        let started = std::time::Instant::now();
        let mut sent = 0;
        while started.elapsed() < Duration::from_millis(2_500) {
            exporter.send(event(sent));
            sent += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        let on_disk = std::fs::read_to_string(dir.path().join(CURRENT))
            .unwrap()
            .lines()
            .count();
        assert!(
            on_disk >= 20,
            "{on_disk} of {sent} lines written while the traffic went on"
        );
        exporter.stop();
    }

    #[test]
    fn files_rotate_by_size_and_the_oldest_are_pruned_and_nothing_else_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let config = ExportConfig {
            dir: dir.path().join("export"),
            max_file_size: 1024,
            keep_files: 0,
        };
        let exporter =
            Exporter::start(&config, prometheus::IntCounter::new("d", "d").unwrap()).unwrap();
        for i in 0..200 {
            exporter.send(event(i));
        }
        exporter.stop();
        let rotated = rotated_files(&config.dir).unwrap();
        assert!(rotated.len() >= 10, "{} rotated files", rotated.len());
        let mut lines = 0;
        for (_, path) in &rotated {
            let text = std::fs::read_to_string(path).unwrap();
            assert!(
                text.len() as u64 >= 1024 && text.len() < 1024 + 200,
                "rotated past the size"
            );
            lines += text.lines().count();
        }
        lines += std::fs::read_to_string(config.dir.join(CURRENT))
            .unwrap()
            .lines()
            .count();
        assert_eq!(lines, 200, "every event in exactly one file");

        prune(&config.dir, 3).unwrap();
        let kept = rotated_files(&config.dir).unwrap();
        assert_eq!(kept.len(), 3);
        assert_eq!(
            kept,
            rotated[rotated.len() - 3..].to_vec(),
            "the newest are kept"
        );
    }
}
