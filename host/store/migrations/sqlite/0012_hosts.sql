-- One heartbeat per host instead of a renewal per run: a run's lease lasts while its own
-- expiry (set when it was taken, to cover its holder's first beat) or its holder's
-- heartbeat has not lapsed. A host whose heartbeat is stale loses its runs to the others.
CREATE TABLE hosts (
    owner      TEXT PRIMARY KEY NOT NULL,
    since_us   INTEGER NOT NULL,
    beat_us    INTEGER NOT NULL,
    expires_us INTEGER NOT NULL
) WITHOUT ROWID;

-- Which runs a host holds (`tether workers`), and whether a long-silent host holds any.
CREATE INDEX run_leases_by_owner ON run_leases (owner);
