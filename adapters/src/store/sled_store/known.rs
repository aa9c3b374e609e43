//! The known-sessions file: which sessions have had a snapshot saved, kept outside sled's files.
//!
//! sled 0.34 opens some damaged `db` files without a word and drops the records it cannot read. A
//! session whose snapshot silently vanished would then load as `Missing` and start with an empty login
//! history — free to spend the policy's whole login allowance at once, right after a previous process may
//! have spent it. `warden.sessions` (one session id per line, in the database directory) remembers which
//! sessions have had a snapshot, so the store can tell "never saved" (`Missing`) from "saved and lost"
//! (`Quarantined`, one login at once and the policy's rate from then on).
//!
//! A session's first record adds one line (its id and a newline) to the file: the lines of new sessions
//! are appended together and the file fsync-ed (`sync`) before every flush of the store, so that opening
//! a hundred thousand sessions costs a few appends, not as many rewrites of a growing list, and a
//! snapshot the engine asked to be flushed is never on disk without its session in the list. (Only a
//! snapshot that sled's background flush wrote first could be, until the next flush — and its loss would
//! then also need damage.) An append cut short by a crash leaves a last line without its
//! newline: it is ignored, and the file is rewritten whole at the next open. Rewrites (at open when the
//! list is not clean, and when a session is removed) replace the file whole: the list goes to
//! `.warden.sessions.tmp`, which is renamed over the file, so a crash leaves the old list or the new one;
//! the directory is then fsync-ed too at the next `sync`. A missing or unreadable file is rebuilt from the
//! snapshots that sled still has.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::Path;

use warden_engine::SessionId;

/// The file's name in the database directory.
pub const KNOWN_SESSIONS_FILE_NAME: &str = "warden.sessions";

/// Its temporary name while it is rewritten.
const TEMP_FILE_NAME: &str = ".warden.sessions.tmp";

/// The largest file read: 64-byte ids and a newline, for a quarter of a million sessions.
const MAX_BYTES: u64 = 16 * 1024 * 1024;

/// The list as read from the file.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Listed {
    /// The sessions listed.
    pub(super) sessions: HashSet<SessionId>,
    /// Whether the file holds exactly that, one id per line (no junk, no cut-off last line, no repeats):
    /// if not, it is rewritten before anything is appended to it.
    pub(super) clean: bool,
    /// Whether every complete line is a session id: the list can be trusted to name every session with
    /// records. (A cut-off last line is the append of a session whose first record was never written.)
    pub(super) complete: bool,
}

/// Reads the list in `dir`: `Ok(None)` when there is no file, an error (for a warning; the caller
/// rebuilds the list) when it cannot be read. Lines that are not session ids are skipped, and so is a
/// last line without its newline (an append cut short).
pub(super) fn read(dir: &Path) -> Result<Option<Listed>, String> {
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
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    let (mut lines, mut ids) = (0, 0);
    let mut sessions = HashSet::new();
    for line in complete.lines() {
        lines += 1;
        if let Ok(session) = SessionId::new(line.trim()) {
            ids += 1;
            sessions.insert(session);
        }
    }
    let clean = complete.len() == text.len() && sessions.len() == lines;
    Ok(Some(Listed { sessions, clean, complete: ids == lines }))
}

/// Opens the list in `dir` for appending (creating it if needed).
pub(super) fn open_for_append(dir: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(dir.join(KNOWN_SESSIONS_FILE_NAME))
}

/// Appends lines (session ids, each followed by a newline) to the list through `file` (from
/// [`open_for_append`]).
pub(super) fn append_lines(file: &mut File, lines: &[u8]) -> std::io::Result<()> {
    file.write_all(lines)
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

/// Makes the list in `dir`, as last written, durable: fsyncs the file, and the directory too when the
/// file was replaced (`renamed`) since it last was.
pub(super) fn sync(dir: &Path, renamed: bool) -> std::io::Result<()> {
    File::open(dir.join(KNOWN_SESSIONS_FILE_NAME))?.sync_data()?;
    if renamed { File::open(dir)?.sync_all() } else { Ok(()) }
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
        sync(dir.path(), true).expect("sync");
        assert_eq!(read(dir.path()), Ok(Some(Listed { sessions: sessions.clone(), clean: true, complete: true })));
        assert!(!dir.path().join(TEMP_FILE_NAME).exists());
        fs::write(dir.path().join(KNOWN_SESSIONS_FILE_NAME), b"a\n\xff\xfe junk line\n\nb\n").expect("write");
        let read_back = read(dir.path()).expect("read").expect("list");
        assert_eq!(read_back.sessions.len(), 2, "{read_back:?}");
        assert!(!read_back.clean && !read_back.complete, "junk lines make the file unclean and untrusted");
    }

    #[test]
    fn appends_add_lines_and_a_cut_off_last_line_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut file = open_for_append(dir.path()).expect("open");
        append_lines(&mut file, b"s1\n").expect("append");
        append_lines(&mut file, b"s2\n").expect("append");
        sync(dir.path(), false).expect("sync");
        let listed = read(dir.path()).expect("read").expect("list");
        assert_eq!((listed.sessions.len(), listed.clean), (2, true));
        // A crash in the middle of an append: `s3` without its newline (it could be the start of `s30`).
        file.write_all(b"s3").expect("partial append");
        let listed = read(dir.path()).expect("read").expect("list");
        assert_eq!((listed.sessions.len(), listed.clean), (2, false), "the cut-off line is not a session");
        assert!(listed.complete, "a cut-off last line does not make the list untrustworthy");
    }
}
