-- scan-queue-server's PostgreSQL schema, version 1 (applied by refinery at start).

-- The log of records: one row per record, the sequence number its key, the payload the
-- record's JSON (the local journal's payload encoding).
CREATE TABLE sq_log (
    seq BIGINT PRIMARY KEY,
    payload BYTEA NOT NULL
);

-- Snapshots: the whole state after record `seq`, as JSON. Only the latest is kept.
CREATE TABLE sq_snapshot (
    seq BIGINT PRIMARY KEY,
    payload BYTEA NOT NULL
);

-- Who is active: written by each server when it takes over (the advisory lock decides who
-- may; this row only tells standbys where to send clients).
CREATE TABLE sq_leader (
    id INT PRIMARY KEY CHECK (id = 1),
    epoch BIGINT NOT NULL,
    url TEXT NOT NULL,
    since TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO sq_leader (id, epoch, url) VALUES (1, 0, '');

-- Result files, in chunks.
CREATE TABLE sq_result_file (
    name TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    chunks INT NOT NULL,
    created TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE sq_result_chunk (
    name TEXT NOT NULL REFERENCES sq_result_file (name) ON DELETE CASCADE,
    n INT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (name, n)
);
