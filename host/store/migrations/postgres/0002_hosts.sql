-- One heartbeat per host instead of a renewal per run: a run's lease lasts while its own
-- expiry (set when it was taken, to cover its holder's first beat) or its holder's
-- heartbeat has not lapsed. A host whose heartbeat is stale loses its runs to the others.
CREATE TABLE hosts (
    owner      TEXT COLLATE "C" PRIMARY KEY,
    since_us   BIGINT NOT NULL,
    beat_us    BIGINT NOT NULL,
    expires_us BIGINT NOT NULL
);

-- Which runs a host holds (`tether workers`), and whether a long-silent host holds any.
CREATE INDEX run_leases_by_owner ON run_leases (owner);

-- When a lease lapses: at once for a released one (owner ''), else the later of its own
-- expiry and its holder's heartbeat.
CREATE FUNCTION tether_lease_until(holder TEXT, own_expiry BIGINT) RETURNS BIGINT LANGUAGE sql STABLE
AS $$
    SELECT CASE WHEN holder = '' THEN 0
        ELSE GREATEST(own_expiry, COALESCE((SELECT h.expires_us FROM hosts h WHERE h.owner = holder), 0)) END
$$;
