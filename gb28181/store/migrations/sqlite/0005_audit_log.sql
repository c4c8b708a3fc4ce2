-- The audit trail (regulation art. 21; authz/audit.py): append-only, hash-chained. Every
-- column the hash covers is stored exactly as hashed: ``time`` as the float that was hashed
-- and ``extra`` as its canonical JSON text, so verification recomputes the same bytes.

CREATE TABLE audit_log (
    seq         INTEGER NOT NULL PRIMARY KEY,
    time        REAL    NOT NULL,
    principal   TEXT    NOT NULL,
    department  TEXT    NOT NULL,
    level       INTEGER,
    action      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    rule        TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    extra       TEXT    NOT NULL,
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL
);

CREATE INDEX audit_log_time ON audit_log (time);
CREATE INDEX audit_log_principal ON audit_log (principal, time);
