-- The run index is no longer kept by triggers: the host computes what each event does to
-- it (one rule for every backend) and applies it in the transaction that writes the
-- event. Runs also record the components their plan pins, so "which unfinished runs pin
-- this plugin" is a join, not a search of plan text.
DROP TRIGGER runs_on_start;
DROP TRIGGER runs_on_end;
DROP TRIGGER runs_on_pause;
DROP TRIGGER runs_on_resume;
DROP TRIGGER runs_on_compensated;
DROP TRIGGER runs_on_waiting;

CREATE TABLE run_components (
    run_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (run_id, digest)
) WITHOUT ROWID;
CREATE INDEX run_components_by_digest ON run_components (digest);

-- Runs recorded before: their plans name their components.
INSERT OR IGNORE INTO run_components (run_id, digest)
SELECT e.run_id, json_extract(s.value, '$.component')
FROM events e, json_each(e.payload, '$.plan.steps') s
WHERE e.kind = 'run_started' AND ifnull(json_extract(s.value, '$.component'), '') <> '';

INSERT OR IGNORE INTO run_components (run_id, digest)
SELECT e.run_id, json_extract(s.value, '$.compensate.component')
FROM events e, json_each(e.payload, '$.plan.steps') s
WHERE e.kind = 'run_started' AND ifnull(json_extract(s.value, '$.compensate.component'), '') <> '';

INSERT OR IGNORE INTO run_components (run_id, digest)
SELECT e.run_id, json_extract(t.value, '$.component')
FROM events e, json_each(e.payload, '$.plan.tools') t
WHERE e.kind = 'run_started' AND ifnull(json_extract(t.value, '$.component'), '') <> '';
