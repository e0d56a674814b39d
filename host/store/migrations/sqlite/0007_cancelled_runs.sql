-- A run cancelled by a person ends with an error of class `cancelled`, whether or not
-- completed steps had to be undone: its status is `cancelled`.
DROP TRIGGER runs_on_end;
CREATE TRIGGER runs_on_end AFTER INSERT ON events WHEN NEW.kind IN ('run_completed', 'run_failed')
BEGIN
    UPDATE runs
    SET status = CASE
            WHEN NEW.kind = 'run_completed' THEN 'completed'
            WHEN json_extract(NEW.payload, '$.error.class') = 'cancelled' THEN 'cancelled'
            ELSE 'failed'
        END,
        finished_us = NEW.at_us
    WHERE run_id = NEW.run_id;
END;

DROP TRIGGER runs_on_compensated;
CREATE TRIGGER runs_on_compensated AFTER INSERT ON events
WHEN NEW.kind IN ('run_compensated', 'run_compensation_failed')
BEGIN
    UPDATE runs
    SET status = CASE
            WHEN json_extract(NEW.payload, '$.error.class') = 'cancelled' THEN 'cancelled'
            WHEN NEW.kind = 'run_compensated' THEN 'compensated'
            ELSE 'compensation_failed'
        END,
        finished_us = NEW.at_us
    WHERE run_id = NEW.run_id;
END;
