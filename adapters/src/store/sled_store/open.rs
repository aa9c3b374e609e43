//! Opening the files: the lock file, sled itself, and moving an unreadable database aside.
//!
//! `take_lock` takes `warden.lock` (flock) before sled opens, so a second opener gets
//! [`StoreError::Locked`] at once; `DirLock` releases it only after sled has let go of its own `db` file.
//! `open_sled` turns sled's errors — and its panics on damaged files, caught without printing a
//! backtrace (see `install_quiet_panic_hook`) — into [`StoreError`]s that say what is wrong in plain
//! words (sled's own texts for damaged files blame old sled versions or ask for a bug report; they are
//! not passed on) and whether the files are unreadable (`SledOpenError::unreadable`), which is what
//! `rebuild_if_unreadable` acts on. `move_aside` renames an unreadable database directory to
//! `<path>.unreadable.<UTC time>` (or `.<n>` without a clock), never over an existing one.

use std::cell::Cell;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use warden_engine::{StoreError, UnixMs};

use super::{SledOptions, WallClock, io_error};

/// The name of the lock file in the database directory.
pub const LOCK_FILE_NAME: &str = "warden.lock";

/// How long dropping a store waits, at most, for sled's background work to let go of its files.
const SLED_RELEASE_WAIT_MS: u64 = 2_000;
/// How often it looks.
const SLED_RELEASE_POLL_MS: u64 = 5;

/// Copies of an unreadable database kept beside it, at most, before moving aside gives up.
const MAX_ASIDE: u32 = 1_000;

/// The store's lock file, held (flock) while the store is open.
///
/// Dropped last, it first waits (at most [`SLED_RELEASE_WAIT_MS`]) until sled has let go of its own lock
/// on its `db` file: sled's thread pool can hold the file for a moment after the `Db` is dropped, and a
/// store reopened at once would otherwise find it locked.
pub(super) struct DirLock {
    _file: File,
    /// sled's `db` file, once this store's sled has opened it (a failed open has nothing to wait for).
    pub(super) sled_file: Option<PathBuf>,
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let Some(sled_file) = &self.sled_file else { return };
        let Ok(db_file) = File::open(sled_file) else { return };
        for _ in 0..SLED_RELEASE_WAIT_MS / SLED_RELEASE_POLL_MS {
            match db_file.try_lock() {
                Ok(()) => return, // closing `db_file` releases it again
                Err(TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(SLED_RELEASE_POLL_MS)),
                Err(TryLockError::Error(_)) => return,
            }
        }
        tracing::warn!(
            file = %sled_file.display(),
            waited_ms = SLED_RELEASE_WAIT_MS,
            "sled still holds its lock after the store was closed"
        );
    }
}

/// Takes the store's lock file, or says who holds it.
pub(super) fn take_lock(path: &Path) -> Result<DirLock, StoreError> {
    let lock_path = path.join(LOCK_FILE_NAME);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| io_error(path, format!("cannot open the lock file {}: {e}", lock_path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock { _file: file, sled_file: None }),
        Err(TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: path.display().to_string(),
            detail: format!(
                "{} is held by another process (or another store in this process) that has the database open",
                lock_path.display()
            ),
        }),
        Err(TryLockError::Error(e)) => {
            Err(io_error(path, format!("cannot lock the lock file {}: {e}", lock_path.display())))
        }
    }
}

/// A failed sled open, and whether it looks like unreadable files (as opposed to a lock or an IO error).
pub(super) struct SledOpenError {
    pub(super) error: StoreError,
    pub(super) unreadable: bool,
}

/// What to do about a database sled cannot read, when the store does not do it itself.
const REBUILD_ADVICE: &str = "the store holds only rebuildable state: move the directory aside to start a fresh \
                              one (sessions log in again), or leave `rebuild_if_unreadable` on (the default) to \
                              have that done at open";

thread_local! {
    /// Set while this thread is inside sled's open: a panic then is caught and reported as an error.
    static INSIDE_SLED_OPEN: Cell<bool> = const { Cell::new(false) };
}

/// Installs, once per process, a panic hook that stays silent for panics raised while this thread is
/// inside sled's open (they are caught and become an error naming the damage) and hands every other
/// panic to the hook that was installed before.
fn install_quiet_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(chain_quiet_panic_hook);
}

/// Puts the quiet hook in front of the current one.
fn chain_quiet_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !INSIDE_SLED_OPEN.with(Cell::get) {
            previous(info);
        }
    }));
}

/// Marks this thread as inside sled's open until dropped (also when a panic unwinds through it).
struct InsideSledOpen;

impl InsideSledOpen {
    fn enter() -> InsideSledOpen {
        INSIDE_SLED_OPEN.with(|flag| flag.set(true));
        InsideSledOpen
    }
}

impl Drop for InsideSledOpen {
    fn drop(&mut self) {
        INSIDE_SLED_OPEN.with(|flag| flag.set(false));
    }
}

