//! The tables of a [`PostgresStore`](super::PostgresStore), as embedded migrations applied at open.
//!
//! [`MIGRATIONS`] lists the SQL of each schema version; [`migrate`] creates the store's PostgreSQL schema
//! (namespace) if needed and applies, in one transaction under an advisory lock (so members opening at
//! once do not race), every migration newer than the version recorded in `schema_version`. A database
//! with a version newer than this build knows is refused. [`check_key`] keeps a key check record in
//! `meta`, as the sled store does, so a store opened with another key is refused before it touches a
//! record.

use postgres::Client;
use warden_engine::StoreError;

use super::super::record::RecordCodec;

/// The schema versions, oldest first: `(version, SQL)`. A version once released is never edited; a
/// change is a new version.
pub const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE members (
        name          text PRIMARY KEY,
        expires_at_ms bigint NOT NULL,
        heartbeat_ms  bigint NOT NULL
    );
    CREATE TABLE leases (
        session       text PRIMARY KEY,
        member        text,
        fence         bigint NOT NULL,
        expires_at_ms bigint NOT NULL
    );
    CREATE INDEX leases_by_member ON leases (member, session);
    CREATE TABLE snapshots (
        session     text PRIMARY KEY,
        fence       bigint NOT NULL,
        record      bytea,
        quarantined text
    );
    CREATE TABLE log (
        session text   NOT NULL,
        seq     bigint NOT NULL,
        record  bytea  NOT NULL,
        PRIMARY KEY (session, seq)
    );
    CREATE TABLE login_attempts (
        session text   NOT NULL,
        at_ms   bigint NOT NULL,
        fence   bigint NOT NULL,
        PRIMARY KEY (session, at_ms, fence)
    );
    CREATE TABLE quarantine (
        id     bigserial PRIMARY KEY,
        session text  NOT NULL,
        kind   text   NOT NULL,
        seq    bigint,
        reason text   NOT NULL,
        record bytea  NOT NULL
    );
    CREATE TABLE meta (
        name  text PRIMARY KEY,
        value bytea NOT NULL
    );",
)];

/// The schema version this build writes.
pub fn current_version() -> i32 {
    MIGRATIONS.last().map_or(0, |(version, _)| *version)
}

/// Whether `name` is a schema name used as is (lower-case letters, digits and `_`, not starting with a
/// digit, at most 63 bytes): it is put into SQL text, so nothing else is allowed.
pub fn valid_schema_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The statement that makes a connection use the store's schema.
pub fn search_path_statement(schema: &str) -> String {
    debug_assert!(valid_schema_name(schema));
    format!("SET search_path TO {schema}")
}

/// Creates the schema if needed and applies the migrations newer than the database's version.
pub fn migrate(client: &mut Client, schema: &str, place: &str) -> Result<i32, StoreError> {
    let io = |what: &str, e: postgres::Error| StoreError::Io {
        path: place.to_owned(),
        detail: format!("{what}: {}", super::worker::describe(&e)),
    };
    let mut tx = client.transaction().map_err(|e| io("starting the migration", e))?;
    // One migrator at a time per schema (the lock ends with the transaction).
    tx.execute("SELECT pg_advisory_xact_lock(hashtext('warden-store:' || $1))", &[&schema])
        .map_err(|e| io("locking the migration", e))?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema}; SET LOCAL search_path TO {schema};
         CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());"
    ))
    .map_err(|e| io("creating the schema", e))?;
    let found: i32 = tx
        .query_one("SELECT COALESCE(max(version), 0) FROM schema_version", &[])
        .map_err(|e| io("reading the schema version", e))?
        .get(0);
    if found > current_version() {
        return Err(StoreError::Io {
            path: place.to_owned(),
            detail: format!(
                "schema `{schema}` is at version {found}, newer than this build's {}: run a newer warden",
                current_version()
            ),
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(version, _)| *version > found) {
        tx.batch_execute(sql).map_err(|e| io(&format!("applying migration {version}"), e))?;
        tx.execute("INSERT INTO schema_version (version) VALUES ($1)", &[version])
            .map_err(|e| io(&format!("recording migration {version}"), e))?;
    }
    tx.commit().map_err(|e| io("committing the migration", e))?;
    Ok(current_version().max(found))
}

/// Makes sure the store's records are sealed with this key: writes the key check on first use, and
/// refuses ([`StoreError::Key`]) a key that does not open the one there.
pub fn check_key(client: &mut Client, codec: &RecordCodec, place: &str) -> Result<(), StoreError> {
    let io = |e: postgres::Error| StoreError::Io {
        path: place.to_owned(),
        detail: format!("the key check: {}", super::worker::describe(&e)),
    };
    let sealed = codec.seal_key_check()?;
    client
        .execute("INSERT INTO meta (name, value) VALUES ('key_check', $1) ON CONFLICT (name) DO NOTHING", &[&sealed])
        .map_err(io)?;
    let stored: Vec<u8> = client.query_one("SELECT value FROM meta WHERE name = 'key_check'", &[]).map_err(io)?.get(0);
    if codec.opens_key_check(&stored) {
        Ok(())
    } else {
        Err(StoreError::Key {
            detail: format!(
                "the PostgreSQL store at {place} was created with another key: give the key it was created with \
                 (its records do not open with this one)"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(valid_schema_name("warden"));
        assert!(valid_schema_name("t_12_abc"));
        for bad in ["", "1abc", "Warden", "a-b", "a;drop", "a b", &"x".repeat(64)] {
            assert!(!valid_schema_name(bad), "{bad}");
        }
        assert_eq!(current_version(), 1);
    }
}
