-- Devices and lower platforms known to the registrar, plus their online/offline history.
-- Times are timestamptz (the Python API converts to and from epoch seconds); extra is JSONB.

CREATE TABLE devices (
    device_id      text        NOT NULL PRIMARY KEY,
    kind           text        NOT NULL,
    name           text        NOT NULL DEFAULT '',
    password       text,
    transport      text        NOT NULL DEFAULT 'UDP',
    contact        text        NOT NULL DEFAULT '',
    host           text        NOT NULL DEFAULT '',
    port           integer     NOT NULL DEFAULT 0,
    expires        integer     NOT NULL DEFAULT 0,
    registered_at  timestamptz,
    last_keepalive timestamptz,
    online         boolean     NOT NULL DEFAULT false,
    user_agent     text        NOT NULL DEFAULT '',
    gb_version     text        NOT NULL DEFAULT '',
    charset        text        NOT NULL DEFAULT 'GB2312',
    extra          jsonb       NOT NULL DEFAULT '{}'::jsonb
);

-- Append-only; rows outlive a deleted device so the history stays auditable.
CREATE TABLE device_status_history (
    id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id text        NOT NULL,
    at        timestamptz NOT NULL,
    online    boolean     NOT NULL,
    reason    text        NOT NULL DEFAULT ''
);

CREATE INDEX device_status_history_device_at ON device_status_history (device_id, at);
