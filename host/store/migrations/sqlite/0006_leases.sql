-- One host per run: each run's lease (owner, epoch, expiry) and its anchored head (the
-- last event's seq and hash when the run was last given up or its lease renewed). Every
-- append is kept only while its writer's lease holds, in the same statement, so a host
-- that lost its lease writes nothing; a run whose tail was cut no longer reaches its
-- head. A released lease has owner ''.
CREATE TABLE run_leases (
    run_id     TEXT PRIMARY KEY NOT NULL,
    owner      TEXT NOT NULL,
    epoch      INTEGER NOT NULL,
    expires_us INTEGER NOT NULL,
    head_seq   INTEGER NOT NULL,
    head_hash  TEXT NOT NULL
) WITHOUT ROWID;

INSERT INTO run_leases (run_id, owner, epoch, expires_us, head_seq, head_hash)
SELECT e.run_id, '', 0, 0, e.seq, e.hash FROM events e
WHERE e.seq = (SELECT MAX(x.seq) FROM events x WHERE x.run_id = e.run_id);
