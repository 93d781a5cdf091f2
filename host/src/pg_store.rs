//! The PostgreSQL store: the `store` capability on a database server, so
//! that host processes on many machines can share sessions.
//!
//! Tables (names prefixed `agent_session_`, keys compared bytewise through
//! the `"C"` collation so that descending key order is the same as in the
//! other stores):
//!
//! ```text
//! schema     the schema version of these tables (one row)
//! keys       (collection, key) → log length, summary   the index, one row per key
//! log        (collection, key, seq) → record            the histories
//! documents  (collection, key) → version, data          snapshots, settings
//! outbox     id → state, due time, claim, record        webhook deliveries
//! ```
//!
//! (The outbox is [`crate::PgOutbox`], made from a store by
//! [`PgStore::outbox`].)
//!
//! An append is one transaction: the key's row is locked (`FOR UPDATE`),
//! its length must equal the position the writer read (otherwise
//! `conflict`), the records go in under a primary key on the position, and
//! the length and summary are updated. Two writers creating the same key
//! meet at the primary key of `keys`: the second gets `conflict`. So an
//! append costs the same at any history length, and positions are
//! enforced by the database. Commits are durable (`synchronous_commit`)
//! except for documents written with `durable = false` (snapshots the
//! history can rebuild), which commit asynchronously.

use agent_session_core::{IndexEntry, Store, StoreError, Versioned};
use postgres::Transaction;
use postgres::config::SslMode;
use postgres::error::SqlState;
use postgres::types::Type;
use r2d2_postgres::PostgresConnectionManager;

// The names and sizes the filesystem store accepts, so data moves between
// them.
use crate::fs_store::{MAX_RECORD, name};

/// How connections are made: through rustls, used when the URL asks for
/// TLS (`sslmode=require`).
pub(crate) type Tls = tokio_postgres_rustls::MakeRustlsConnect;
type RawPool = r2d2::Pool<PostgresConnectionManager<Tls>>;

/// The connection pool, shared by a store and its outbox. Its connections
/// are never closed on an async thread (see [`drop_off_runtime`]), so a
/// store may be dropped anywhere.
pub(crate) struct Pool(Option<RawPool>);

impl Pool {
    pub(crate) fn get(
        &self,
    ) -> Result<r2d2::PooledConnection<PostgresConnectionManager<Tls>>, r2d2::Error> {
        match &self.0 {
            Some(pool) => pool.get(),
            // Taken only by `drop`.
            None => unreachable!("a pool is used after it was dropped"),
        }
    }
}

impl Clone for Pool {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take() {
            drop_off_runtime(pool);
        }
    }
}

/// Drop `value`, whose drop may close `postgres` clients, where that can
/// run: a client's drop blocks on a runtime of its own, which panics on a
/// thread of another runtime, so there it is dropped on a thread of its
/// own.
pub(crate) fn drop_off_runtime<T: Send + 'static>(value: T) {
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::spawn(move || drop(value));
    } else {
        drop(value);
    }
}

/// The schema this build reads and writes.
pub const SCHEMA_VERSION: i32 = 3;

