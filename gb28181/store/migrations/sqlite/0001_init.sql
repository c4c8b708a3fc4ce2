-- Devices and lower platforms known to the registrar, plus their online/offline history.
-- Times are REAL unix epoch seconds; booleans are 0/1; extra is a JSON object as TEXT.

CREATE TABLE devices (
    device_id      TEXT    NOT NULL PRIMARY KEY,
    kind           TEXT    NOT NULL,
    name           TEXT    NOT NULL DEFAULT '',
    password       TEXT,
    transport      TEXT    NOT NULL DEFAULT 'UDP',
    contact        TEXT    NOT NULL DEFAULT '',
    host           TEXT    NOT NULL DEFAULT '',
    port           INTEGER NOT NULL DEFAULT 0,
    expires        INTEGER NOT NULL DEFAULT 0,
    registered_at  REAL,
    last_keepalive REAL,
    online         INTEGER NOT NULL DEFAULT 0,
    user_agent     TEXT    NOT NULL DEFAULT '',
    gb_version     TEXT    NOT NULL DEFAULT '',
    charset        TEXT    NOT NULL DEFAULT 'GB2312',
    extra          TEXT    NOT NULL DEFAULT '{}'
);

-- Append-only; rows outlive a deleted device so the history stays auditable.
CREATE TABLE device_status_history (
    id        INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    device_id TEXT    NOT NULL,
    at        REAL    NOT NULL,
    online    INTEGER NOT NULL,
    reason    TEXT    NOT NULL DEFAULT ''
);

CREATE INDEX device_status_history_device_at ON device_status_history (device_id, at);
