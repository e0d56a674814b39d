//! Test support: ways to damage a journal on purpose, so tests can prove that tether
//! notices. Not for production use; kept here so that all SQL stays in this crate.

use sqlx::{Connection, SqliteConnection};

async fn connect(path: &str) -> SqliteConnection {
    SqliteConnection::connect(&format!("sqlite:{path}")).await.expect("test database opens")
}

/// Overwrites one event's payload without updating its hash (tampering).
pub async fn tamper_payload(path: &str, run_id: &str, seq: u64, payload: &str) {
    let mut c = connect(path).await;
    sqlx::query("UPDATE events SET payload = ? WHERE run_id = ? AND seq = ?")
        .bind(payload)
        .bind(run_id)
        .bind(seq as i64)
        .execute(&mut c)
        .await
        .expect("tamper");
}

/// Reads one event's payload.
pub async fn payload(path: &str, run_id: &str, seq: u64) -> String {
    let mut c = connect(path).await;
    sqlx::query_scalar("SELECT payload FROM events WHERE run_id = ? AND seq = ?")
        .bind(run_id)
        .bind(seq as i64)
        .fetch_one(&mut c)
        .await
        .expect("payload")
}

/// Creates a SQLite database that is not a tether journal.
pub async fn foreign_database(path: &str) {
    let mut c = SqliteConnection::connect(&format!("sqlite:{path}?mode=rwc")).await.expect("create");
    sqlx::query("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        .execute(&mut c)
        .await
        .expect("create table");
}

/// Marks a journal as migrated by a newer tether.
pub async fn pretend_newer_schema(path: &str) {
    let mut c = connect(path).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) \
         VALUES (9999, 'from the future', CURRENT_TIMESTAMP, 1, x'00', 0)",
    )
    .execute(&mut c)
    .await
    .expect("insert migration");
}

async fn exec(path: &str, sql: &'static str, binds: &[&str]) {
    let mut c = connect(path).await;
    let mut q = sqlx::query(sql);
    for b in binds {
        q = q.bind(*b);
    }
    q.execute(&mut c).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Deletes a run's last `n` events (a truncated tail), leaving its head anchor.
pub async fn delete_last_events(path: &str, run_id: &str, n: u64) {
    let n = n.to_string();
    exec(
        path,
        "DELETE FROM events WHERE run_id = ?1 AND seq > (SELECT MAX(seq) FROM events WHERE run_id = ?1) - ?2",
        &[run_id, &n],
    )
    .await;
}

/// Moves a run's last event to the end of another run.
pub async fn move_last_event(path: &str, from: &str, to: &str) {
    exec(
        path,
        "UPDATE events SET run_id = ?2, seq = (SELECT MAX(seq) + 1 FROM events WHERE run_id = ?2) \
         WHERE run_id = ?1 AND seq = (SELECT MAX(seq) FROM events WHERE run_id = ?1)",
        &[from, to],
    )
    .await;
}

/// Overwrites a run's status in the run index.
pub async fn set_index_status(path: &str, run_id: &str, status: &str) {
    exec(path, "UPDATE runs SET status = ?2 WHERE run_id = ?1", &[run_id, status]).await;
}

/// Deletes a run's row from the run index.
pub async fn delete_index_row(path: &str, run_id: &str) {
    exec(path, "DELETE FROM runs WHERE run_id = ?1", &[run_id]).await;
}

/// Leaves a journal as a first open killed right after sqlx created its migrations
/// table (and before migration 1 ran).
pub async fn cut_short_first_open(path: &str) {
    let mut c = SqliteConnection::connect(&format!("sqlite:{path}?mode=rwc")).await.expect("create");
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
         installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, \
         checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)",
    )
    .execute(&mut c)
    .await
    .expect("create the migrations table");
}

/// Counts the rows of `kind` in a run's journal.
pub async fn count_events(path: &str, run_id: &str, kind: &str) -> i64 {
    let mut c = connect(path).await;
    sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE run_id = ? AND kind = ?")
        .bind(run_id)
        .bind(kind)
        .fetch_one(&mut c)
        .await
        .expect("count")
}

/// Takes a journal back to before the run index left SQL triggers (migration 9): its
/// `run_components` gone, as a journal written by an older tether has none, so the next
/// open migrates it again and must find each run's components in its plan.
pub async fn before_run_components(path: &str) {
    let mut c = connect(path).await;
    let mut sql = String::from("DROP TABLE run_components; DELETE FROM _sqlx_migrations WHERE version = 9;");
    for name in
        ["runs_on_start", "runs_on_end", "runs_on_pause", "runs_on_resume", "runs_on_compensated", "runs_on_waiting"]
    {
        // Stand-ins for the triggers migration 9 drops.
        sql.push_str(&format!(" CREATE TRIGGER {name} AFTER INSERT ON events WHEN 0 BEGIN SELECT 1; END;"));
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut c).await.expect("rewind");
}

/// Counts the rows of `kind` in a run's journal, or `None` while the journal cannot be
/// read yet (being created or migrated by another process): for polling.
pub async fn try_count_events(path: &str, run_id: &str, kind: &str) -> Option<i64> {
    let mut c = SqliteConnection::connect(&format!("sqlite:{path}?mode=ro")).await.ok()?;
    sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE run_id = ? AND kind = ?")
        .bind(run_id)
        .bind(kind)
        .fetch_one(&mut c)
        .await
        .ok()
}

/// The URL of database `name` on the PostgreSQL server `server` (a URL naming any database).
pub fn postgres_database_url(server: &str, name: &str) -> String {
    let base = server.split('?').next().unwrap_or(server);
    let at = base.rfind('/').filter(|i| *i > "postgres://".len()).unwrap_or(base.len());
    format!("{}/{name}", &base[..at])
}

/// Drops database `name` on `server` if it exists and creates it empty.
pub async fn recreate_postgres_database(server: &str, name: &str) {
    let mut c = sqlx::PgConnection::connect(server).await.expect("the test PostgreSQL server answers");
    // Names are the tests' own (letters, digits, `_`); quoted all the same.
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
        .execute(&mut c)
        .await
        .expect("drop");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut c).await.expect("create");
}