/// What each schema version adds, in order; `MIGRATIONS[i]` brings a
/// database from version `i` to `i + 1`.
const MIGRATIONS: [&str; 3] = [
    r#"
    CREATE TABLE agent_session_keys (
        collection text COLLATE "C" NOT NULL,
        key        text COLLATE "C" NOT NULL,
        length     bigint NOT NULL,
        summary    bytea,
        PRIMARY KEY (collection, key)
    );
    CREATE TABLE agent_session_log (
        collection text COLLATE "C" NOT NULL,
        key        text COLLATE "C" NOT NULL,
        seq        bigint NOT NULL,
        record     bytea NOT NULL,
        PRIMARY KEY (collection, key, seq)
    );
    CREATE TABLE agent_session_documents (
        collection text COLLATE "C" NOT NULL,
        key        text COLLATE "C" NOT NULL,
        version    bigint NOT NULL,
        data       bytea NOT NULL,
        PRIMARY KEY (collection, key)
    );
"#,
    r#"
    CREATE TABLE agent_session_outbox (
        id              text COLLATE "C" PRIMARY KEY,
        raised          bigint NOT NULL,
        state           text NOT NULL,
        next_attempt_at bigint NOT NULL,
        claimed_by      text,
        claimed_until   timestamptz,
        record          text NOT NULL
    );
    CREATE INDEX agent_session_outbox_due
        ON agent_session_outbox (next_attempt_at) WHERE state = 'pending';
    CREATE INDEX agent_session_outbox_raised ON agent_session_outbox (raised, id);
"#,
    // A session's notifications are claimed in the order of its events.
    r#"
    ALTER TABLE agent_session_outbox
        ADD COLUMN session_id text COLLATE "C" NOT NULL DEFAULT '',
        ADD COLUMN seq bigint NOT NULL DEFAULT 0;
    UPDATE agent_session_outbox
        SET session_id = coalesce(record::jsonb #>> '{notification,session_id}', ''),
            seq = coalesce((record::jsonb #>> '{notification,seq}')::bigint, 0);
    CREATE INDEX agent_session_outbox_order
        ON agent_session_outbox (session_id, seq) WHERE state = 'pending';
"#,
];

/// The most connections one process opens (one stays idle, the rest as
/// concurrent calls need them).
const POOL_SIZE: u32 = 8;
/// How long a call waits for a connection of the pool.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A [`Store`] on a PostgreSQL database. Cheap to share across threads;
/// any number of processes may use the same database.
pub struct PgStore {
    pool: Pool,
    /// Kept for the outbox's connection of its own (see `PgOutbox`).
    config: postgres::Config,
    tls: Tls,
}

impl PgStore {
    /// Connect to `url` (`postgres://user[:password]@host[:port]/database`)
    /// and bring the schema up to [`SCHEMA_VERSION`] (creating it in an
    /// empty database). Refuses a database whose schema is newer than this
    /// build.
    ///
    /// The connection is plain unless the URL asks for TLS with
    /// `sslmode=require` (or libpq's `verify-ca`, `verify-full`), or names
    /// CAs to trust with libpq's `sslrootcert=<PEM file>`. With TLS the
    /// server's certificate and name are always verified, against those
    /// CAs and the Mozilla roots.
    pub fn connect(url: &str) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let (config, tls) = parse_url(url)
            .with_context(|| format!("{} is not a PostgreSQL connection URL", redact(url)))?;
        // One connection first, so that an unreachable server is reported
        // at once (the pool would retry until its timeout).
        let mut db = config
            .connect(tls.clone())
            .with_context(|| format!("connecting to {}", redact(url)))?;
        migrate(&mut db).with_context(|| format!("preparing the schema in {}", redact(url)))?;
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            // Connections are opened as calls need them, not all at once.
            .min_idle(Some(1))
            .connection_timeout(CONNECT_TIMEOUT)
            .build_unchecked(PostgresConnectionManager::new(config.clone(), tls.clone()));
        drop_off_runtime(db);
        Ok(Self {
            pool: Pool(Some(pool)),
            config,
            tls,
        })
    }

    /// The webhook outbox in the same database.
    pub fn outbox(&self) -> crate::PgOutbox {
        crate::PgOutbox::new(self.pool.clone(), self.config.clone(), self.tls.clone())
    }

    /// The schema version found, after bringing it up to date.
    pub fn schema_version(&self) -> anyhow::Result<i32> {
        Ok(schema_version(&mut *self.pool.get()?)?)
    }

    fn db(&self) -> Result<r2d2::PooledConnection<PostgresConnectionManager<Tls>>, StoreError> {
        self.pool
            .get()
            .map_err(|e| StoreError::Io(format!("no connection to PostgreSQL: {e}")))
    }
}

impl Store for PgStore {
    fn append(
        &self,
        c: &str,
        k: &str,
        seq: u64,
        records: &[Vec<u8>],
        summary: &[u8],
    ) -> Result<(), StoreError> {
        names(c, k)?;
        if let Some(r) = records.iter().find(|r| r.len() > MAX_RECORD) {
            return Err(StoreError::Full(format!(
                "a record of {} bytes for {c}/{k} is larger than {MAX_RECORD}",
                r.len()
            )));
        }
        let what = || format!("appending to {c}/{k}");
        let mut db = self.db()?;
        let mut tx = db.transaction().map_err(|e| db_error(&what(), e))?;
        let length = length_for_update(&mut tx, c, k).map_err(|e| db_error(&what(), e))?;
        match length {
            Some(n) if n != seq => {
                return Err(StoreError::Conflict(format!(
                    "{c}/{k} holds {n} records, not {seq}"
                )));
            }
            None if seq != 0 => {
                return Err(StoreError::Conflict(format!(
                    "{c}/{k} holds no records, not {seq}"
                )));
            }
            _ => {}
        }
        let end = signed(seq.saturating_add(records.len() as u64))?;
        // A new key's row is inserted, not upserted: of two writers
        // creating it at once, the second meets the primary key.
        let sql = if length.is_none() {
            "INSERT INTO agent_session_keys (collection, key, length, summary) VALUES ($1, $2, $3, $4)"
        } else {
            "UPDATE agent_session_keys SET length = $3, summary = $4 WHERE collection = $1 AND key = $2"
        };
        tx.execute_typed(
            sql,
            &[
                (&c, Type::TEXT),
                (&k, Type::TEXT),
                (&end, Type::INT8),
                (&nonempty(summary), Type::BYTEA),
            ],
        )
        .map_err(|e| db_error(&what(), e))?;
        // All records in one statement: a round trip is what an append
        // costs here.
        let positions = (seq..end as u64)
            .map(signed)
            .collect::<Result<Vec<i64>, _>>()?;
        tx.execute_typed(
            "INSERT INTO agent_session_log (collection, key, seq, record)
             SELECT $1, $2, p, r FROM unnest($3::bigint[], $4::bytea[]) AS t (p, r)",
            &[
                (&c, Type::TEXT),
                (&k, Type::TEXT),
                (&positions, Type::INT8_ARRAY),
                (&records, Type::BYTEA_ARRAY),
            ],
        )
        .map_err(|e| db_error(&what(), e))?;
        tx.commit().map_err(|e| db_error(&what(), e))
    }

    fn read(&self, c: &str, k: &str, from: u64, limit: u32) -> Result<Vec<Vec<u8>>, StoreError> {
        names(c, k)?;
        let rows = self
            .db()?
            .query_typed(
                "SELECT record FROM agent_session_log
                 WHERE collection = $1 AND key = $2 AND seq >= $3
                 ORDER BY seq LIMIT $4",
                &[
                    (&c, Type::TEXT),
                    (&k, Type::TEXT),
                    (&signed(from)?, Type::INT8),
                    (&i64::from(limit), Type::INT8),
                ],
            )
            .map_err(|e| db_error(&format!("reading {c}/{k}"), e))?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    fn scan(
        &self,
        c: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        name("collection", c)?;
        let rows = self
            .db()?
            .query_typed(
                "SELECT key, summary FROM agent_session_keys
                 WHERE collection = $1 AND summary IS NOT NULL AND ($2::text IS NULL OR key < $2)
                 ORDER BY key DESC LIMIT $3",
                &[
                    (&c, Type::TEXT),
                    (&after, Type::TEXT),
                    (&i64::from(limit), Type::INT8),
                ],
            )
            .map_err(|e| db_error(&format!("scanning the index of {c}"), e))?;
        Ok(rows
            .into_iter()
            .map(|r| IndexEntry {
                key: r.get(0),
                summary: r.get(1),
            })
            .collect())
    }

    fn reindex(&self, c: &str, k: &str, summary: &[u8]) -> Result<(), StoreError> {
        names(c, k)?;
        // Only a key with a history has an index entry: a summary written
        // for a session removed meanwhile must not bring it back. An empty
        // summary takes the key out of the index.
        let changed = self
            .db()?
            .execute(
                "UPDATE agent_session_keys SET summary = $3
                 WHERE collection = $1 AND key = $2 AND length > 0",
                &[&c, &k, &nonempty(summary)],
            )
            .map_err(|e| db_error(&format!("indexing {c}/{k}"), e))?;
        if changed == 0 && !summary.is_empty() {
            return Err(StoreError::Conflict(format!("{c}/{k} has no log to index")));
        }
        Ok(())
    }

    fn keys(&self, c: &str, after: Option<&str>, limit: u32) -> Result<Vec<String>, StoreError> {
        name("collection", c)?;
        let rows = self
            .db()?
            .query_typed(
                "SELECT key FROM agent_session_keys
                 WHERE collection = $1 AND length > 0 AND ($2::text IS NULL OR key < $2)
                 ORDER BY key DESC LIMIT $3",
                &[
                    (&c, Type::TEXT),
                    (&after, Type::TEXT),
                    (&i64::from(limit), Type::INT8),
                ],
            )
            .map_err(|e| db_error(&format!("listing {c}"), e))?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    fn get(&self, c: &str, k: &str) -> Result<Option<Versioned>, StoreError> {
        names(c, k)?;
        let row = self
            .db()?
            .query_typed_opt(
                "SELECT version, data FROM agent_session_documents WHERE collection = $1 AND key = $2",
                &[(&c, Type::TEXT), (&k, Type::TEXT)],
            )
            .map_err(|e| db_error(&format!("reading the document of {c}/{k}"), e))?;
        Ok(row.map(|r| Versioned {
            version: r.get::<_, i64>(0) as u64,
            data: r.get(1),
        }))
    }

    fn put(
        &self,
        c: &str,
        k: &str,
        data: &[u8],
        expected: u64,
        durable: bool,
    ) -> Result<u64, StoreError> {
        names(c, k)?;
        if data.len() > MAX_RECORD {
            return Err(StoreError::Full(format!(
                "a document of {} bytes for {c}/{k} is larger than {MAX_RECORD}",
                data.len()
            )));
        }
        let what = || format!("writing the document of {c}/{k}");
        let mut db = self.db()?;
        let mut tx = db.transaction().map_err(|e| db_error(&what(), e))?;
        if !durable {
            tx.batch_execute("SET LOCAL synchronous_commit = off")
                .map_err(|e| db_error(&what(), e))?;
            // A snapshot written late, after its key was removed, must not
            // bring the key back.
            if length_for_update(&mut tx, c, k)
                .map_err(|e| db_error(&what(), e))?
                .is_none()
            {
                return Err(StoreError::Conflict(format!(
                    "{c}/{k} does not exist; a non-durable document never creates it"
                )));
            }
        }
        let Some(version) = expected.checked_add(1) else {
            return Err(StoreError::Conflict(format!(
                "the document of {c}/{k} is not at version {expected}"
            )));
        };
        let version = signed(version)?;
        let changed = if expected == 0 {
            tx.execute(
                "INSERT INTO agent_session_documents (collection, key, version, data)
                 VALUES ($1, $2, 1, $3) ON CONFLICT DO NOTHING",
                &[&c, &k, &data],
            )
        } else {
            tx.execute(
                "UPDATE agent_session_documents SET version = $4, data = $3
                 WHERE collection = $1 AND key = $2 AND version = $5",
                &[&c, &k, &data, &version, &signed(expected)?],
            )
        }
        .map_err(|e| db_error(&what(), e))?;
        if changed != 1 {
            return Err(StoreError::Conflict(format!(
                "the document of {c}/{k} is not at version {expected}"
            )));
        }
        tx.commit().map_err(|e| db_error(&what(), e))?;
        Ok(expected + 1)
    }

    fn remove(&self, c: &str, k: &str, expected_length: u64) -> Result<(), StoreError> {
        names(c, k)?;
        let what = || format!("removing {c}/{k}");
        let mut db = self.db()?;
        let mut tx = db.transaction().map_err(|e| db_error(&what(), e))?;
        if let Some(n) = length_for_update(&mut tx, c, k).map_err(|e| db_error(&what(), e))?
            && n != expected_length
        {
            return Err(StoreError::Conflict(format!(
                "{c}/{k} holds {n} records, not {expected_length}"
            )));
        }
        for table in [
            "agent_session_log",
            "agent_session_documents",
            "agent_session_keys",
        ] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE collection = $1 AND key = $2"),
                &[&c, &k],
            )
            .map_err(|e| db_error(&what(), e))?;
        }
        tx.commit().map_err(|e| db_error(&what(), e))
    }
}

/// The schema version of the database, 0 before the first migration.
fn schema_version(db: &mut impl postgres::GenericClient) -> Result<i32, postgres::Error> {
    let exists: bool = db
        .query_one(
            "SELECT to_regclass('agent_session_schema') IS NOT NULL",
            &[],
        )?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(db
        .query_opt("SELECT version FROM agent_session_schema", &[])?
        .map_or(0, |r| r.get(0)))
}

/// Bring the schema up to [`SCHEMA_VERSION`]. A database that is up to
/// date is only read, so a role without the right to create tables (or a
/// standby) can connect.
fn migrate(db: &mut postgres::Client) -> anyhow::Result<()> {
    if schema_version(db)? == SCHEMA_VERSION {
        return Ok(());
    }
    // Serializes hosts that start at once on a new database: the second
    // waits here, then finds the tables made. The lock is taken before the
    // transaction, not in it: a transaction's catalog lookups may use a
    // view of the catalog from before the lock was granted, and would not
    // see the tables the first host just made.
    db.execute("SELECT pg_advisory_lock(7079001)", &[])?;
    let migrated = migrate_locked(db);
    let unlocked = db.execute("SELECT pg_advisory_unlock(7079001)", &[]);
    migrated?;
    unlocked?;
    Ok(())
}

fn migrate_locked(db: &mut postgres::Client) -> anyhow::Result<()> {
    let mut tx = db.transaction()?;
    // Read again under the lock: another host may have just migrated.
    let found = schema_version(&mut tx)?;
    if found > SCHEMA_VERSION {
        anyhow::bail!(
            "the database has agent-session schema version {found}; this build knows \
             versions up to {SCHEMA_VERSION}: use a newer agent-session"
        );
    }
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS agent_session_schema (
             id int PRIMARY KEY CHECK (id = 1),
             version int NOT NULL
         );
         INSERT INTO agent_session_schema VALUES (1, 0) ON CONFLICT DO NOTHING;",
    )?;
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tracing::info!(from, to = from + 1, "migrating the PostgreSQL schema");
        tx.batch_execute(sql)?;
    }
    tx.execute(
        "UPDATE agent_session_schema SET version = $1",
        &[&SCHEMA_VERSION],
    )?;
    tx.commit()?;
    Ok(())
}

