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

-- The database itself refuses an event that does not continue its run's head, and moves
-- the head with every event, in the same statement: an append is all or nothing.
CREATE TRIGGER events_continue_head BEFORE INSERT ON events
BEGIN
    SELECT RAISE(ABORT, 'tether: event does not continue its run')
    WHERE NEW.seq <> COALESCE((SELECT head_seq FROM run_leases WHERE run_id = NEW.run_id), -1) + 1;
END;

CREATE TRIGGER events_advance_head AFTER INSERT ON events
BEGIN
    UPDATE run_leases SET head_seq = NEW.seq, head_hash = NEW.hash WHERE run_id = NEW.run_id;
END;
