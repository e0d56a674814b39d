//! The API token store on PostgreSQL: each change its own statement on the pool.

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use tether_types::access::TokenRecord;
use tether_types::store::StoreError;

use crate::error::db;

/// A token query: the columns [`record`] reads, then `$rest`.
macro_rules! select {
    ($rest:literal) => {
        concat!("SELECT name, identity, roles, created_us, expires_us, revoked_us FROM api_tokens ", $rest)
    };
}

pub(super) async fn add(pool: &PgPool, token: &TokenRecord, hash: &str) -> Result<(), StoreError> {
    let roles = serde_json::to_string(&token.roles).map_err(|e| StoreError::Database(e.to_string()))?;
    let result = sqlx::query(
        "INSERT INTO api_tokens (name, hash, identity, roles, created_us, expires_us) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(&token.name)
    .bind(hash)
    .bind(&token.identity)
    .bind(roles)
    .bind(token.created_us as i64)
    .bind(token.expires_us.map(|e| e as i64))
    .execute(pool)
    .await
    .map_err(db)?;
    if result.rows_affected() == 0 {
        return Err(StoreError::TokenExists(token.name.clone()));
    }
    Ok(())
}

/// Revokes by name, keeping a first revocation's time.
pub(super) async fn revoke(pool: &PgPool, name: &str, at_us: u64) -> Result<TokenRecord, StoreError> {
    // The UPDATE returns the row as it is after the change.
    let row = sqlx::query(
        "UPDATE api_tokens SET revoked_us = COALESCE(revoked_us, $1) WHERE name = $2 \
         RETURNING name, identity, roles, created_us, expires_us, revoked_us",
    )
    .bind(at_us as i64)
    .bind(name)
    .fetch_optional(pool)
    .await
    .map_err(db)?;
    match row {
        Some(row) => record(&row),
        None => Err(StoreError::UnknownToken(name.into())),
    }
}

pub(super) async fn list(pool: &PgPool) -> Result<Vec<TokenRecord>, StoreError> {
    let rows = sqlx::query(select!("ORDER BY name")).fetch_all(pool).await.map_err(db)?;
    rows.iter().map(record).collect()
}

pub(super) async fn by_hash(pool: &PgPool, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
    let row = sqlx::query(select!("WHERE hash = $1")).bind(hash).fetch_optional(pool).await.map_err(db)?;
    row.as_ref().map(record).transpose()
}

pub(super) async fn hash_of(pool: &PgPool, name: &str) -> Result<Option<String>, StoreError> {
    sqlx::query_scalar("SELECT hash FROM api_tokens WHERE name = $1").bind(name).fetch_optional(pool).await.map_err(db)
}

fn record(row: &PgRow) -> Result<TokenRecord, StoreError> {
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
