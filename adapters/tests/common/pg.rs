//! Helpers for the PostgreSQL store tests: the database from `WARDEN_PG_URL` (started by
//! `tests/pg/start.sh`), one schema per test so tests run in parallel, and a raw connection to look at
//! the tables or break things.
//!
//! Without `WARDEN_PG_URL` a test prints why it skips and passes, unless `WARDEN_PG_TEST=required`, when
//! it fails.

use warden_adapters::{PostgresOptions, PostgresStore, StoreKey};

/// Where the tests' database is, and the schema of one test.
#[derive(Clone, Debug)]
pub struct Pg {
    pub url: String,
    pub schema: String,
}

/// The database for test `name` (its schema dropped first), or `None` to skip.
pub fn pg(name: &str) -> Option<Pg> {
    let Ok(url) = std::env::var("WARDEN_PG_URL") else {
        let required = std::env::var("WARDEN_PG_TEST").is_ok_and(|v| v == "required");
        assert!(!required, "WARDEN_PG_TEST=required but WARDEN_PG_URL is not set (eval \"$(tests/pg/start.sh)\")");
        eprintln!("{name}: WARDEN_PG_URL is not set (start a database with tests/pg/start.sh); skipped");
        return None;
    };
    let schema = format!("t_{name}");
    let pg = Pg { url, schema };
    pg.raw().batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", pg.schema)).expect("drop the test schema");
    Some(pg)
}

impl Pg {
    pub fn options(&self, key: [u8; 32]) -> PostgresOptions {
        PostgresOptions::new(self.url.clone(), StoreKey::from_bytes(key)).schema(self.schema.clone())
    }

    pub fn open(&self) -> PostgresStore {
        PostgresStore::open(self.options(super::KEY_A)).expect("open the PostgreSQL store")
    }

    /// A plain connection with the test's schema on its search path.
    pub fn raw(&self) -> postgres::Client {
        let mut client = postgres::Client::connect(&self.url, postgres::NoTls).expect("connect");
        client.batch_execute(&format!("SET search_path TO {}", self.schema)).expect("search path");
        client
    }

    /// One number from a query.
    pub fn count(&self, sql: &str) -> i64 {
        self.raw().query_one(sql, &[]).expect(sql).get(0)
    }
}
