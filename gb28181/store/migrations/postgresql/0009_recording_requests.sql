-- On-demand recording requests (POST /api/v1/channels/{id}/record), so that they resume after
-- a restart as `always` and scheduled recordings do. One row per channel: until_at is when a
-- request with a duration ends (NULL: until DELETE), requested_by the principal who asked.

CREATE TABLE recording_requests (
    channel_id    text             NOT NULL PRIMARY KEY,
    until_at      double precision,
    requested_by  text             NOT NULL DEFAULT '',
    requested_at  double precision NOT NULL
);
