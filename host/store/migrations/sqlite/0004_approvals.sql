-- Runs can wait for a human (an approval gate) and continue once decided; the run index
-- follows. Approval events are indexed so a gate's track record is read without a scan.
CREATE TRIGGER runs_on_waiting AFTER INSERT ON events WHEN NEW.kind = 'run_waiting'
BEGIN
    UPDATE runs SET status = 'waiting' WHERE run_id = NEW.run_id;
END;

DROP TRIGGER runs_on_resume;
CREATE TRIGGER runs_on_resume AFTER INSERT ON events WHEN NEW.kind = 'run_resumed'
BEGIN
    UPDATE runs SET status = 'running' WHERE run_id = NEW.run_id AND status IN ('paused', 'waiting');
END;

CREATE INDEX events_approvals ON events (kind, run_id, seq)
WHERE kind IN ('approval_requested', 'approval_decided', 'approval_overridden');
