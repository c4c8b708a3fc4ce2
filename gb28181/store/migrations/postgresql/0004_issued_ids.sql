-- IDs issued by the platform (regulation art. 11: numbers are allocated centrally). The
-- primary key is the last guard against issuing one ID twice; allocation itself serialises on
-- a transaction-scoped advisory lock per block, so several nodes may share the table.

CREATE TABLE issued_ids (
    id         text        NOT NULL PRIMARY KEY,
    department text        NOT NULL,
    type       text        NOT NULL,
    issued_at  timestamptz NOT NULL,
    note       text        NOT NULL DEFAULT ''
);

CREATE INDEX issued_ids_department ON issued_ids (department, issued_at);
CREATE INDEX issued_ids_issued_at ON issued_ids (issued_at);
