//! The statements a [`PostgresStore`](super::PostgresStore) runs outside its write batches: reads
//! (snapshot, log, log cursor), leases, members and login attempts. Each is a function of the worker's
//! connection, run as a [`Job`](super::worker::Job); each returns the database error separately
//! (`Err`: the worker reconnects and retries, or fails the call) from the store's answer (`Ok(answer)`,
//! which may itself be a [`StoreError::Fenced`]).
//!
//! Lease rows are never deleted (a release clears the member), so a session's fence only grows.

use std::sync::Arc;
use std::time::Duration;

use postgres::Client;
use warden_engine::{
    Fence, HeldLease, LeaseOutcome, LoadOutcome, LoginAttempt, MemberName, SessionEvent, SessionId, StoreError, UnixMs,
};

use super::super::record::RecordCodec;
use super::queue::{Shared, fenced};

/// A database answer that is itself a result of the store.
pub(super) type Answer<T> = Result<Result<T, StoreError>, postgres::Error>;

/// Login attempts kept per session (the newest).
pub const LOGIN_ATTEMPTS_KEPT: i64 = 64;

fn ms(at: UnixMs) -> i64 {
    at.as_millis()
}

fn expiry(now: UnixMs, ttl: Duration) -> i64 {
    now.saturating_add(ttl).as_millis()
}

/// The current fence of a session (NONE when no lease was ever granted).
fn current_fence(client: &mut Client, session: &SessionId) -> Result<Fence, postgres::Error> {
    let row = client.query_opt("SELECT fence FROM leases WHERE session = $1", &[&session.as_str()])?;
    Ok(row.map_or(Fence::NONE, |row| Fence(row.get::<_, i64>(0) as u64)))
}

/// Reads a snapshot; a record that does not open is quarantined (moved to `quarantine`, the row kept
/// with its reason, so later loads say `Quarantined` until the next save).
pub(super) fn load(client: &mut Client, codec: &RecordCodec, session: &SessionId) -> Answer<LoadOutcome> {
    let Some(row) =
        client.query_opt("SELECT record, quarantined FROM snapshots WHERE session = $1", &[&session.as_str()])?
    else {
        return Ok(Ok(LoadOutcome::Missing));
    };
    let record: Option<Vec<u8>> = row.get(0);
    let Some(record) = record else {
        let reason: Option<String> = row.get(1);
        let reason = reason.unwrap_or_else(|| "the snapshot was quarantined".to_owned());
        return Ok(Ok(LoadOutcome::Quarantined { reason, login_attempts: None }));
    };
    match codec.open_snapshot(session, &record) {
        Ok(snapshot) => Ok(Ok(LoadOutcome::Found(Box::new(snapshot)))),
        Err(error) => {
            let reason = error.to_string();
            let login_attempts = codec.salvage_login_attempts(session, &record);
            let mut tx = client.transaction()?;
            let moved = tx.execute(
                "UPDATE snapshots SET record = NULL, quarantined = $3 WHERE session = $1 AND record = $2",
                &[&session.as_str(), &record, &reason],
            )?;
            if moved == 1 {
                tx.execute(
                    "INSERT INTO quarantine (session, kind, seq, reason, record) VALUES ($1, 'snapshot', NULL, $2, $3)",
                    &[&session.as_str(), &reason, &record],
                )?;
            }
            tx.commit()?;
            tracing::warn!(session = %session, %reason, "store record quarantined; the session starts fresh");
            Ok(Ok(LoadOutcome::Quarantined { reason, login_attempts }))
        }
    }
}

