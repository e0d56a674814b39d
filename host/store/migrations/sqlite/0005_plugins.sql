-- The plugin store: named, versioned components deployed to this host. The bytes live in
-- `components`, content-addressed by sha256, shared with the runs that used them; a
-- name and version always mean one digest.
CREATE TABLE plugins (
    name     TEXT NOT NULL,
    version  TEXT NOT NULL,
    digest   TEXT NOT NULL REFERENCES components (digest),
    world    TEXT NOT NULL,
    size     INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    added_us INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX plugins_by_digest ON plugins (digest);
