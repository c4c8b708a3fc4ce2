-- IDs issued by the platform (regulation art. 11: numbers are allocated centrally). The
-- primary key is the last guard against issuing one ID twice.

CREATE TABLE issued_ids (
    id         TEXT NOT NULL PRIMARY KEY,
    department TEXT NOT NULL,
    type       TEXT NOT NULL,
    issued_at  REAL NOT NULL,
    note       TEXT NOT NULL DEFAULT ''
);

CREATE INDEX issued_ids_department ON issued_ids (department, issued_at);
CREATE INDEX issued_ids_issued_at ON issued_ids (issued_at);