/// The newest `limit` entries of a session's log, oldest first, with the steps still queued in `shared`
/// (read your writes). A step that does not open is quarantined and skipped.
pub(super) fn read_log(
    client: &mut Client,
    codec: &RecordCodec,
    shared: &Arc<Shared>,
    session: &SessionId,
    limit: usize,
) -> Answer<Vec<SessionEvent>> {
    // Every step holds at least one entry: `limit` steps are enough.
    let rows = client.query(
        "SELECT seq, record FROM log WHERE session = $1 ORDER BY seq DESC LIMIT $2",
        &[&session.as_str(), &(limit.min(i64::MAX as usize) as i64)],
    )?;
    let mut steps: std::collections::BTreeMap<u64, Vec<SessionEvent>> = std::collections::BTreeMap::new();
    let mut unreadable = Vec::new();
    for row in rows {
        let seq = row.get::<_, i64>(0) as u64;
        let record: Vec<u8> = row.get(1);
        match codec.open_log_step(session, seq, &record) {
            Ok(step) => {
                steps.insert(seq, step);
            }
            Err(error) => unreadable.push((seq, record, error.to_string())),
        }
    }
    for (seq, record, reason) in unreadable {
        let mut tx = client.transaction()?;
        let moved = tx.execute(
            "DELETE FROM log WHERE session = $1 AND seq = $2 AND record = $3",
            &[&session.as_str(), &(seq as i64), &record],
        )?;
        if moved == 1 {
            tx.execute(
                "INSERT INTO quarantine (session, kind, seq, reason, record) VALUES ($1, 'log', $2, $3, $4)",
                &[&session.as_str(), &(seq as i64), &reason, &record],
            )?;
        }
        tx.commit()?;
        tracing::warn!(session = %session, seq, %reason, "store log record quarantined");
    }
    {
        // The worker is the only committer and runs this between batches: the overlay holds exactly what
        // is not in the database.
        let state = shared.lock();
        if let Some(overlay) = state.overlay.get(session) {
            if overlay.removed.is_some() {
                steps.clear();
            }
            for (_, seq, events) in &overlay.steps {
                steps.insert(*seq, events.clone());
            }
        }
    }
    let mut events: Vec<SessionEvent> = steps.into_values().flatten().collect();
    let skip = events.len().saturating_sub(limit);
    events.drain(..skip);
    Ok(Ok(events))
}

/// The highest log sequence number of a session, if it has a log.
pub(super) fn max_seq(client: &mut Client, session: &SessionId) -> Answer<Option<u64>> {
    let row = client.query_one("SELECT max(seq) FROM log WHERE session = $1", &[&session.as_str()])?;
    Ok(Ok(row.get::<_, Option<i64>>(0).map(|seq| seq as u64)))
}

pub(super) fn acquire(
    client: &mut Client,
    session: &SessionId,
    member: &MemberName,
    ttl: Duration,
    now: UnixMs,
) -> Answer<LeaseOutcome> {
    let expires_at = expiry(now, ttl);
    // A lease released between the two statements is free again: try once more, then report it held.
    for _ in 0..3 {
        let granted = client.query_opt(
            "INSERT INTO leases AS l (session, member, fence, expires_at_ms) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (session) DO UPDATE SET member = EXCLUDED.member, fence = l.fence + 1, \
                 expires_at_ms = EXCLUDED.expires_at_ms \
             WHERE l.member IS NULL OR l.expires_at_ms <= $4 OR l.member = EXCLUDED.member \
             RETURNING fence",
            &[&session.as_str(), &member.as_str(), &expires_at, &ms(now)],
        )?;
        if let Some(row) = granted {
            let fence = Fence(row.get::<_, i64>(0) as u64);
            return Ok(Ok(LeaseOutcome::Granted(HeldLease {
                session: session.clone(),
                fence,
                expires_at: UnixMs::from_millis(expires_at),
            })));
        }
        let held = client.query_opt(
            "SELECT member, fence, expires_at_ms FROM leases WHERE session = $1 AND member IS NOT NULL",
            &[&session.as_str()],
        )?;
        if let Some(row) = held {
            let holder: String = row.get(0);
            let Ok(holder) = MemberName::new(holder) else {
                return Ok(Err(StoreError::Io {
                    path: String::new(),
                    detail: format!("the lease of session {session} names an invalid member"),
                }));
            };
            return Ok(Ok(LeaseOutcome::Held {
                holder,
                fence: Fence(row.get::<_, i64>(1) as u64),
                expires_at: UnixMs::from_millis(row.get(2)),
            }));
        }
    }
    Ok(Err(StoreError::WriteFailed { detail: format!("the lease of session {session} kept changing hands") }))
}

pub(super) fn renew(
    client: &mut Client,
    session: &SessionId,
    member: &MemberName,
    fence: Fence,
    ttl: Duration,
    now: UnixMs,
) -> Answer<UnixMs> {
    let renewed = client.query_opt(
        "UPDATE leases SET expires_at_ms = $4 \
         WHERE session = $1 AND member = $2 AND fence = $3 AND expires_at_ms > $5 RETURNING expires_at_ms",
        &[&session.as_str(), &member.as_str(), &(fence.0 as i64), &expiry(now, ttl), &ms(now)],
    )?;
    match renewed {
        Some(row) => Ok(Ok(UnixMs::from_millis(row.get(0)))),
        None => Ok(Err(fenced(session, fence, current_fence(client, session)?))),
    }
}

