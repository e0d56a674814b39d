-- One host per run: each run's lease (owner, epoch, expiry) and its durable head (the
-- last event's seq and hash). Every append checks the lease and the head and advances
-- the head in the same transaction, so a host that lost its lease writes nothing, and a
-- journal whose tail was cut no longer ends at its head. A released lease has owner ''.
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