/// The key's log length, its row locked until the transaction ends; `None`
/// for a key that has no row.
fn length_for_update(
    tx: &mut Transaction<'_>,
    c: &str,
    k: &str,
) -> Result<Option<u64>, postgres::Error> {
    Ok(tx
        .query_typed_opt(
            "SELECT length FROM agent_session_keys WHERE collection = $1 AND key = $2 FOR UPDATE",
            &[(&c, Type::TEXT), (&k, Type::TEXT)],
        )?
        .map(|r| r.get::<_, i64>(0) as u64))
}

fn nonempty(summary: &[u8]) -> Option<&[u8]> {
    (!summary.is_empty()).then_some(summary)
}

/// PostgreSQL has no unsigned integers; positions beyond `i64` are refused.
fn signed(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::InvalidKey(format!("position {n} is out of range")))
}

fn names(c: &str, k: &str) -> Result<(), StoreError> {
    name("collection", c)?;
    name("key", k)
}

pub(crate) fn db_error(what: &str, e: postgres::Error) -> StoreError {
    match e.code() {
        // Two writers created the same key (or position) at once.
        Some(&SqlState::UNIQUE_VIOLATION) | Some(&SqlState::T_R_SERIALIZATION_FAILURE) => {
            StoreError::Conflict(format!("{what}: another writer was first"))
        }
        Some(&SqlState::DISK_FULL) | Some(&SqlState::PROGRAM_LIMIT_EXCEEDED) => {
            StoreError::Full(format!("{what}: {e}"))
        }
        _ => StoreError::Io(format!("{what}: {e}")),
    }
}

