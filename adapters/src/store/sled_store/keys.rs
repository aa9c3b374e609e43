//! Which key opens the store: the key check, lost and changed keys, starting over, and key rotation.
//!
//! A store created by this build holds a **key check** in its `meta` tree: a known text sealed with the
//! store's key ([`RecordCodec::seal_key_check`]). At open, `settle_key` decides:
//!
//! - the key opens the check (or, for an older store without one, at least one of its records): go on;
//! - the store holds no records: go on with the key (a missing key file is created) and write the check;
//! - the key file is missing but the store holds records (**lost key**), or no record checked opens with
//!   the key given (**changed key**): refuse with a [`StoreError::Key`] that names the key source and the
//!   ways on — unless the options say [`previous_key`](super::SledOptions::previous_key) and that key
//!   opens the store (then **rotate**: re-seal everything under the new key), or
//!   [`start_over_if_key_lost`](super::SledOptions::start_over_if_key_lost) (then **start over**: move
//!   every record to the quarantine, kept, and begin again with the new key).
//!
//! A check that fails while records open is damage to the check, not a changed key: it is rewritten with
//! a warning. A single damaged record among good ones stays damage too (quarantined when it is read).
//!
//! **Rotation** is one sled transaction over every tree (snapshots, log, both quarantines and the key
//! check): after a crash, at any point, the store opens with exactly one of the two keys — the old one
//! until the transaction is durable, the new one after. The transaction holds the re-sealed copy of every
//! record in memory (about the size of the database's records).

use std::path::Path;

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::{IVec, Transactional};
use warden_engine::{SessionId, StoreError};

use super::{
    QuarantineEntry, SNAPSHOTS, SledOptions, Trees, WallClock, encode_quarantine_entry, io_error, parse_log_key,
    quarantine_key,
};
use crate::store::key::{KeyLookup, KeySource, create_key_file, load_or_create_key_file};
use crate::store::record::{RecordAddress, RecordCodec};

/// The key of the key check in the `meta` tree.
pub(super) const KEY_CHECK: &[u8] = b"key_check";

/// Records tried, at most, when looking for one that opens with a key (a store without a key check, or
/// with a damaged one). The search stops at the first that opens, so this bounds only the wrong-key case.
pub const KEY_PROBE_LIMIT: usize = 10_000;

/// Records moved to the quarantine per transaction when a store starts over.
const START_OVER_CHUNK: usize = 256;

/// What a key makes of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// It opens the key check, or a record; `check_damaged` when there is a check it does not open (its
    /// records do: the check is what is damaged).
    Opens { check_damaged: bool },
    /// There is nothing to tell by: no records (and no check, or a check it does not open).
    NoRecords { check_present: bool },
    /// The store has records and none of the `tried` opens with it (nor the key check, if `check`).
    DoesNotOpen { check: bool, tried: usize },
}

/// What [`settle_key`] decided.
pub(super) struct Settled {
    /// The codec of the key the store now uses.
    pub(super) codec: RecordCodec,
    /// Set when the store started over: why every session starts fresh.
    pub(super) started_over: Option<String>,
}

/// Decides which key the store uses (see the module documentation), rotating or starting over when the
/// options say so.
pub(super) fn settle_key(
    path: &Path,
    trees: &Trees,
    options: &SledOptions,
    lookup: KeyLookup,
) -> Result<Settled, StoreError> {
    let origin = lookup.origin();
    // The previous key is read only when the key does not open the store: once a rotation is done, a
    // previous key file left in the options may be gone.
    let previous = || -> Result<Previous, StoreError> {
        let Some(source) = &options.previous_key else { return Ok(Previous::NotGiven) };
        let (codec, origin) = previous_codec(path, source)?;
        Ok(match verify(path, trees, &codec)? {
            Verdict::Opens { .. } => Previous::Opens(codec, origin),
            _ => Previous::DoesNotOpen(origin),
        })
    };
    match lookup {
        KeyLookup::Found { key, .. } => {
            let codec = RecordCodec::new(&key);
            match verify(path, trees, &codec)? {
                Verdict::Opens { check_damaged } => {
                    if options.previous_key.is_some() {
                        tracing::info!(
                            path = %path.display(),
                            key = %origin,
                            "the store already opens with its key; the previous key is not needed any more"
                        );
                    }
                    if check_damaged {
                        tracing::warn!(path = %path.display(), "the store's key check is damaged (its records open); rewriting it");
                        write_key_check(path, trees, &codec)?;
                    } else {
                        write_key_check_if_missing(path, trees, &codec)?;
                    }
                    Ok(Settled { codec, started_over: None })
                }
                Verdict::NoRecords { check_present } => {
                    if check_present {
                        tracing::warn!(
                            path = %path.display(),
                            key = %origin,
                            "the store's key check does not open with this key, but the store holds no records; rewriting it"
                        );
                    }
                    write_key_check(path, trees, &codec)?;
                    Ok(Settled { codec, started_over: None })
                }
                Verdict::DoesNotOpen { check, tried } => match previous()? {
                    Previous::Opens(old, previous_origin) => {
                        rotate(path, trees, &old, &codec, &previous_origin, &origin)?;
                        Ok(Settled { codec, started_over: None })
                    }
                    _ if options.start_over_if_key_lost => {
                        let reason = start_over(path, trees, &codec, &origin, options.clock.as_ref())?;
                        Ok(Settled { codec, started_over: Some(reason) })
                    }
                    previous => Err(changed_key_error(path, &origin, check, tried, previous.origin())),
                },
            }
        }
        KeyLookup::MissingFile { path: key_file } => {
            if !has_records(path, trees)? {
                let key = load_or_create_key_file(&key_file)?;
                let codec = RecordCodec::new(&key);
                write_key_check(path, trees, &codec)?;
                return Ok(Settled { codec, started_over: None });
            }
            match previous()? {
                Previous::Opens(old, previous_origin) => {
                    let codec = RecordCodec::new(&create_key_file(&key_file)?);
                    rotate(path, trees, &old, &codec, &previous_origin, &origin)?;
                    Ok(Settled { codec, started_over: None })
                }
                _ if options.start_over_if_key_lost => {
                    let codec = RecordCodec::new(&create_key_file(&key_file)?);
                    let reason = start_over(path, trees, &codec, &origin, options.clock.as_ref())?;
                    Ok(Settled { codec, started_over: Some(reason) })
                }
                previous => Err(lost_key_error(path, &origin, previous.origin())),
            }
        }
    }
}

