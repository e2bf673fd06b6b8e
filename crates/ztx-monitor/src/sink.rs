//! The OCSF events as JSON lines in a rotating file, for a SIEM's file collector:
//! `ocsf.jsonl` is written, and once it would grow past `max_bytes` it becomes
//! `ocsf.jsonl.1` (the one before becomes `.2`, and so on; past `keep` the oldest is
//! removed). The file is derived from the audit log: on start the writer finds the last
//! event it holds and the server resumes from the entry after it, so a crash loses no
//! event and a half-written last line is cut off, never followed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ocsf::Event;

/// The file's name in its directory.
pub const FILE_NAME: &str = "ocsf.jsonl";
/// How much is gathered before it is written to the file.
const BUFFER: usize = 256 * 1024;
/// How far from the end a file is read for its last event.
const TAIL_BYTES: u64 = 256 * 1024;

/// The `[events]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkConfig {
    /// Write the file at all (the admin endpoint serves the events either way).
    pub enabled: bool,
    /// The directory of the files (default: `events` in the data directory).
    pub dir: Option<PathBuf>,
    pub max_bytes: u64,
    /// Rotated files kept besides the current one.
    pub keep: u32,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: None,
            max_bytes: 64 * 1024 * 1024,
            keep: 10,
        }
    }
}

impl SinkConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_bytes < 4096 {
            return Err("events.max_bytes must be at least 4096".into());
        }
        if self.keep == 0 || self.keep > 1000 {
            return Err("events.keep must be between 1 and 1000".into());
        }
        Ok(())
    }
}

/// The current file, appended to.
#[derive(Debug)]
pub struct RotatingFile {
    dir: PathBuf,
    file: File,
    /// Lines appended and not yet written to the file. Each line is written straight
    /// into it: one copy of the event's bytes before the kernel's, not two.
    pending: Vec<u8>,
    /// The file's size with the pending lines.
    size: u64,
    max_bytes: u64,
    keep: u32,
}

fn open_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        // Events name customers and their addresses: for the operator's eyes only.
        options.mode(0o600);
    }
    options.open(path)
}

impl RotatingFile {
    /// Opens (or creates) the file in `dir`. Returns it with the index of the last event
    /// it holds, if any; a half-written last line is cut off first.
    pub fn open(dir: &Path, max_bytes: u64, keep: u32) -> io::Result<(RotatingFile, Option<u64>)> {
        fs::create_dir_all(dir)?;
        let current = dir.join(FILE_NAME);
        let mut last = None;
        if current.exists() {
            last = repair_and_find_last(&current)?;
        }
        if last.is_none() {
            let previous = rotated(dir, 1);
            if previous.exists() {
                last = repair_and_find_last(&previous)?;
            }
        }
        let file = open_append(&current)?;
        let size = file.metadata()?.len();
        Ok((
            RotatingFile {
                dir: dir.to_path_buf(),
                file,
                pending: Vec::with_capacity(BUFFER),
                size,
                max_bytes,
                keep,
            },
            last,
        ))
    }

    /// Appends one event as one line, rotating first if it would not fit.
    pub fn append(&mut self, event: &impl Serialize) -> io::Result<()> {
        self.append_with(|line| serde_json::to_writer(line, event).map_err(io::Error::other))
    }

    /// Appends an OCSF event as one line, written without serde ([`Event::write_json`]).
    pub fn append_event(&mut self, event: &Event<'_>) -> io::Result<()> {
        self.append_with(|line| {
            event.write_json(line);
            Ok(())
        })
    }

    /// Appends the line `write` puts in the buffer it is given (without the line's
    /// end), rotating first if it would not fit.
    pub fn append_with(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>,
    ) -> io::Result<()> {
        let start = self.pending.len();
        if let Err(e) = write(&mut self.pending) {
            self.pending.truncate(start);
            return Err(e);
        }
        self.pending.push(b'\n');
        let len = u64::try_from(self.pending.len() - start).unwrap_or(u64::MAX);
        if self.size > 0 && self.size.saturating_add(len) > self.max_bytes {
            // The line starts the next file; what is before it ends this one.
            // Should rotating fail, the line is not appended.
            let line = self.pending.split_off(start);
            self.rotate()?;
            self.pending.extend_from_slice(&line);
        }
        self.size = self.size.saturating_add(len);
        if self.pending.len() >= BUFFER {
            self.write_pending()?;
        }
        Ok(())
    }

    /// Hands what was appended to the operating system.
    pub fn flush(&mut self) -> io::Result<()> {
        self.write_pending()
    }

