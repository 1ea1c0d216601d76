-- Revocations of access tokens: the durable denylist. Redis holds a cache of
-- the unexpired rows (sb:deny:<jti>, sb:deny-user:<id>, see sb/authn.h) that
-- the auth service rebuilds from here whenever Redis has lost it
-- (services/auth/revocations.c). A row is written in the transaction that
-- revokes (logout; the member.withdrawn / member.password_changed events)
-- and deleted once no token it covers can still be valid.
CREATE TABLE revocations (
    kind text NOT NULL CHECK (kind IN ('token', 'user')),
    subject text NOT NULL,        -- token: its jti; user: the user id
    -- user: the user's tokens issued before this instant are refused (a
    -- password change); NULL: every token of the user (withdrawal).
    -- token: NULL.
    issued_before timestamptz,
    reason text NOT NULL CHECK (reason IN ('logout', 'password_change', 'withdrawal')),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL, -- the longest life of a token it covers
    PRIMARY KEY (kind, subject),
    CHECK (kind = 'user' OR issued_before IS NULL)
);

CREATE INDEX revocations_expires_idx ON revocations (expires_at);
