//! The counts log in `<data_dir>/counts/`: how nothing counted is lost.
//!
//! - Once a second a flusher thread appends the totals that changed (one line per
//!   counter, see `counts::Record`) to `counts-<generation>.log` and fsyncs it. A
//!   `kill -9` or power loss therefore loses at most the last second; a graceful stop
//!   flushes once more after the last request has finished, and loses nothing.
//! - At start-up every log is read; a counter's value is the largest total any good
//!   record gives it (counters only grow within a run), so the order files are read in,
//!   or a generation left behind by a crash, cannot roll a count back. A line whose
//!   checksum does not match, or a torn last line, is reported (file and line) and
//!   skipped; once the compacted log is safely written the damaged file is kept as
//!   `*.corrupt` for inspection.
//! - Then, and whenever the log passes [`COMPACT_AT_BYTES`], the history is compacted
//!   into a new generation (each counter's thinned series) written atomically, and the
//!   older logs are removed.
//! - A failed append is cut back off the file, so the retry starts on a clean line.
//! - `counts/LOCK` is held (an exclusive advisory lock) for as long as the store is open:
//!   a second process on the same data directory is refused before it reads anything.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::util::time::unix_ms;

use crate::counting::book::{CountBook, Record};

/// How often changed totals are written and fsynced: the most a crash can lose.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// A log past this size is compacted (at about 100 bytes a line, ~160 000 lines).
pub const COMPACT_AT_BYTES: u64 = 16 * 1024 * 1024;

const PREFIX: &str = "counts-";
const SUFFIX: &str = ".log";

pub struct CountStore {
    dir: PathBuf,
    /// Holds the exclusive lock on `counts/LOCK` while the store is open.
    _lock: File,
    /// This data directory's identity (`counts/REPLICA`, made once): the counts belong
    /// to it wherever the process runs, whatever its address.
    replica: String,
    pub book: Arc<CountBook>,
    log: Mutex<Log>,
    compact_at: u64,
}

struct Log {
    file: File,
    path: PathBuf,
    generation: u64,
    bytes: u64,
    /// Size right after compaction: a log is compacted again only once it has doubled,
    /// so a book with a long history is not rewritten every second.
    compacted_bytes: u64,
}

/// What opening the store found.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub records: usize,
    /// `file:line: reason` for each line skipped.
    pub skipped: Vec<String>,
    /// Files with skipped lines, renamed to `*.corrupt`.
    pub set_aside: Vec<PathBuf>,
    pub elapsed: Duration,
}

impl CountStore {
    /// Read every log in `<data_dir>/counts/`, then compact them into a new generation.
    pub fn open(data_dir: &Path) -> std::io::Result<(CountStore, LoadReport)> {
        CountStore::open_compacting_at(data_dir, COMPACT_AT_BYTES)
    }

