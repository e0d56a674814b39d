-- Runs can be paused (a run budget ran out) and resumed; the run index follows.
CREATE TRIGGER runs_on_pause AFTER INSERT ON events WHEN NEW.kind = 'run_paused'
BEGIN
    UPDATE runs SET status = 'paused' WHERE run_id = NEW.run_id;
END;

CREATE TRIGGER runs_on_resume AFTER INSERT ON events WHEN NEW.kind = 'run_resumed'
BEGIN
    UPDATE runs SET status = 'running' WHERE run_id = NEW.run_id AND status = 'paused';
END;
