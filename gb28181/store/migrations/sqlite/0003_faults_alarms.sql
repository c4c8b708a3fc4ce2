-- Faults (GB/T 28181 regulation art. 10): device and channel state changes with time, cause
-- and hardware ID. A row is opened when the fault is raised and cleared_at is set when it
-- ends; open rows are the current state. Alarms from devices and MobilePosition reports are
-- append-only histories.

CREATE TABLE faults (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id  TEXT    NOT NULL,
    channel_id TEXT    NOT NULL DEFAULT '',
    kind       TEXT    NOT NULL,
    cause      TEXT    NOT NULL DEFAULT '',
    at         REAL    NOT NULL,
    cleared_at REAL
);

CREATE INDEX faults_at ON faults (at);
CREATE INDEX faults_device_at ON faults (device_id, at);
CREATE INDEX faults_open ON faults (device_id, channel_id, kind) WHERE cleared_at IS NULL;

CREATE TABLE alarms (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id   TEXT    NOT NULL,
    channel_id  TEXT    NOT NULL,
    sn          INTEGER NOT NULL DEFAULT 0,
    received_at REAL    NOT NULL,
    priority    INTEGER,
    method      TEXT,
    alarm_type  TEXT,
    alarm_time  TEXT,
    description TEXT,
    longitude   REAL,
    latitude    REAL
);

CREATE INDEX alarms_received_at ON alarms (received_at);
CREATE INDEX alarms_device_received_at ON alarms (device_id, received_at);

CREATE TABLE mobile_positions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id   TEXT    NOT NULL,
    channel_id  TEXT    NOT NULL,
    received_at REAL    NOT NULL,
    capture_time TEXT,
    longitude   REAL,
    latitude    REAL,
    speed       REAL,
    direction   REAL,
    altitude    REAL
);

CREATE INDEX mobile_positions_channel_at ON mobile_positions (channel_id, received_at);