    /// As [`CountStore::open`], compacting past `compact_at` bytes (tests use a small one).
    pub fn open_compacting_at(
        data_dir: &Path,
        compact_at: u64,
    ) -> std::io::Result<(CountStore, LoadReport)> {
        let started = Instant::now();
        let dir = data_dir.join("counts");
        std::fs::create_dir_all(&dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => std::io::Error::other(format!(
                "{} is in use by another abproxy process (each replica needs its own data_dir)",
                dir.display()
            )),
            std::fs::TryLockError::Error(e) => e,
        })?;
        let replica = replica_id(&dir)?;
        let book = Arc::new(CountBook::default());
        let mut report = LoadReport::default();
        let mut generations = Vec::new();
        // Numbers of set-aside files too, so a new generation never reuses their name.
        let mut highest = 0;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.contains(".tmp-") {
                // A compaction that never reached its rename.
                let _ = std::fs::remove_file(entry.path());
            } else if let Some(generation) = generation_of(&name) {
                highest = highest.max(generation);
                generations.push((generation, entry.path()));
            } else if let Some(generation) = name.strip_suffix(".corrupt").and_then(generation_of) {
                highest = highest.max(generation);
            }
        }
        generations.sort();
        let mut damaged = Vec::new();
        for (_, path) in &generations {
            let skipped_before = report.skipped.len();
            report.records += read_log(path, &book, &mut report.skipped)?;
            if report.skipped.len() > skipped_before {
                damaged.push(path.clone());
            }
        }
        // The compacted log first: until it is durable, the old files stay as they are.
        let log = write_compacted(&dir, highest + 1, &book)?;
        for (_, path) in &generations {
            if damaged.contains(path) {
                let aside = path.with_extension("log.corrupt");
                std::fs::rename(path, &aside)?;
                report.set_aside.push(aside);
            } else {
                std::fs::remove_file(path)?;
            }
        }
        report.elapsed = started.elapsed();
        Ok((
            CountStore {
                dir,
                book,
                log: Mutex::new(log),
                compact_at,
                _lock: lock,
                replica,
            },
            report,
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The replica id of this data directory (16 hex digits).
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Append and fsync the totals that changed; compact when the log is large. Returns
    /// how many records were written. On an error nothing is marked written, so the
    /// next flush tries again with the then-current totals.
    pub fn flush(&self) -> std::io::Result<usize> {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let records = self.book.changes(unix_ms(SystemTime::now()));
        if records.is_empty() {
            return Ok(0);
        }
        let mut text = String::with_capacity(records.len() * 100);
        for record in &records {
            record.encode(&mut text);
        }
        if let Err(err) = log
            .file
            .write_all(text.as_bytes())
            .and_then(|()| log.file.sync_data())
        {
            // A partial line would make the retry's first line unreadable: cut it off.
            let _ = log.file.set_len(log.bytes);
            return Err(err);
        }
        log.bytes += text.len() as u64;
        self.book.mark_flushed(&records);
        if log.bytes > self.compact_at.max(2 * log.compacted_bytes) {
            let next = write_compacted(&self.dir, log.generation + 1, &self.book)?;
            let old = std::mem::replace(&mut *log, next);
            std::fs::remove_file(&old.path)?;
        }
        Ok(records.len())
    }

    /// Flush every [`FLUSH_INTERVAL`] on a thread of its own (fsync blocks; it must
    /// not hold up a request), until [`Flusher::stop`].
    pub fn start_flusher(self: &Arc<Self>) -> Flusher {
        let (stop, stopped) = mpsc::channel::<()>();
        let store = self.clone();
        let thread = std::thread::Builder::new()
            .name("abproxy-counts".into())
            .spawn(move || {
                let mut failing = false;
                loop {
                    let last = !matches!(
                        stopped.recv_timeout(FLUSH_INTERVAL),
                        Err(mpsc::RecvTimeoutError::Timeout)
                    );
                    match store.flush() {
                        Ok(_) if failing => {
                            tracing::info!("counts log writable again");
                            failing = false;
                        }
                        Ok(_) => {}
                        Err(err) if !failing || last => {
                            tracing::error!(
                                "cannot write the counts log in {}: {err}; counts are kept in memory and retried every second",
                                store.dir.display()
                            );
                            failing = true;
                        }
                        Err(_) => {}
                    }
                    if last {
                        return;
                    }
                }
            })
            .expect("cannot start the counts flusher thread");
        Flusher {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

/// The running flusher; stopping it flushes one last time.
pub struct Flusher {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    /// Flush what is left and wait for the thread.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Read `dir/REPLICA`, or create it with a new random id.
fn replica_id(dir: &Path) -> std::io::Result<String> {
    let path = dir.join("REPLICA");
    match std::fs::read_to_string(&path) {
        Ok(text)
            if text.trim().len() == 16 && text.trim().bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok(text.trim().to_string())
        }
        Ok(_) | Err(_) => {
            let id =
                crate::util::random::token(8).map_err(|e| std::io::Error::other(e.to_string()))?;
            crate::util::fsutil::write_atomically(
                &path,
                format!("{id}\n").as_bytes(),
                Some(0o644),
            )?;
            Ok(id)
        }
    }
}

fn generation_of(name: &str) -> Option<u64> {
    name.strip_prefix(PREFIX)?
        .strip_suffix(SUFFIX)?
        .parse()
        .ok()
}

fn log_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{generation:06}{SUFFIX}"))
}

/// Restore every good record of `path` into `book`; report the others.
fn read_log(path: &Path, book: &CountBook, skipped: &mut Vec<String>) -> std::io::Result<usize> {
    let bytes = std::fs::read(path)?;
    let mut records = 0;
    let mut rest = &bytes[..];
    let mut number = 0;
    while !rest.is_empty() {
        number += 1;
        let (line, complete) = match rest.iter().position(|&b| b == b'\n') {
            Some(end) => {
                let line = &rest[..end];
                rest = &rest[end + 1..];
                (line, true)
            }
            None => (std::mem::take(&mut rest), false),
        };
        let parsed = match std::str::from_utf8(line) {
            Ok(_) if !complete => Err("torn last line (no newline)".to_string()),
            Ok(text) => Record::parse(text).map_err(|e| e.to_string()),
            Err(_) => Err("not UTF-8".to_string()),
        };
        match parsed {
            Ok(record) => {
                book.restore(&record);
                records += 1;
            }
            Err(reason) => skipped.push(format!("{}:{number}: {reason}", path.display())),
        }
    }
    Ok(records)
}

/// Write the book's history as generation `generation`, atomically, and open it for
/// appending.
fn write_compacted(dir: &Path, generation: u64, book: &CountBook) -> std::io::Result<Log> {
    let mut text = String::new();
    for record in book.flushed_history() {
        record.encode(&mut text);
    }
    let path = log_path(dir, generation);
    crate::util::fsutil::write_atomically(&path, text.as_bytes(), Some(0o600))?;
    let file = OpenOptions::new().append(true).open(&path)?;
    Ok(Log {
        file,
        path,
        generation,
        bytes: text.len() as u64,
        compacted_bytes: text.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counting::book::{GoalKey, VariantKey};

    fn key(variant: &str) -> VariantKey {
        VariantKey {
            experiment: "moon_mars".into(),
            run: 1,
            period: None,
            variant: variant.into(),
        }
    }

    fn logs(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("counts"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name != "LOCK" && name != "REPLICA")
            .collect();
        names.sort();
        names
    }

    #[test]
    fn flushed_counts_survive_reopening_and_the_log_is_compacted() {
        let data = tempfile::tempdir().unwrap();
        {
            let (store, report) = CountStore::open(data.path()).unwrap();
            assert_eq!(report.records, 0);
            let mars = store.book.variant(key("Mars"));
            let click = store.book.goal(GoalKey {
                variant: key("Mars"),
                goal: "click".into(),
            });
            for _ in 0..7 {
                mars.assign();
                store.flush().unwrap();
            }
            click.convert(Some(4.0));
            store.flush().unwrap();
            mars.assign(); // never flushed: lost, as after a kill -9
        }
        assert_eq!(logs(data.path()), ["counts-000001.log"]);
        let (store, report) = CountStore::open(data.path()).unwrap();
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        assert_eq!(store.book.variant(key("Mars")).totals().assigned, 7);
        let run = store.book.run("moon_mars", 1, 0);
        assert_eq!(run.variants["Mars"].goals["click"].totals.value_sum, 4.0);
        assert_eq!(
            logs(data.path()),
            ["counts-000002.log"],
            "old generation removed"
        );
    }

    #[test]
    fn a_corrupt_line_and_a_torn_tail_are_reported_and_skipped_keeping_the_rest() {
        let data = tempfile::tempdir().unwrap();
        {
            let (store, _) = CountStore::open(data.path()).unwrap();
            let mars = store.book.variant(key("Mars"));
            let moon = store.book.variant(key("Moon"));
            for _ in 0..3 {
                mars.assign();
                moon.assign();
                store.flush().unwrap();
            }
        }
        let path = data.path().join("counts/counts-000001.log");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6);
        // Damage line 6 (Moon's last total, 3) and tear a record off the end.
        let mut damaged: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        damaged[5] = damaged[5].replacen(" 3 0 ", " 8 0 ", 1);
        let mut bytes = damaged.join("\n") + "\n";
        bytes.push_str(&lines[0][..20]);
        std::fs::write(&path, bytes).unwrap();

        let (store, report) = CountStore::open(data.path()).unwrap();
        assert_eq!(report.records, 5);
        assert_eq!(report.skipped.len(), 2, "{:?}", report.skipped);
        assert!(report.skipped[0].ends_with("counts-000001.log:6: checksum mismatch"));
        assert!(report.skipped[1].ends_with(":7: torn last line (no newline)"));
        assert_eq!(store.book.variant(key("Mars")).totals().assigned, 3);
        assert_eq!(
            store.book.variant(key("Moon")).totals().assigned,
            2,
            "the last good total of Moon"
        );
        assert_eq!(
            logs(data.path()),
            ["counts-000001.log.corrupt", "counts-000002.log"]
        );
        // The compacted log reads clean.
        drop(store);
        let (store, report) = CountStore::open(data.path()).unwrap();
        assert!(report.skipped.is_empty());
        assert_eq!(store.book.variant(key("Moon")).totals().assigned, 2);
    }

    #[test]
    fn an_older_generation_read_last_cannot_roll_a_count_back() {
        let data = tempfile::tempdir().unwrap();
        {
            let (store, _) = CountStore::open(data.path()).unwrap();
            let mars = store.book.variant(key("Mars"));
            mars.assign();
            store.flush().unwrap();
            // Generation 1 now says 1. Leave a copy of it as if a compaction had been
            // interrupted after writing a later generation with older totals.
            std::fs::copy(
                data.path().join("counts/counts-000001.log"),
                data.path().join("counts/counts-000009.log"),
            )
            .unwrap();
            mars.assign();
            mars.assign();
            store.flush().unwrap();
        }
        let (store, _) = CountStore::open(data.path()).unwrap();
        assert_eq!(store.book.variant(key("Mars")).totals().assigned, 3);
    }

    #[test]
    fn a_second_process_on_the_same_data_dir_is_refused_before_touching_it() {
        let data = tempfile::tempdir().unwrap();
        let (first, _) = CountStore::open(data.path()).unwrap();
        let before = logs(data.path());
        let err = CountStore::open(data.path()).err().expect("refused");
        assert!(
            err.to_string()
                .contains("in use by another abproxy process"),
            "{err}"
        );
        assert_eq!(logs(data.path()), before, "nothing compacted or removed");
        drop(first);
        CountStore::open(data.path()).expect("free again once the first is closed");
    }

    #[test]
    fn a_large_log_is_compacted_while_running() {
        let data = tempfile::tempdir().unwrap();
        let (store, _) = CountStore::open_compacting_at(data.path(), 64 * 1024).unwrap();
        let counters: Vec<_> = (0..50)
            .map(|i| store.book.variant(key(&format!("V{i}"))))
            .collect();
        let mut rounds = 0;
        while logs(data.path()) == ["counts-000001.log"] {
            counters.iter().for_each(|c| c.expose());
            store.flush().unwrap();
            rounds += 1;
            assert!(rounds < 1_000, "never compacted");
        }
        assert_eq!(logs(data.path()), ["counts-000002.log"]);
        let size = std::fs::metadata(data.path().join("counts/counts-000002.log"))
            .unwrap()
            .len();
        assert!(size < 64 * 1024, "compacted to {size} bytes");
        drop(store);
        let (store, _) = CountStore::open(data.path()).unwrap();
        assert_eq!(store.book.variant(key("V49")).totals().exposures, rounds);
    }
}
