-- Faults (GB/T 28181 regulation art. 10): device and channel state changes with time, cause
-- and hardware ID. A row is opened when the fault is raised and cleared_at is set when it
-- ends; open rows are the current state. Alarms from devices and MobilePosition reports are
-- append-only histories.

CREATE TABLE faults (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id  text        NOT NULL,
    channel_id text        NOT NULL DEFAULT '',
    kind       text        NOT NULL,
    cause      text        NOT NULL DEFAULT '',
    at         timestamptz NOT NULL,
    cleared_at timestamptz
);

CREATE INDEX faults_at ON faults (at);
CREATE INDEX faults_device_at ON faults (device_id, at);
CREATE INDEX faults_open ON faults (device_id, channel_id, kind) WHERE cleared_at IS NULL;

CREATE TABLE alarms (
    id          bigint           GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id   text             NOT NULL,
    channel_id  text             NOT NULL,
    sn          bigint           NOT NULL DEFAULT 0,
    received_at timestamptz      NOT NULL,
    priority    integer,
    method      text,
    alarm_type  text,
    alarm_time  text,
    description text,
    longitude   double precision,
    latitude    double precision
);

CREATE INDEX alarms_received_at ON alarms (received_at);
CREATE INDEX alarms_device_received_at ON alarms (device_id, received_at);

CREATE TABLE mobile_positions (
    id           bigint           GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id    text             NOT NULL,
    channel_id   text             NOT NULL,
    received_at  timestamptz      NOT NULL,
    capture_time text,
    longitude    double precision,
    latitude     double precision,
    speed        double precision,
    direction    double precision,
    altitude     double precision
);

CREATE INDEX mobile_positions_channel_at ON mobile_positions (channel_id, received_at);
