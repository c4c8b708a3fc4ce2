-- Recording index: one row per segment file (a raw MPEG-PS file under the recordings root).
-- A row is inserted with state 'open' when the segment starts, so a crash always leaves a row
-- for start-up reconciliation; it becomes 'closed' (or 'recovered' after a crash) with its
-- size, key frame offsets (JSON [[seconds, byte offset], ...]) and SHA-256.

CREATE TABLE recordings (
    id             TEXT    NOT NULL PRIMARY KEY,
    channel_id     TEXT    NOT NULL,
    start_at       REAL    NOT NULL,
    end_at         REAL    NOT NULL,
    path           TEXT    NOT NULL UNIQUE,
    bytes          INTEGER NOT NULL DEFAULT 0,
    codec          TEXT    NOT NULL DEFAULT '',
    keyframes      TEXT    NOT NULL DEFAULT '[]',
    sha256         TEXT,
    state          TEXT    NOT NULL,
    security_class INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX recordings_channel_start ON recordings (channel_id, start_at);
CREATE INDEX recordings_start ON recordings (start_at);
