-- Authorization state (issue 5). cert_bindings: the permission certificate bound to a SIP
-- account that authenticates by digest only (UDP/TCP cameras and platforms); `gb28181 certs
-- bind`. grants: permission changes and emergency grants (第十八条) as JSON documents, so the
-- grant book survives restarts. channel_acl: the per-channel lists the channels table lacks:
-- 'shared_with' (level 4 sees a channel shared with it on application) and 'controllable_by'
-- (level 3 controls a channel it was authorised for); party is a department or principal ID.

CREATE TABLE cert_bindings (
    account_id   TEXT NOT NULL PRIMARY KEY,
    cert_pem     TEXT NOT NULL,
    cert_sha256  TEXT NOT NULL,
    cert_serial  TEXT NOT NULL,
    bound_at     REAL NOT NULL,
    note         TEXT NOT NULL DEFAULT ''
);

CREATE INDEX cert_bindings_serial ON cert_bindings (cert_serial);

CREATE TABLE grants (
    id          TEXT NOT NULL PRIMARY KEY,
    state       TEXT NOT NULL,
    body        TEXT NOT NULL,
    updated_at  REAL NOT NULL
);

CREATE TABLE channel_acl (
    channel_id  TEXT NOT NULL,
    relation    TEXT NOT NULL CHECK (relation IN ('shared_with', 'controllable_by')),
    party       TEXT NOT NULL,
    PRIMARY KEY (channel_id, relation, party)
);
