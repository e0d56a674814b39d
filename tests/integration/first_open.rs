//! A journal whose first open (creating the file, migrating the schema) was killed at any
//! point opens fine afterwards: `tether migrate --db FILE` exits 0.
//!
//! The random test SIGKILLs `tether migrate --db NEW_FILE` at random delays spread over the
//! time a first open takes (so kills land before the file exists, during migration, and
//! after the process is done), then opens the file again. The deterministic test leaves a
//! journal as a first open killed right after sqlx created its migrations table
//! (`tether_store::testing::cut_short_first_open`), then opens, verifies, and runs a
//! workflow in it.
//!
//! Seeded and printed; reproduce with `TETHER_CRASH_SEED=N`. `TETHER_FIRST_OPEN_KILLS`
//! changes the number of kills that must land (default 100).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tether_tests::repo_root;

use crate::chaos::{env_u64, seed, PrivateDir, Rng};
use crate::support::{output, tether_cmd, tether_json};

/// `tether migrate --db FILE` (FILE also in $TETHER_DATABASE_URL, so nothing else is
/// opened): the first open of a new journal, and nothing more.
fn migrate(db: &Path) -> std::process::Command {
    let mut c = tether_cmd(db);
    c.args(["migrate", "--db", &db.display().to_string()]);
    c
}

fn remove_journal(db: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

/// How far a killed first open got, from the bytes on disk (the file and its write-ahead
/// log, committed or not): 0 no file, 1 a file without tether's schema, 2 the schema
/// partly written (migrating), 3 the last migration's table written.
fn stage(db: &Path) -> usize {
    let Ok(mut bytes) = std::fs::read(db) else { return 0 };
    bytes.extend(std::fs::read(format!("{}-wal", db.display())).unwrap_or_default());
    let has = |s: &str| bytes.windows(s.len()).any(|w| w == s.as_bytes());
    if has("CREATE TABLE run_leases") {
        3
    } else if has("_sqlx_migrations") {
        2
    } else {
        1
    }
}
#[test]
fn a_first_open_killed_at_any_point_opens_afterwards() {
    let seed = seed();
    let kills = env_u64("TETHER_FIRST_OPEN_KILLS").unwrap_or(100) as u32;
    let dir = PrivateDir::new("first-open");
    let db = dir.join("journal.db");

    // How long an uninterrupted first open takes (the fastest of three).
    let mut first_open = Duration::MAX;
    for _ in 0..3 {
        remove_journal(&db);
        let started = Instant::now();
        let o = migrate(&db).output().unwrap();
        first_open = first_open.min(started.elapsed());
        assert_eq!(o.status.code(), Some(0), "an uninterrupted first open: {}", output(&o));
    }
    // Spread kills over the whole first open and a little past it. The machine's load
    // changes while the suite runs, so the spread shrinks each time an open finishes before
    // its kill: kills keep landing inside the open however fast it has become.
    let mut max_delay_us = (first_open.as_micros() as u64 * 3 / 2).max(5_000);
    eprintln!(
        "first open: seed {seed}, {kills} kills within {max_delay_us} us; an uninterrupted first open takes \
         {first_open:?} (reproduce with TETHER_CRASH_SEED={seed})"
    );
    let mut rng = Rng(seed);

    // Kills by how far the first open got (see `stage`), and opens that finished first.
    let (mut stages, mut exited) = ([0u32; 4], 0);
    let mut i = 0;
    while stages.iter().sum::<u32>() < kills {
        assert!(i < kills * 4, "only {} of {i} first opens were killed (seed {seed})", stages.iter().sum::<u32>());
        i += 1;
        remove_journal(&db);
        let delay = rng.below(max_delay_us);
        let mut child = migrate(&db).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_micros(delay));
        if let Ok(Some(status)) = child.try_wait() {
            assert_eq!(status.code(), Some(0), "kill {i}: the first open failed by itself (seed {seed})");
            exited += 1;
            max_delay_us = (max_delay_us * 9 / 10).max(5_000);
        } else {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
            stages[stage(&db)] += 1;
        }
        let size = std::fs::metadata(&db).map(|m| m.len()).ok();
        let o = migrate(&db).output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "kill {i} after {delay} us (seed {seed}; the journal was {size:?} bytes): `tether migrate` afterwards: {}",
            output(&o)
        );
        let o = tether_cmd(&db).args(["verify", "--db", &db.display().to_string()]).output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "kill {i} after {delay} us (seed {seed}): `tether verify`: {}",
            output(&o)
        );
    }
    eprintln!(
        "first open: {i} tries: {} killed ({} before the journal file existed, {} with the file but no schema, \
         {} while migrating, {} with the last migration written), {exited} finished before the kill (kills spread \
         over {max_delay_us} us at the end); every journal opened afterwards",
        stages.iter().sum::<u32>(),
        stages[0],
        stages[1],
        stages[2],
        stages[3]
    );
    assert!(stages[2] > 0, "no kill landed while migrating; the test proves little (seed {seed})");
}

#[test]
fn a_first_open_cut_short_after_the_migrations_table_opens_and_works() {
    let dir = PrivateDir::new("first-open-cut");
    let db = dir.join("journal.db");
    let path = db.display().to_string();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(tether_store::testing::cut_short_first_open(&path));
    let o = migrate(&db).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "`tether migrate` on a cut-short journal: {}", output(&o));
    let o = tether_cmd(&db).args(["verify", "--db", &path]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "`tether verify` on a cut-short journal: {}", output(&o));
    // The schema is whole: a run is journaled and listed.
    let wf = repo_root().join("plugins/workflows/support-triage.toml").display().to_string();
    let input = format!("@{}", repo_root().join("plugins/workflows/ticket.json").display());
    let (code, report) =
        tether_json(&db, &["run", &wf, "--input", &input, "--run-id", "run_after-cut", "--json", "--db", &path]);
    assert_eq!(code, Some(0), "{report}");
    let (code, listed) = tether_json(&db, &["runs", "--json", "--db", &path]);
    assert_eq!(code, Some(0));
    assert_eq!(listed[0]["run_id"], "run_after-cut", "{listed}");
    assert_eq!(listed[0]["status"], "completed", "{listed}");
}
