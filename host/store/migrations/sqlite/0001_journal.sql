-- The journal: one row per event, chained by hash per run; a run index for listing
-- (kept by triggers); the components runs were started with, by digest.

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

-- The run index is maintained by the database from the events themselves, so it can
-- never disagree with the journal, and an append stays a single INSERT statement.
CREATE TRIGGER runs_on_start AFTER INSERT ON events WHEN NEW.kind = 'run_started'
BEGIN
    INSERT INTO runs (run_id, workflow, status, identity, started_us)
    VALUES (NEW.run_id, json_extract(NEW.payload, '$.workflow'), 'running',
            json_extract(NEW.payload, '$.identity'), NEW.at_us);
END;

CREATE TRIGGER runs_on_end AFTER INSERT ON events WHEN NEW.kind IN ('run_completed', 'run_failed')
BEGIN
    UPDATE runs
    SET status = CASE NEW.kind WHEN 'run_completed' THEN 'completed' ELSE 'failed' END,
        finished_us = NEW.at_us
    WHERE run_id = NEW.run_id;
END;

CREATE TABLE components (
    digest TEXT PRIMARY KEY NOT NULL,
    wasm   BLOB NOT NULL
);
