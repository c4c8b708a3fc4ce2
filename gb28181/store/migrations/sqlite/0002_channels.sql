-- Catalog nodes (channels, devices, regions, business groups, virtual organisations) of every
-- registered device or lower platform. Typed columns are what the platform searches and shows;
-- every other field the device sent is in info (JSON object as TEXT). security_class,
-- owner_department and shared are set by operators and never by a catalog sync.

CREATE TABLE channels (
    device_id         TEXT    NOT NULL,
    channel_id        TEXT    NOT NULL,
    parent_id         TEXT    NOT NULL DEFAULT '',
    parent_ids        TEXT    NOT NULL DEFAULT '',
    kind              TEXT    NOT NULL DEFAULT 'channel',
    name              TEXT,
    manufacturer      TEXT,
    model             TEXT,
    owner             TEXT,
    civil_code        TEXT,
    address           TEXT,
    parental          INTEGER,
    status            TEXT    NOT NULL DEFAULT 'UNKNOWN',
    longitude         REAL,
    latitude          REAL,
    ptz_type          INTEGER,
    business_group_id TEXT,
    info              TEXT    NOT NULL DEFAULT '{}',
    security_class    INTEGER NOT NULL DEFAULT 0,
    owner_department  TEXT,
    shared            INTEGER NOT NULL DEFAULT 0,
    updated_at        REAL    NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, channel_id)
);

-- parent_id is the first resolved parent: children of a node in one lookup.
CREATE INDEX channels_device_parent ON channels (device_id, parent_id);
CREATE INDEX channels_name ON channels (name);
-- A channel ID is routed (INVITE) without knowing which device lists it.
CREATE INDEX channels_channel_id ON channels (channel_id);
