//! The known-sessions file: which sessions have had a snapshot saved, kept outside sled's files.
//!
//! sled 0.34 opens some damaged `db` files without a word and drops the records it cannot read. A
//! session whose snapshot silently vanished would then load as `Missing` and start with an empty login
//! history — free to spend the policy's whole login allowance at once, right after a previous process may
//! have spent it. `warden.sessions` (one session id per line, in the database directory) remembers which
//! sessions have had a snapshot, so the store can tell "never saved" (`Missing`) from "saved and lost"
//! (`Quarantined`, one login at once and the policy's rate from then on).
//!
//! The file changes only when a session saves its first snapshot or is removed, and every change
//! replaces it whole: the list goes to `.warden.sessions.tmp`, which is renamed over the file, so a
//! crash leaves the old list or the new one. The list is written before the snapshot, and made durable
//! (file and directory fsync-ed, `sync`) before the store flushes: a snapshot the engine asked to be
//! flushed is never on disk without its session in the list. (Only a snapshot that sled's background
//! flush wrote first could be, until the next flush — and its loss would then also need damage.)
//! Syncing at flush time rather than on every change keeps a new session's first save cheap (the two
//! fsyncs cost about 11 ms on a virtual disk). A missing or unreadable file is rebuilt from the snapshots
//! that sled still has.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::path::Path;

use warden_engine::SessionId;

/// The file's name in the database directory.
pub const KNOWN_SESSIONS_FILE_NAME: &str = "warden.sessions";

/// Its temporary name while it is rewritten.
const TEMP_FILE_NAME: &str = ".warden.sessions.tmp";

/// The largest file read: 64-byte ids and a newline, for a quarter of a million sessions.
const MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Reads the list in `dir`: `Ok(None)` when there is no file, an error (for a warning; the caller
/// rebuilds the list) when it cannot be read. Lines that are not session ids are skipped.
pub(super) fn read(dir: &Path) -> Result<Option<HashSet<SessionId>>, String> {
    let path = dir.join(KNOWN_SESSIONS_FILE_NAME);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
    };
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(format!("{} is larger than {MAX_BYTES} bytes", path.display()));
    }
    let text = String::from_utf8_lossy(&bytes);
    Ok(Some(text.lines().filter_map(|line| SessionId::new(line.trim()).ok()).collect()))
}

/// Replaces the list in `dir` (temporary file, rename); with `durable`, also fsyncs the file before the
/// rename and the directory after it.
pub(super) fn write(dir: &Path, sessions: &HashSet<SessionId>, durable: bool) -> std::io::Result<()> {
    let mut ids: Vec<&str> = sessions.iter().map(SessionId::as_str).collect();
    ids.sort_unstable();
    let mut text = String::with_capacity(ids.iter().map(|id| id.len() + 1).sum());
    for id in ids {
        text.push_str(id);
        text.push('\n');
    }
    let temp = dir.join(TEMP_FILE_NAME);
    let mut file = File::create(&temp)?;
    file.write_all(text.as_bytes())?;
    if durable {
        file.sync_all()?;
    }
    fs::rename(&temp, dir.join(KNOWN_SESSIONS_FILE_NAME))?;
    if durable { File::open(dir)?.sync_all() } else { Ok(()) }
}

/// Makes the list in `dir`, as last written, durable: fsyncs the file and the directory.
pub(super) fn sync(dir: &Path) -> std::io::Result<()> {
    File::open(dir.join(KNOWN_SESSIONS_FILE_NAME))?.sync_all()?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_round_trips_and_skips_junk() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read(dir.path()), Ok(None));
        let sessions: HashSet<SessionId> =
            ["b", "a", "kotak-main"].into_iter().map(|s| SessionId::new(s).expect("id")).collect();
        write(dir.path(), &sessions, false).expect("write");
        sync(dir.path()).expect("sync");
        assert_eq!(read(dir.path()), Ok(Some(sessions.clone())));
        assert!(!dir.path().join(TEMP_FILE_NAME).exists());
        fs::write(dir.path().join(KNOWN_SESSIONS_FILE_NAME), b"a\n\xff\xfe junk line\n\nb\n").expect("write");
        let read_back = read(dir.path()).expect("read").expect("list");
        assert_eq!(read_back.len(), 2, "{read_back:?}");
    }
}
