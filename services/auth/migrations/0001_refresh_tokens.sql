-- Refresh tokens (opaque, rotated on every use). Only the SHA-256 of a token
-- is stored: a leaked table does not hand out sessions. A login starts a
-- family; every rotation adds its successor to the same family, so reuse of a
-- spent token can revoke the whole session at once.
CREATE TABLE refresh_tokens (
    token_hash text PRIMARY KEY,           -- hex SHA-256 of the token
    family_id uuid NOT NULL,               -- one login session
    user_id uuid NOT NULL,
    role text NOT NULL CHECK (role IN ('USER', 'PLANNER', 'ADMIN')),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at timestamptz,                   -- rotated: spent
    revoked_at timestamptz                 -- logout, reuse, withdrawal, password change
);

CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);