/// What the previous key ([`SledOptions::previous_key`]) makes of a store its key does not open.
enum Previous {
    /// None was given.
    NotGiven,
    /// It opens the store: rotate from it (its codec and where it came from).
    Opens(RecordCodec, String),
    /// It does not open the store either (where it came from).
    DoesNotOpen(String),
}

impl Previous {
    /// Where a previous key that does not open came from, for messages.
    fn origin(&self) -> Option<&str> {
        match self {
            Previous::DoesNotOpen(origin) => Some(origin),
            Previous::NotGiven | Previous::Opens(..) => None,
        }
    }
}

/// The previous key's codec and origin, for a rotation; its file must exist.
fn previous_codec(path: &Path, source: &KeySource) -> Result<(RecordCodec, String), StoreError> {
    match source.lookup(path)? {
        KeyLookup::Found { key, origin } => Ok((RecordCodec::new(&key), origin)),
        KeyLookup::MissingFile { path: file } => Err(StoreError::Key {
            detail: format!(
                "the previous key's file {} does not exist, and the store does not open with the key given: a \
                 rotation needs the key the store was sealed with",
                file.display()
            ),
        }),
    }
}

/// The ways on from a lost or changed key, for the error messages.
fn ways_on(previous: Option<&str>) -> String {
    let rotate = match previous {
        Some(previous) => format!(" (the previous key given, {previous}, does not open it either)"),
        None => String::new(),
    };
    format!(
        "use the key the records were sealed with{rotate}; to move the store to a new key, open with the new key \
         and `previous_key(<the old key>)`; to start over with this key instead — every session logs in again, \
         the old records are kept in the quarantine — open with `start_over_if_key_lost(true)`"
    )
}

fn lost_key_error(path: &Path, origin: &str, previous: Option<&str>) -> StoreError {
    StoreError::Key {
        detail: format!(
            "{origin} does not exist, but the store at {} holds records sealed with a key (the key file was \
             deleted or moved?). A new key cannot read them, so none was created: put the key file back (from a \
             backup) or give the key in WARDEN_KEY; or {}",
            path.display(),
            ways_on(previous)
        ),
    }
}

fn changed_key_error(path: &Path, origin: &str, check: bool, tried: usize, previous: Option<&str>) -> StoreError {
    let what = match (check, tried) {
        (true, 0) => "its key check does not open".to_owned(),
        (true, tried) => format!("neither its key check nor any of the {tried} records tried opens"),
        (false, tried) => format!("none of the {tried} records tried opens"),
    };
    StoreError::Key {
        detail: format!(
            "the store at {} was sealed with another key than {origin}: {what} with it (the key was changed or \
             replaced?). Nothing was changed; {}",
            path.display(),
            ways_on(previous)
        ),
    }
}

/// Whether the store holds snapshot or log records.
fn has_records(path: &Path, trees: &Trees) -> Result<bool, StoreError> {
    let first = |tree: &sled::Tree, name: &str| {
        tree.first().map(|item| item.is_some()).map_err(|e| io_error(path, format!("reading the `{name}` tree: {e}")))
    };
    Ok(first(&trees.snapshots, SNAPSHOTS)? || first(&trees.log, super::LOG)?)
}

