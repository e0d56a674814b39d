-- The journal on PostgreSQL: the schema the SQLite migrations arrive at, in one step.
-- Times are microseconds since the Unix epoch (BIGINT). Names that are sorted or ranged
-- over sort bytewise (COLLATE "C") whatever the database's locale, as in SQLite: the runs
-- list pages by (started_us, run_id) and finds an id prefix as a key range, which need
-- the plain byte order (a locale's order ignores `-` and `_` at first and breaks the range).

CREATE TABLE tether_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO tether_meta (key, value) VALUES ('format', 'tether-journal');

-- The store's clock: the server's, so every host on one journal judges a lease's expiry
-- alike. `now()` is the transaction's start: one instant for everything a batch does.
CREATE FUNCTION tether_now_us() RETURNS BIGINT LANGUAGE sql STABLE
AS $$ SELECT (extract(epoch FROM now()) * 1000000)::BIGINT $$;

-- The run index: one row per run, kept by the store from the events it writes, in the
-- same transaction (what each event changes is decided in Rust, for every backend).
CREATE TABLE runs (
    run_id      TEXT COLLATE "C" PRIMARY KEY,
    workflow    TEXT COLLATE "C" NOT NULL,
    status      TEXT NOT NULL,
    identity    TEXT NOT NULL,
    started_us  BIGINT NOT NULL,
    finished_us BIGINT
);
-- Each ends with run_id: the list's order and its cursor are (started_us, run_id), which
-- SQLite's indexes carry implicitly (the key follows every entry) and these must name.
CREATE INDEX runs_by_started ON runs (started_us, run_id);
CREATE INDEX runs_by_status ON runs (status, started_us, run_id);
CREATE INDEX runs_by_workflow ON runs (workflow, started_us, run_id);

-- One row per event, chained by hash per run. The key refuses a second writer of a
-- position: an append never overwrites or merges.
CREATE TABLE events (
    run_id  TEXT COLLATE "C" NOT NULL,
    seq     BIGINT NOT NULL,
    at_us   BIGINT NOT NULL,
    kind    TEXT NOT NULL,
    payload TEXT NOT NULL,
    hash    TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
-- A gate's track record is read without a scan of every event.
CREATE INDEX events_approvals ON events (kind, run_id, seq)
WHERE kind IN ('approval_requested', 'approval_decided', 'approval_overridden');

-- Component bytes by sha256, shared by the runs that used them and the plugins.
CREATE TABLE components (
    digest TEXT PRIMARY KEY,
    wasm   BYTEA NOT NULL
);

-- The components each run's plan pins: "which unfinished runs pin this plugin" is a join.
CREATE TABLE run_components (
    run_id TEXT COLLATE "C" NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (run_id, digest)
);
CREATE INDEX run_components_by_digest ON run_components (digest);

-- The plugin store: a name and version always mean one digest.
CREATE TABLE plugins (
    name     TEXT COLLATE "C" NOT NULL,
    version  TEXT COLLATE "C" NOT NULL,
    digest   TEXT NOT NULL REFERENCES components (digest),
    world    TEXT NOT NULL,
    size     BIGINT NOT NULL,
    metadata TEXT NOT NULL,
    added_us BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX plugins_by_digest ON plugins (digest);

-- One host per run: each run's lease (owner, epoch, expiry by tether_now_us()) and its
-- anchored head (the last event's seq and hash when the run was last given up). An
-- append is kept only while its writer's lease holds, checked in the INSERT itself. A
-- released lease has owner ''.
CREATE TABLE run_leases (
    run_id     TEXT COLLATE "C" PRIMARY KEY,
    owner      TEXT NOT NULL,
    epoch      BIGINT NOT NULL,
    expires_us BIGINT NOT NULL,
    head_seq   BIGINT NOT NULL,
    head_hash  TEXT NOT NULL
);

-- A cancel asked for while another host executes the run; the first one is kept.
CREATE TABLE cancel_requests (
    run_id TEXT COLLATE "C" PRIMARY KEY,
    "by"   TEXT NOT NULL,
    reason TEXT,
    at_us  BIGINT NOT NULL
);

-- API tokens for `tether serve`: only each token's SHA-256 is kept, never the token.
CREATE TABLE api_tokens (
    name       TEXT COLLATE "C" PRIMARY KEY,
    hash       TEXT NOT NULL UNIQUE,
    identity   TEXT NOT NULL,
    roles      TEXT NOT NULL,  -- JSON array of role names
    created_us BIGINT NOT NULL,
    expires_us BIGINT,
    revoked_us BIGINT
);
