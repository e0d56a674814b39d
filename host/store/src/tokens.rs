//! The API token store's SQL. Writes run on the journal's writer connection, each alone;
//! reads use the reader pool.

use sqlx::{Row, SqliteConnection, SqlitePool};
use tether_types::access::TokenRecord;
use tether_types::store::StoreError;

use crate::error::db;

/// A token query: the columns [`record`] reads, then `$rest`.
macro_rules! select {
    ($rest:literal) => {
        concat!("SELECT name, identity, roles, created_us, expires_us, revoked_us FROM api_tokens ", $rest)
    };
}

/// A token change, written by the writer task in its own transaction.
pub(crate) enum TokenOp {
    Add(Box<TokenRecord>, String),
    Revoke(String, u64),
}

pub(crate) async fn apply(conn: &mut SqliteConnection, op: TokenOp) -> Result<Option<TokenRecord>, StoreError> {
    match op {
        TokenOp::Add(token, hash) => {
            let roles = serde_json::to_string(&token.roles).map_err(|e| StoreError::Database(e.to_string()))?;
            let result = sqlx::query(
                "INSERT INTO api_tokens (name, hash, identity, roles, created_us, expires_us) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(&token.name)
            .bind(&hash)
            .bind(&token.identity)
            .bind(roles)
            .bind(token.created_us as i64)
            .bind(token.expires_us.map(|e| e as i64))
            .execute(&mut *conn)
            .await
            .map_err(db)?;
            if result.rows_affected() == 0 {
                return Err(StoreError::TokenExists(token.name.clone()));
            }
            Ok(None)
        }
        TokenOp::Revoke(name, at_us) => {
            sqlx::query("UPDATE api_tokens SET revoked_us = COALESCE(revoked_us, ?) WHERE name = ?")
                .bind(at_us as i64)
                .bind(&name)
                .execute(&mut *conn)
                .await
                .map_err(db)?;
            let row = sqlx::query(select!("WHERE name = ?")).bind(&name).fetch_optional(&mut *conn).await;
            match row.map_err(db)? {
                Some(row) => Ok(Some(record(&row)?)),
                None => Err(StoreError::UnknownToken(name)),
            }
        }
    }
}

pub(crate) async fn list(readers: &SqlitePool) -> Result<Vec<TokenRecord>, StoreError> {
    let rows = sqlx::query(select!("ORDER BY name")).fetch_all(readers).await.map_err(db)?;
    rows.iter().map(record).collect()
}

pub(crate) async fn by_hash(readers: &SqlitePool, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
    let row = sqlx::query(select!("WHERE hash = ?")).bind(hash).fetch_optional(readers).await.map_err(db)?;
    row.as_ref().map(record).transpose()
}

pub(crate) async fn hash_of(readers: &SqlitePool, name: &str) -> Result<Option<String>, StoreError> {
    sqlx::query_scalar("SELECT hash FROM api_tokens WHERE name = ?")
        .bind(name)
        .fetch_optional(readers)
        .await
        .map_err(db)
}

fn record(row: &sqlx::sqlite::SqliteRow) -> Result<TokenRecord, StoreError> {
    let roles: String = row.try_get("roles").map_err(db)?;
    let name: String = row.try_get("name").map_err(db)?;
    let roles = serde_json::from_str(&roles)
        .map_err(|e| StoreError::Database(format!("token `{name}`: its roles cannot be read: {e}")))?;
    let optional = |column: &str| -> Result<Option<u64>, StoreError> {
        Ok(row.try_get::<Option<i64>, _>(column).map_err(db)?.map(|v| v as u64))
    };
    Ok(TokenRecord {
        identity: row.try_get("identity").map_err(db)?,
        roles,
        created_us: row.try_get::<i64, _>("created_us").map_err(db)? as u64,
        expires_us: optional("expires_us")?,
        revoked_us: optional("revoked_us")?,
        name,
    })
}