/// What `codec`'s key makes of the store. Reads only.
fn verify(path: &Path, trees: &Trees, codec: &RecordCodec) -> Result<Verdict, StoreError> {
    let check = trees.meta.get(KEY_CHECK).map_err(|e| io_error(path, format!("reading the key check: {e}")))?;
    if check.as_ref().is_some_and(|check| codec.opens_key_check(check)) {
        return Ok(Verdict::Opens { check_damaged: false });
    }
    let (tried, opened) = probe(path, trees, codec)?;
    Ok(match (opened, tried) {
        (true, _) => Verdict::Opens { check_damaged: check.is_some() },
        (false, 0) => Verdict::NoRecords { check_present: check.is_some() },
        (false, tried) => Verdict::DoesNotOpen { check: check.is_some(), tried },
    })
}

/// Tries up to [`KEY_PROBE_LIMIT`] snapshot and log records with `codec`: how many were tried, and
/// whether one opened (the search stops there). Keys that are not a session's are not tried.
fn probe(path: &Path, trees: &Trees, codec: &RecordCodec) -> Result<(usize, bool), StoreError> {
    let mut tried = 0;
    for item in trees.snapshots.iter() {
        if tried >= KEY_PROBE_LIMIT {
            return Ok((tried, false));
        }
        let (key, record) = item.map_err(|e| io_error(path, format!("reading the snapshots: {e}")))?;
        let Some(session) = snapshot_session(&key) else { continue };
        tried += 1;
        if codec.authenticates(RecordAddress::Snapshot(&session), &record) {
            return Ok((tried, true));
        }
    }
    for item in trees.log.iter() {
        if tried >= KEY_PROBE_LIMIT {
            return Ok((tried, false));
        }
        let (key, record) = item.map_err(|e| io_error(path, format!("reading the log: {e}")))?;
        let Some((session, seq)) = parse_log_key(&key) else { continue };
        tried += 1;
        if codec.authenticates(RecordAddress::Log(&session, seq), &record) {
            return Ok((tried, true));
        }
    }
    Ok((tried, false))
}

/// The session a snapshot key names, if it names one.
fn snapshot_session(key: &[u8]) -> Option<SessionId> {
    SessionId::new(std::str::from_utf8(key).ok()?).ok()
}

fn write_key_check(path: &Path, trees: &Trees, codec: &RecordCodec) -> Result<(), StoreError> {
    trees
        .meta
        .insert(KEY_CHECK, codec.seal_key_check()?)
        .map_err(|e| io_error(path, format!("writing the key check: {e}")))?;
    trees.db.flush().map(|_| ()).map_err(|e| io_error(path, format!("flushing the key check: {e}")))
}

fn write_key_check_if_missing(path: &Path, trees: &Trees, codec: &RecordCodec) -> Result<(), StoreError> {
    match trees.meta.get(KEY_CHECK) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => write_key_check(path, trees, codec),
        Err(e) => Err(io_error(path, format!("reading the key check: {e}"))),
    }
}

/// The address a quarantined record had, if it can be told.
fn quarantined_address(entry: &QuarantineEntry) -> Option<(SessionId, Option<u64>)> {
    match entry.tree.as_str() {
        SNAPSHOTS => Some((snapshot_session(&entry.key)?, None)),
        super::LOG => parse_log_key(&entry.key).map(|(session, seq)| (session, Some(seq))),
        _ => None,
    }
}

/// Which tree a rotation write goes to.
#[derive(Clone, Copy)]
enum Target {
    Snapshots,
    Log,
    Quarantine,
    QuarantineLog,
    Meta,
}