    /// Writes the pending lines to the file; what a failed write left unwritten stays
    /// pending (and nothing written is written again).
    fn write_pending(&mut self) -> io::Result<()> {
        let mut written = 0;
        let result = loop {
            let Some(rest) = self.pending.get(written..).filter(|r| !r.is_empty()) else {
                break Ok(());
            };
            match self.file.write(rest) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.pending.drain(..written);
        result
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.write_pending()?;
        let oldest = rotated(&self.dir, self.keep);
        if oldest.exists() {
            fs::remove_file(&oldest)?;
        }
        for n in (1..self.keep).rev() {
            let from = rotated(&self.dir, n);
            if from.exists() {
                fs::rename(&from, rotated(&self.dir, n + 1))?;
            }
        }
        let current = self.dir.join(FILE_NAME);
        fs::rename(&current, rotated(&self.dir, 1))?;
        self.file = open_append(&current)?;
        self.size = 0;
        Ok(())
    }
}

impl Drop for RotatingFile {
    fn drop(&mut self) {
        // As a buffered writer would: what can still be written is.
        let _ = self.write_pending();
    }
}

fn rotated(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{FILE_NAME}.{n}"))
}

/// Cuts a half-written last line off `path`, then reads the index of its last event.
fn repair_and_find_last(path: &Path) -> io::Result<Option<u64>> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let complete = tail.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    if complete < tail.len() {
        let keep = start.saturating_add(u64::try_from(complete).unwrap_or(u64::MAX));
        file.set_len(keep)?;
        tail.truncate(complete);
    }
    let last_line = tail
        .split(|&b| b == b'\n')
        .rev()
        .find(|line| !line.is_empty());
    Ok(last_line
        .and_then(|line| serde_json::from_slice::<Value>(line).ok())
        .and_then(|event| event.get("metadata")?.get("sequence")?.as_u64()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(i: u64) -> Value {
        json!({ "class_uid": 6003, "metadata": { "sequence": i }, "pad": "x".repeat(100) })
    }

    fn lines(path: &Path) -> Vec<u64> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["metadata"]["sequence"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn rotates_past_the_size_and_keeps_only_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sink, last) = RotatingFile::open(dir.path(), 4096, 2).unwrap();
        assert_eq!(last, None);
        for i in 0..200 {
            sink.append(&event(i)).unwrap();
        }
        sink.flush().unwrap();
        let current = lines(&dir.path().join(FILE_NAME));
        let one = lines(&rotated(dir.path(), 1));
        let two = lines(&rotated(dir.path(), 2));
        assert!(
            !rotated(dir.path(), 3).exists(),
            "only two rotated files are kept"
        );
        assert_eq!(current.last(), Some(&199));
        // The files hold consecutive events, the newest in the current one.
        assert_eq!(one.last().map(|l| l + 1), current.first().copied());
        assert_eq!(two.last().map(|l| l + 1), one.first().copied());
        for f in [FILE_NAME.to_owned(), format!("{FILE_NAME}.1")] {
            assert!(fs::metadata(dir.path().join(f)).unwrap().len() <= 4096);
        }
    }

    #[test]
    fn reopening_finds_the_last_event_and_cuts_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sink, _) = RotatingFile::open(dir.path(), 1 << 20, 3).unwrap();
        for i in 0..5 {
            sink.append(&event(i)).unwrap();
        }
        sink.flush().unwrap();
        drop(sink);
        // A crash in the middle of the sixth line.
        let path = dir.path().join(FILE_NAME);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"class_uid\":6003,\"metadata\":{\"seq")
            .unwrap();
        drop(f);
        let (mut sink, last) = RotatingFile::open(dir.path(), 1 << 20, 3).unwrap();
        assert_eq!(last, Some(4));
        sink.append(&event(5)).unwrap();
        sink.flush().unwrap();
        assert_eq!(lines(&path), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn just_after_a_rotation_the_last_event_is_in_the_rotated_file() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sink, _) = RotatingFile::open(dir.path(), 4096, 3).unwrap();
        for i in 0..30 {
            sink.append(&event(i)).unwrap();
        }
        sink.rotate().unwrap();
        drop(sink);
        let (_, last) = RotatingFile::open(dir.path(), 4096, 3).unwrap();
        assert_eq!(last, Some(29));
    }

    #[test]
    fn a_line_that_fails_to_be_written_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sink, _) = RotatingFile::open(dir.path(), 1 << 20, 3).unwrap();
        sink.append(&event(0)).unwrap();
        let refused = sink.append_with(|line| {
            line.extend_from_slice(b"{\"class_uid\":");
            Err(io::Error::other("cannot write this event"))
        });
        assert!(refused.is_err());
        sink.append(&event(1)).unwrap();
        sink.flush().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert_eq!(lines(&path), vec![0, 1]);
        assert_eq!(
            sink.size,
            fs::metadata(&path).unwrap().len(),
            "the size counted is the file's"
        );
    }

    #[test]
    fn what_is_appended_reaches_the_file_when_flushed_or_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let (mut sink, _) = RotatingFile::open(dir.path(), 1 << 20, 3).unwrap();
        sink.append(&event(0)).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            0,
            "gathered, not written"
        );
        sink.flush().unwrap();
        assert_eq!(lines(&path), vec![0]);
        sink.append(&event(1)).unwrap();
        drop(sink);
        assert_eq!(lines(&path), vec![0, 1]);
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_for_the_operator_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let (mut sink, _) = RotatingFile::open(dir.path(), 4096, 3).unwrap();
        sink.append(&event(0)).unwrap();
        sink.flush().unwrap();
        let mode = fs::metadata(dir.path().join(FILE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0);
    }
}
