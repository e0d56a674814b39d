-- The journal: one row per event, chained by hash per run; a run index for listing;
-- the components runs were started with, by digest.

CREATE TABLE tether_meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
INSERT INTO tether_meta (key, value) VALUES ('format', 'tether-journal');

CREATE TABLE runs (
    run_id      TEXT PRIMARY KEY NOT NULL,
    workflow    TEXT NOT NULL,
    status      TEXT NOT NULL,
    identity    TEXT NOT NULL,
    started_us  INTEGER NOT NULL,
    finished_us INTEGER
);
CREATE INDEX runs_by_started ON runs (started_us);
CREATE INDEX runs_by_status ON runs (status, started_us);

CREATE TABLE events (
    run_id  TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    at_us   INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    payload TEXT NOT NULL,
    hash    TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE components (
    digest TEXT PRIMARY KEY NOT NULL,
    wasm   BLOB NOT NULL
);