/// The connection settings and TLS connector for `url`: the `postgres`
/// crate's URL options, plus libpq's `sslrootcert` and `sslmode` values
/// that it does not know.
fn parse_url(url: &str) -> anyhow::Result<(postgres::Config, Tls)> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;

    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        anyhow::bail!("the scheme must be postgres:// or postgresql://");
    }
    // The two options are taken out of the query as written (re-encoding
    // the rest would change it: the `postgres` crate does not read `+` as
    // a space), and the rest is the `postgres` crate's to parse.
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut root_cert = None;
    let mut mode = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = url::form_urlencoded::parse(pair.as_bytes())
            .next()
            .unwrap_or_default();
        match &*k {
            "sslrootcert" => root_cert = Some(v.into_owned()),
            "sslmode" => mode = Some(v.into_owned()),
            _ => kept.push(pair),
        }
    }
    let rest = match kept.is_empty() {
        true => base.to_owned(),
        false => format!("{base}?{}", kept.join("&")),
    };
    let mut config: postgres::Config = rest.parse()?;
    // Verification is not optional here: the modes that ask for it and
    // `require` mean the same.
    config.ssl_mode(match mode.as_deref() {
        None if root_cert.is_some() => SslMode::Require,
        None | Some("disable") => SslMode::Disable,
        Some("prefer") => SslMode::Prefer,
        Some("require" | "verify-ca" | "verify-full") => SslMode::Require,
        Some(other) => {
            anyhow::bail!("sslmode={other}: use disable, prefer, require, verify-ca or verify-full")
        }
    });
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = &root_cert {
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path)
            .map_err(|e| anyhow::anyhow!("sslrootcert {path}: {e}"))?
        {
            let cert = cert.map_err(|e| anyhow::anyhow!("sslrootcert {path}: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| anyhow::anyhow!("sslrootcert {path}: {e}"))?;
            added += 1;
        }
        if added == 0 {
            anyhow::bail!("sslrootcert {path} holds no certificate");
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((config, Tls::new(tls)))
}

/// `url` without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    // By hand: a URL with several hosts is not one the `url` crate reads.
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    match authority.rfind('@') {
        Some(at) => match authority[..at].split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{}", &rest[at + 1..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_keeps_its_options_as_written_and_takes_libpqs_tls_words() {
        let (c, _) =
            parse_url("postgres://a@h/db?options=-c%20statement_timeout%3D5s&sslmode=verify-full")
                .unwrap();
        assert_eq!(c.get_options(), Some("-c statement_timeout=5s"));
        assert_eq!(c.get_ssl_mode(), SslMode::Require);
        let (c, _) = parse_url("postgresql://a@h1:5432,h2:5433/db").unwrap();
        assert_eq!(c.get_hosts().len(), 2);
        assert_eq!(c.get_ssl_mode(), SslMode::Disable, "plain unless asked");
        assert!(parse_url("mysql://a@h/db").is_err());
        assert!(parse_url("postgres://a@h/db?sslmode=allow").is_err());
    }

    #[test]
    fn passwords_are_left_out_of_messages() {
        assert_eq!(
            redact("postgres://ann:s3cret@h1:5432,h2/db?sslmode=require"),
            "postgres://ann:***@h1:5432,h2/db?sslmode=require"
        );
        assert_eq!(redact("postgres://ann@h/db"), "postgres://ann@h/db");
        assert_eq!(redact("not a url"), "not a url");
    }
}
