//! The plugin store on PostgreSQL: deployed components by name and version, each change
//! its own transaction on the pool (plugins change rarely, and never with the journal's
//! appends).

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use tether_types::store::{PluginAdded, PluginRecord, StoreError};

use crate::error::db;

/// Unfinished runs that pin a component (their plan names it, see `run_components`).
const PINNED_BY_UNFINISHED: &str = "SELECT r.run_id FROM run_components c JOIN runs r ON r.run_id = c.run_id \
     WHERE c.digest = $1 AND r.status IN ('running', 'paused', 'waiting') ORDER BY r.started_us";

const COLUMNS: &str = "SELECT name, version, digest, world, size, metadata, added_us FROM plugins";

pub(super) async fn add(pool: &PgPool, plugin: &PluginRecord, wasm: &[u8]) -> Result<PluginAdded, StoreError> {
    let mut tx = pool.begin().await.map_err(db)?;
    sqlx::query("INSERT INTO components (digest, wasm) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING")
        .bind(&plugin.digest)
        .bind(wasm)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    // Two hosts deploying one name and version at once: the second finds the first's.
    let added = sqlx::query(
        "INSERT INTO plugins (name, version, digest, world, size, metadata, added_us) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name, version) DO NOTHING",
    )
    .bind(&plugin.name)
    .bind(&plugin.version)
    .bind(&plugin.digest)
    .bind(&plugin.world)
    .bind(plugin.size as i64)
    .bind(plugin.metadata.to_string())
    .bind(plugin.added_us as i64)
    .execute(&mut *tx)
    .await
    .map_err(db)?
    .rows_affected();
    if added == 1 {
        tx.commit().await.map_err(db)?;
        return Ok(PluginAdded::Added);
    }
    let existing: String = sqlx::query_scalar("SELECT digest FROM plugins WHERE name = $1 AND version = $2")
        .bind(&plugin.name)
        .bind(&plugin.version)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
    // Nothing of ours is kept: a component stored only for a refused plugin goes too.
    tx.rollback().await.map_err(db)?;
    if existing == plugin.digest {
        return Ok(PluginAdded::AlreadyPresent);
    }
    Err(StoreError::PluginConflict {
        name: plugin.name.clone(),
        version: plugin.version.clone(),
        existing,
        new: plugin.digest.clone(),
    })
}

pub(super) async fn remove(pool: &PgPool, name: &str, version: &str) -> Result<PluginRecord, StoreError> {
    let mut tx = pool.begin().await.map_err(db)?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{COLUMNS} WHERE name = $1 AND version = $2 FOR UPDATE")))
        .bind(name)
        .bind(version)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
    let plugin = match row {
        Some(r) => record(&r)?,
        None => return Err(StoreError::UnknownPlugin(format!("{name}@{version}"))),
    };
    let unfinished: Vec<String> =
        sqlx::query_scalar(PINNED_BY_UNFINISHED).bind(&plugin.digest).fetch_all(&mut *tx).await.map_err(db)?;
    if !unfinished.is_empty() {
        return Err(StoreError::PluginInUse { plugin: plugin.reference(), runs: unfinished });
    }
    sqlx::query("DELETE FROM plugins WHERE name = $1 AND version = $2")
        .bind(name)
        .bind(version)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    // The component's bytes stay. A run may have loaded this plugin and not yet journaled
    // its `run_started` (so no query here can see it); its resume and replay need them.
    tx.commit().await.map_err(db)?;
    Ok(plugin)
}

pub(super) async fn list(pool: &PgPool, name: Option<&str>) -> Result<Vec<PluginRecord>, StoreError> {
    let sql = format!("{COLUMNS} WHERE ($1::text IS NULL OR name = $1) ORDER BY name, added_us, version");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name).fetch_all(pool).await.map_err(db)?;
    rows.iter().map(record).collect()
}

fn record(r: &PgRow) -> Result<PluginRecord, StoreError> {
    let metadata: String = r.try_get(5).map_err(db)?;
    Ok(PluginRecord {
        name: r.try_get(0).map_err(db)?,
        version: r.try_get(1).map_err(db)?,
        digest: r.try_get(2).map_err(db)?,
        world: r.try_get(3).map_err(db)?,
        size: r.try_get::<i64, _>(4).map_err(db)? as u64,
        metadata: serde_json::from_str(&metadata)
            .map_err(|e| StoreError::Database(format!("plugin metadata is not JSON: {e}")))?,
        added_us: r.try_get::<i64, _>(6).map_err(db)? as u64,
    })
}
