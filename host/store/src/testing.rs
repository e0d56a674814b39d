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
