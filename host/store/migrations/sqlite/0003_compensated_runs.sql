-- Runs that failed and were undone (sagas) end as compensated or compensation_failed.
CREATE TRIGGER runs_on_compensated AFTER INSERT ON events
WHEN NEW.kind IN ('run_compensated', 'run_compensation_failed')
BEGIN
    UPDATE runs
    SET status = CASE NEW.kind WHEN 'run_compensated' THEN 'compensated' ELSE 'compensation_failed' END,
        finished_us = NEW.at_us
    WHERE run_id = NEW.run_id;
END;
