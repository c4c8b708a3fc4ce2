-- Bearer tokens of the HTTP API, each issued against one certificate, whose principal the
-- bearer acts as. Only the SHA-256 of a token is stored: tokens
-- are 256-bit random strings, so a fast hash suffices and a leaked table grants nothing.

CREATE TABLE api_tokens (
    token_hash   text             NOT NULL PRIMARY KEY,
    principal    text             NOT NULL,
    cert_sha256  text             NOT NULL,
    cert_serial  text             NOT NULL,
    created_at   double precision NOT NULL,
    expires_at   double precision,
    revoked_at   double precision,
    note         text             NOT NULL DEFAULT ''
);

CREATE INDEX api_tokens_principal ON api_tokens (principal);
CREATE INDEX api_tokens_cert ON api_tokens (cert_sha256);
