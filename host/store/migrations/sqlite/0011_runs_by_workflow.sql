-- The runs list filtered by workflow, newest first, without reading every run.
CREATE INDEX runs_by_workflow ON runs (workflow, started_us);
