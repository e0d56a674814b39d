//! The PostgreSQL journal store on a real server: the conformance suite every backend
//! passes. The server is the one `scripts/test` starts (its URL in `TETHER_TEST_POSTGRES`);
//! each case gets a database of its own, named for the case and this test process.

use std::sync::Arc;

use tether_store::{testing, StoreConfig};
use tether_types::store::JournalStore;

use crate::conformance::{conformance_suite, Backend};

/// The test server's URL. Required: the README's test command starts a server.
fn server() -> String {
    std::env::var("TETHER_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "TETHER_TEST_POSTGRES is not set: run the tests with scripts/test, which starts a \
             PostgreSQL server, or set it to a server's URL (postgres://USER@HOST:PORT/DB)"
        )
    })
}

/// A fresh, empty database `name` (of this test process) on the test server: its URL.
pub(crate) fn fresh_database(name: &str) -> String {
    let full = format!("t{}_{name}", std::process::id());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(testing::recreate_postgres_database(&server(), &full));
    testing::postgres_database_url(&server(), &full)
}

/// The URL of this process's database for the case `name`.
fn database(name: &str) -> String {
    testing::postgres_database_url(&server(), &format!("t{}_{name}", std::process::id()))
}

async fn open(name: &str, cap: Option<usize>) -> Arc<dyn JournalStore> {
    let mut config = StoreConfig::new(database(name));
    if let Some(cap) = cap {
        config.max_event_bytes = cap;
    }
    tether_store::open(&config).await.unwrap()
}

/// A fresh database per case on the test server.
const POSTGRES: Backend = Backend {
    fresh: |name, cap| {
        Box::pin(async move {
            testing::recreate_postgres_database(&server(), &format!("t{}_{name}", std::process::id())).await;
            open(name, cap).await
        })
    },
    reopen: |name| Box::pin(async move { open(name, None).await }),
};

conformance_suite!(POSTGRES);

#[test]
fn migrate_prepares_a_new_postgres_journal_and_never_prints_its_password() {
    let url = fresh_database("migrate");
    let with_password = url.replacen("tether@", "tether:s3cret@", 1);
    let o =
        crate::support::tether_cmd(std::path::Path::new(&with_password)).args(["migrate", "--json"]).output().unwrap();
    let out = crate::support::output(&o);
    assert!(o.status.success(), "{out}");
    assert!(!out.contains("s3cret"), "the password was printed: {out}");
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["ready"], true, "{report}");
    assert!(report["journal"].as_str().unwrap().starts_with("PostgreSQL database `t"), "{report}");
    // Migrated once: a second migrate changes nothing, and reading commands work on it.
    let o = crate::support::tether_cmd(std::path::Path::new(&url)).args(["migrate"]).output().unwrap();
    assert!(o.status.success(), "{}", crate::support::output(&o));
    let (code, runs) = crate::support::tether_json(std::path::Path::new(&url), &["runs", "--json"]);
    assert_eq!((code, runs), (Some(0), serde_json::json!([])));
}
