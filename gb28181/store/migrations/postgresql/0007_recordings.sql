-- Recording index: one row per segment file (a raw MPEG-PS file under the recordings root).
-- A row is inserted with state 'open' when the segment starts, so a crash always leaves a row
-- for start-up reconciliation; it becomes 'closed' (or 'recovered' after a crash) with its
-- size, key frame offsets (JSON [[seconds, byte offset], ...]) and SHA-256.

CREATE TABLE recordings (
    id             text             NOT NULL PRIMARY KEY,
    channel_id     text             NOT NULL,
    start_at       double precision NOT NULL,
    end_at         double precision NOT NULL,
    path           text             NOT NULL UNIQUE,
    bytes          bigint           NOT NULL DEFAULT 0,
    codec          text             NOT NULL DEFAULT '',
    keyframes      text             NOT NULL DEFAULT '[]',
    sha256         text,
    state          text             NOT NULL,
    security_class integer          NOT NULL DEFAULT 0
);

CREATE INDEX recordings_channel_start ON recordings (channel_id, start_at);
CREATE INDEX recordings_start ON recordings (start_at);
