-- API tokens for `tether serve`: only each token's SHA-256 is kept, never the token.
CREATE TABLE api_tokens (
    name       TEXT PRIMARY KEY,
    hash       TEXT NOT NULL UNIQUE,
    identity   TEXT NOT NULL,
    roles      TEXT NOT NULL,  -- JSON array of role names
    created_us INTEGER NOT NULL,
    expires_us INTEGER,
    revoked_us INTEGER
) STRICT;