/// Re-seals every record sealed with `old` under `new`, in one transaction (see the module
/// documentation). Records that do not open with `old` (damaged ones) are left as they are.
fn rotate(
    path: &Path,
    trees: &Trees,
    old: &RecordCodec,
    new: &RecordCodec,
    old_origin: &str,
    new_origin: &str,
) -> Result<(), StoreError> {
    let read_error = |what: &str, e: sled::Error| io_error(path, format!("rotating the key: reading the {what}: {e}"));
    let mut writes: Vec<(Target, IVec, Vec<u8>)> = Vec::new();
    let mut left = 0usize;
    for item in trees.snapshots.iter() {
        let (key, record) = item.map_err(|e| read_error("snapshots", e))?;
        let resealed =
            snapshot_session(&key).and_then(|session| new.reseal(old, RecordAddress::Snapshot(&session), &record).ok());
        match resealed {
            Some(value) => writes.push((Target::Snapshots, key, value)),
            None => left += 1,
        }
    }
    for item in trees.log.iter() {
        let (key, record) = item.map_err(|e| read_error("log", e))?;
        let resealed = parse_log_key(&key)
            .and_then(|(session, seq)| new.reseal(old, RecordAddress::Log(&session, seq), &record).ok());
        match resealed {
            Some(value) => writes.push((Target::Log, key, value)),
            None => left += 1,
        }
    }
    for (tree, target) in [(&trees.quarantine, Target::Quarantine), (&trees.quarantine_log, Target::QuarantineLog)] {
        for item in tree.iter() {
            let (key, value) = item.map_err(|e| read_error("quarantine", e))?;
            let Ok(mut entry) = rmp_serde::from_slice::<QuarantineEntry>(&value) else { continue };
            let Some((session, seq)) = quarantined_address(&entry) else { continue };
            let address = match seq {
                Some(seq) => RecordAddress::Log(&session, seq),
                None => RecordAddress::Snapshot(&session),
            };
            // A record quarantined because of the old key opens again under the new one.
            if let Ok(resealed) = new.reseal(old, address, &entry.record) {
                entry.record = resealed;
                writes.push((target, key, encode_quarantine_entry(&entry)?));
            }
        }
    }
    writes.push((Target::Meta, IVec::from(KEY_CHECK), new.seal_key_check()?));
    let count = writes.len() - 1;
    (&trees.snapshots, &trees.log, &trees.quarantine, &trees.quarantine_log, &trees.meta)
        .transaction(|(snapshots, log, quarantine, quarantine_log, meta)| {
            for (target, key, value) in &writes {
                let tree = match target {
                    Target::Snapshots => snapshots,
                    Target::Log => log,
                    Target::Quarantine => quarantine,
                    Target::QuarantineLog => quarantine_log,
                    Target::Meta => meta,
                };
                tree.insert(key, value.as_slice())?;
            }
            Ok::<(), ConflictableTransactionError<()>>(())
        })
        .map_err(|e: TransactionError<()>| io_error(path, format!("rotating the key: {e:?}")))?;
    trees.db.flush().map_err(|e| io_error(path, format!("rotating the key: flushing: {e}")))?;
    tracing::warn!(
        path = %path.display(),
        from = %old_origin,
        to = %new_origin,
        records = count,
        left_unreadable = left,
        "store key rotated: every record is now sealed with the new key; the previous key is no longer needed"
    );
    Ok(())
}

/// Moves every snapshot and log record to the quarantine (kept, still sealed with the key that was lost),
/// then writes the new key check. Returns the reason every session starts fresh.
fn start_over(
    path: &Path,
    trees: &Trees,
    codec: &RecordCodec,
    origin: &str,
    clock: Option<&WallClock>,
) -> Result<String, StoreError> {
    let reason = format!(
        "the store's records do not open with {origin} (the key was lost or changed) and the store started over \
         (`start_over_if_key_lost`): the old records are kept in the quarantine"
    );
    let at = clock.map(|clock| clock());
    let mut moved = 0usize;
    for (source, name, target) in
        [(&trees.snapshots, SNAPSHOTS, &trees.quarantine), (&trees.log, super::LOG, &trees.quarantine_log)]
    {
        loop {
            let chunk: Vec<(IVec, IVec)> = source
                .iter()
                .take(START_OVER_CHUNK)
                .collect::<Result<_, _>>()
                .map_err(|e| io_error(path, format!("starting over: reading the `{name}` tree: {e}")))?;
            if chunk.is_empty() {
                break;
            }
            let mut moves = Vec::with_capacity(chunk.len());
            for (key, record) in &chunk {
                let session = if name == SNAPSHOTS {
                    String::from_utf8_lossy(key).into_owned()
                } else {
                    parse_log_key(key).map_or_else(|| String::from_utf8_lossy(key).into_owned(), |(s, _)| s.to_string())
                };
                let id = trees.db.generate_id().map_err(|e| io_error(path, format!("starting over: {e}")))?;
                let entry = QuarantineEntry {
                    key: key.to_vec(),
                    tree: name.to_owned(),
                    reason: reason.clone(),
                    at,
                    record: record.to_vec(),
                    session: session.clone(),
                };
                moves.push((key.clone(), quarantine_key(id, &session), encode_quarantine_entry(&entry)?));
            }
            (source, target)
                .transaction(|(source, target)| {
                    for (key, quarantine_key, value) in &moves {
                        source.remove(key)?;
                        target.insert(quarantine_key.as_slice(), value.as_slice())?;
                    }
                    Ok::<(), ConflictableTransactionError<()>>(())
                })
                .map_err(|e: TransactionError<()>| io_error(path, format!("starting over: {e:?}")))?;
            moved += moves.len();
        }
    }
    write_key_check(path, trees, codec)?;
    tracing::warn!(
        path = %path.display(),
        key = %origin,
        records = moved,
        "store key lost or changed; started over as asked: every record moved to the quarantine, sessions log in again"
    );
    Ok(reason)
}
