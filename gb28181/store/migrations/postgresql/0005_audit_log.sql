-- The audit trail (regulation art. 21; authz/audit.py): append-only, hash-chained. Every
-- column the hash covers is stored exactly as hashed: ``time`` as float8 (not timestamptz,
-- which would round to microseconds and break the hash) and ``extra`` as its canonical JSON
-- text (jsonb would normalise it).

CREATE TABLE audit_log (
    seq         bigint           NOT NULL PRIMARY KEY,
    time        double precision NOT NULL,
    principal   text             NOT NULL,
    department  text             NOT NULL,
    level       integer,
    action      text             NOT NULL,
    target      text             NOT NULL,
    outcome     text             NOT NULL,
    rule        text             NOT NULL,
    reason      text             NOT NULL,
    source      text             NOT NULL,
    extra       text             NOT NULL,
    prev_hash   text             NOT NULL,
    hash        text             NOT NULL
);

CREATE INDEX audit_log_time ON audit_log (time);
CREATE INDEX audit_log_principal ON audit_log (principal, time);
