//! The plugin store's SQL: deployed components by name and version. Writes run on the
//! journal's writer connection, each in its own transaction; reads use the reader pool.

use sqlx::{Row, SqliteConnection, SqlitePool};
use tether_types::store::{PluginAdded, PluginRecord, StoreError};

use crate::error::db;

/// Runs that pin a component: a run pins its components by digest in its plan (the
/// `run_started` event, seq 1). The digest is 64 hex digits, so a substring match on the
/// plan is exact enough.
const PINNED_BY_UNFINISHED: &str = "SELECT r.run_id FROM run_components c JOIN runs r ON r.run_id = c.run_id \
     WHERE c.digest = ? AND r.status IN ('running', 'paused', 'waiting') ORDER BY r.started_us";

pub(crate) async fn add(
    conn: &mut SqliteConnection,
    plugin: &PluginRecord,
    wasm: &[u8],
) -> Result<PluginAdded, StoreError> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(db)?;
    let existing: Option<String> = sqlx::query_scalar("SELECT digest FROM plugins WHERE name = ? AND version = ?")
        .bind(&plugin.name)
        .bind(&plugin.version)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
    match existing {
        Some(d) if d == plugin.digest => return Ok(PluginAdded::AlreadyPresent),
        Some(d) => {
            return Err(StoreError::PluginConflict {
                name: plugin.name.clone(),
                version: plugin.version.clone(),
                existing: d,
                new: plugin.digest.clone(),
            })
        }
        None => {}
    }
    sqlx::query("INSERT OR IGNORE INTO components (digest, wasm) VALUES (?, ?)")
        .bind(&plugin.digest)
        .bind(wasm)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    sqlx::query(
        "INSERT INTO plugins (name, version, digest, world, size, metadata, added_us) VALUES (?, ?, ?, ?, ?, ?, ?)",
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
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(PluginAdded::Added)
}

pub(crate) async fn remove(conn: &mut SqliteConnection, name: &str, version: &str) -> Result<PluginRecord, StoreError> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(db)?;
    let row = sqlx::query(
        "SELECT name, version, digest, world, size, metadata, added_us FROM plugins WHERE name = ? AND version = ?",
    )
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
    sqlx::query("DELETE FROM plugins WHERE name = ? AND version = ?")
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

pub(crate) async fn list(readers: &SqlitePool, name: Option<&str>) -> Result<Vec<PluginRecord>, StoreError> {
    let sql = "SELECT name, version, digest, world, size, metadata, added_us FROM plugins WHERE (?1 IS NULL OR name = ?1) ORDER BY name, added_us, version";
    let rows = sqlx::query(sql).bind(name).fetch_all(readers).await.map_err(db)?;
    rows.iter().map(record).collect()
}

fn record(r: &sqlx::sqlite::SqliteRow) -> Result<PluginRecord, StoreError> {
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