/// One statement for all of a member's unexpired leases, locked in session order (as write batches
/// lock them), so the two never deadlock.
pub(super) fn renew_all(
    client: &mut Client,
    member: &MemberName,
    ttl: Duration,
    now: UnixMs,
) -> Answer<Vec<HeldLease>> {
    let expires_at = expiry(now, ttl);
    let rows = client.query(
        "UPDATE leases AS l SET expires_at_ms = $2 \
         FROM (SELECT session FROM leases WHERE member = $1 AND expires_at_ms > $3 ORDER BY session FOR UPDATE) AS mine \
         WHERE l.session = mine.session AND l.member = $1 AND l.expires_at_ms > $3 \
         RETURNING l.session, l.fence",
        &[&member.as_str(), &expires_at, &ms(now)],
    )?;
    let mut held = Vec::with_capacity(rows.len());
    for row in rows {
        let session: String = row.get(0);
        if let Ok(session) = SessionId::new(session) {
            held.push(HeldLease {
                session,
                fence: Fence(row.get::<_, i64>(1) as u64),
                expires_at: UnixMs::from_millis(expires_at),
            });
        }
    }
    held.sort_by(|a, b| a.session.cmp(&b.session));
    Ok(Ok(held))
}

pub(super) fn release(client: &mut Client, session: &SessionId, member: &MemberName, fence: Fence) -> Answer<()> {
    client.execute(
        "UPDATE leases SET member = NULL, expires_at_ms = 0 WHERE session = $1 AND member = $2 AND fence = $3",
        &[&session.as_str(), &member.as_str(), &(fence.0 as i64)],
    )?;
    Ok(Ok(()))
}

pub(super) fn heartbeat(client: &mut Client, member: &MemberName, ttl: Duration, now: UnixMs) -> Answer<()> {
    client.execute(
        "INSERT INTO members (name, expires_at_ms, heartbeat_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET expires_at_ms = EXCLUDED.expires_at_ms, heartbeat_ms = EXCLUDED.heartbeat_ms",
        &[&member.as_str(), &expiry(now, ttl), &ms(now)],
    )?;
    Ok(Ok(()))
}

pub(super) fn leave(client: &mut Client, member: &MemberName) -> Answer<()> {
    client.execute("DELETE FROM members WHERE name = $1", &[&member.as_str()])?;
    Ok(Ok(()))
}

pub(super) fn live_members(client: &mut Client, now: UnixMs) -> Answer<Vec<MemberName>> {
    let rows = client.query("SELECT name FROM members WHERE expires_at_ms > $1 ORDER BY name", &[&ms(now)])?;
    Ok(Ok(rows.into_iter().filter_map(|row| MemberName::new(row.get::<_, String>(0)).ok()).collect()))
}

/// Records an attempt only while `fence` holds an unexpired lease at `at` (the lease row locked for the
/// statement), and trims the history to [`LOGIN_ATTEMPTS_KEPT`].
pub(super) fn record_attempt(client: &mut Client, session: &SessionId, fence: Fence, at: UnixMs) -> Answer<()> {
    let mut tx = client.transaction()?;
    let held = tx.query_opt(
        "SELECT 1 FROM leases WHERE session = $1 AND fence = $2 AND member IS NOT NULL AND expires_at_ms > $3 FOR SHARE",
        &[&session.as_str(), &(fence.0 as i64), &ms(at)],
    )?;
    if held.is_none() {
        drop(tx);
        return Ok(Err(fenced(session, fence, current_fence(client, session)?)));
    }
    tx.execute(
        "INSERT INTO login_attempts (session, at_ms, fence) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        &[&session.as_str(), &ms(at), &(fence.0 as i64)],
    )?;
    tx.execute(
        "DELETE FROM login_attempts WHERE session = $1 AND (at_ms, fence) < ( \
             SELECT at_ms, fence FROM login_attempts WHERE session = $1 \
             ORDER BY at_ms DESC, fence DESC OFFSET $2 LIMIT 1)",
        &[&session.as_str(), &(LOGIN_ATTEMPTS_KEPT - 1)],
    )?;
    tx.commit()?;
    Ok(Ok(()))
}

pub(super) fn login_attempts(client: &mut Client, session: &SessionId, limit: usize) -> Answer<Vec<LoginAttempt>> {
    let rows = client.query(
        "SELECT at_ms, fence FROM login_attempts WHERE session = $1 ORDER BY at_ms DESC, fence DESC LIMIT $2",
        &[&session.as_str(), &(limit.min(i64::MAX as usize) as i64)],
    )?;
    let mut attempts: Vec<LoginAttempt> = rows
        .into_iter()
        .map(|row| LoginAttempt { at: UnixMs::from_millis(row.get(0)), fence: Fence(row.get::<_, i64>(1) as u64) })
        .collect();
    attempts.reverse();
    Ok(Ok(attempts))
}
