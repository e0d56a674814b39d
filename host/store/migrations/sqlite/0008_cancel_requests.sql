-- A cancel asked for while another host executes the run: that host sees it, journals
-- the cancel under its own lease and stops. The first request for a run is the one kept.
CREATE TABLE cancel_requests (
    run_id TEXT PRIMARY KEY NOT NULL,
    by     TEXT NOT NULL,
    reason TEXT,
    at_us  INTEGER NOT NULL
) WITHOUT ROWID;
