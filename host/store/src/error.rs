//! Database errors as the store reports them.

use tether_types::store::StoreError;

pub(crate) fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}
