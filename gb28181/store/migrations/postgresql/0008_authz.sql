-- Authorization state (issue 5). cert_bindings: the permission certificate bound to a SIP
-- account that authenticates by digest only (UDP/TCP cameras and platforms); `gb28181 certs
-- bind`. grants: permission changes and emergency grants (第十八条) as JSON documents, so the
-- grant book survives restarts. channel_acl: the per-channel lists the channels table lacks:
-- 'shared_with' (level 4 sees a channel shared with it on application) and 'controllable_by'
-- (level 3 controls a channel it was authorised for); party is a department or principal ID.

CREATE TABLE cert_bindings (
    account_id   text NOT NULL PRIMARY KEY,
    cert_pem     text NOT NULL,
    cert_sha256  text NOT NULL,
    cert_serial  text NOT NULL,
    bound_at     double precision NOT NULL,
    note         text NOT NULL DEFAULT ''
);

CREATE INDEX cert_bindings_serial ON cert_bindings (cert_serial);

CREATE TABLE grants (
    id          text NOT NULL PRIMARY KEY,
    state       text NOT NULL,
    body        text NOT NULL,
    updated_at  double precision NOT NULL
);

CREATE TABLE channel_acl (
    channel_id  text NOT NULL,
    relation    text NOT NULL CHECK (relation IN ('shared_with', 'controllable_by')),
    party       text NOT NULL,
    PRIMARY KEY (channel_id, relation, party)
);
