-- Catalog nodes (channels, devices, regions, business groups, virtual organisations) of every
-- registered device or lower platform. Typed columns are what the platform searches and shows;
-- every other field the device sent is in info (JSONB). security_class, owner_department and
-- shared are set by operators and never by a catalog sync.

CREATE TABLE channels (
    device_id         text             NOT NULL,
    channel_id        text             NOT NULL,
    parent_id         text             NOT NULL DEFAULT '',
    parent_ids        text             NOT NULL DEFAULT '',
    kind              text             NOT NULL DEFAULT 'channel',
    name              text,
    manufacturer      text,
    model             text,
    owner             text,
    civil_code        text,
    address           text,
    parental          integer,
    status            text             NOT NULL DEFAULT 'UNKNOWN',
    longitude         double precision,
    latitude          double precision,
    ptz_type          integer,
    business_group_id text,
    info              jsonb            NOT NULL DEFAULT '{}'::jsonb,
    security_class    integer          NOT NULL DEFAULT 0,
    owner_department  text,
    shared            boolean          NOT NULL DEFAULT false,
    updated_at        timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, channel_id)
);

-- parent_id is the first resolved parent: children of a node in one lookup.
CREATE INDEX channels_device_parent ON channels (device_id, parent_id);
CREATE INDEX channels_name ON channels (name);
-- A channel ID is routed (INVITE) without knowing which device lists it.
CREATE INDEX channels_channel_id ON channels (channel_id);