/// Opens sled, turning its errors (and panics on damaged files) into clear [`StoreError`]s.
pub(super) fn open_sled(path: &Path, options: &SledOptions) -> Result<sled::Db, SledOpenError> {
    install_quiet_panic_hook();
    let config = sled::Config::new()
        .path(path)
        .cache_capacity(options.cache_capacity_bytes)
        .flush_every_ms(options.background_flush_ms);
    let advice = if options.rebuild_if_unreadable { "" } else { REBUILD_ADVICE };
    let unreadable = |what: String| SledOpenError {
        error: io_error(path, if advice.is_empty() { what } else { format!("{what}; {advice}") }),
        unreadable: true,
    };
    let opened = {
        let _inside = InsideSledOpen::enter();
        catch_unwind(AssertUnwindSafe(|| config.open()))
    };
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(sled::Error::Io(e))) if e.to_string().contains("could not acquire lock") => Err(SledOpenError {
            error: StoreError::Locked { path: path.display().to_string(), detail: format!("sled: {e}") },
            unreadable: false,
        }),
        Ok(Err(sled::Error::Io(e))) if matches!(e.kind(), ErrorKind::UnexpectedEof | ErrorKind::InvalidData) => {
            Err(unreadable(format!("the database files are damaged: reading them failed ({e})")))
        }
        Ok(Err(sled::Error::Io(e))) => Err(SledOpenError {
            error: io_error(path, format!("cannot open the database files: {e}")),
            unreadable: false,
        }),
        Ok(Err(sled::Error::Corruption { at, .. })) => {
            let at = at.map(|at| format!(" at {at}")).unwrap_or_default();
            Err(unreadable(format!("the database files are damaged: unreadable data{at}")))
        }
        Ok(Err(other)) => {
            // sled's texts here blame old sled versions or ask for a bug report; for damaged files
            // both mislead, so they go to the debug log only.
            tracing::debug!(path = %path.display(), sled_error = %other, "sled could not open the database");
            Err(unreadable("the database files are damaged or incomplete: they cannot be read".to_owned()))
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::debug!(path = %path.display(), panic = %message, "sled panicked while opening the database");
            Err(unreadable("the database files are damaged: reading them failed part-way".to_owned()))
        }
    }
}

/// `at` as a file-name-safe UTC time, `20260309T033000Z`.
fn utc_stamp(at: UnixMs) -> Option<String> {
    at.to_timestamp().map(|ts| ts.strftime("%Y%m%dT%H%M%SZ").to_string())
}

/// Renames the database directory to `<path>.unreadable.<UTC time>` (from `clock`; `.2`, `.3`… added if
/// taken), or to the first free `<path>.unreadable.<n>` without a clock.
pub(super) fn move_aside(path: &Path, clock: Option<&WallClock>) -> Result<PathBuf, StoreError> {
    let stamp = clock.and_then(|clock| utc_stamp(clock()));
    let candidate = |n: u32| {
        let mut name = path.as_os_str().to_os_string();
        match (&stamp, n) {
            (Some(stamp), 1) => name.push(format!(".unreadable.{stamp}")),
            (Some(stamp), n) => name.push(format!(".unreadable.{stamp}.{n}")),
            (None, n) => name.push(format!(".unreadable.{n}")),
        }
        PathBuf::from(name)
    };
    for n in 1..=MAX_ASIDE {
        let aside = candidate(n);
        if fs::symlink_metadata(&aside).is_ok() {
            continue;
        }
        return fs::rename(path, &aside)
            .map(|()| aside)
            .map_err(|e| io_error(path, format!("cannot move the unreadable database aside: {e}")));
    }
    Err(io_error(path, format!("cannot move the unreadable database aside: {MAX_ASIDE} earlier copies are in the way")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn stamps_are_utc_and_file_name_safe() {
        assert_eq!(utc_stamp(UnixMs::from_millis(1_773_027_000_000)).as_deref(), Some("20260309T033000Z"));
        assert_eq!(utc_stamp(UnixMs::EPOCH).as_deref(), Some("19700101T000000Z"));
    }

    #[test]
    fn moving_aside_never_overwrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store");
        let clock: WallClock = Arc::new(|| UnixMs::from_millis(1_773_027_000_000));
        let mut moved = Vec::new();
        for _ in 0..2 {
            fs::create_dir(&path).expect("mkdir");
            moved.push(move_aside(&path, Some(&clock)).expect("moved"));
        }
        fs::create_dir(&path).expect("mkdir");
        moved.push(move_aside(&path, None).expect("moved"));
        let names: Vec<String> =
            moved.iter().map(|p| p.file_name().expect("name").to_string_lossy().into_owned()).collect();
        assert_eq!(
            names,
            ["store.unreadable.20260309T033000Z", "store.unreadable.20260309T033000Z.2", "store.unreadable.1"]
        );
        assert!(moved.iter().all(|p| p.is_dir()));
    }

    #[test]
    fn a_panic_inside_sled_open_is_silent_and_others_reach_the_previous_hook() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static SEEN: AtomicUsize = AtomicUsize::new(0);
        // The hook chain is process-wide: put a counting hook first, ours on top of it, and the
        // original back at the end.
        let original = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {
            SEEN.fetch_add(1, Ordering::SeqCst);
        }));
        chain_quiet_panic_hook();
        let before = SEEN.load(Ordering::SeqCst);
        let caught = {
            let _inside = InsideSledOpen::enter();
            catch_unwind(|| panic!("damaged page"))
        };
        assert!(caught.is_err());
        assert!(!INSIDE_SLED_OPEN.with(Cell::get), "the flag is cleared after the panic");
        assert_eq!(SEEN.load(Ordering::SeqCst), before, "no report for a panic inside sled's open");
        assert!(catch_unwind(|| panic!("elsewhere")).is_err());
        let after = SEEN.load(Ordering::SeqCst);
        std::panic::set_hook(original);
        assert!(after > before, "other panics reach the previous hook");
    }
}
