-- Members: accounts and profiles. One row per account, kept after withdrawal
-- (scrubbed) so ids in other services' events stay meaningful.
--
-- login_id is stored lower-case (the service folds it), so the plain unique
-- constraint makes it case-insensitively unique. A withdrawn row's login_id
-- becomes 'withdrawn:<user_id>', which no sign-up can produce (':' is not
-- allowed), freeing the old login id for a new account.
CREATE TABLE members (
  user_id       uuid PRIMARY KEY,
  login_id      text NOT NULL UNIQUE CHECK (login_id = lower(login_id)),
  password_hash text,                 -- libsodium crypto_pwhash_str (Argon2id); NULL once withdrawn
  name          text NOT NULL,
  email         text NOT NULL,
  phone         text NOT NULL,
  role          text NOT NULL CHECK (role IN ('USER', 'PLANNER', 'ADMIN')),
  status        text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'WITHDRAWN')),
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  withdrawn_at  timestamptz,
  CHECK ((status = 'ACTIVE') = (password_hash IS NOT NULL)),
  CHECK ((status = 'WITHDRAWN') = (withdrawn_at IS NOT NULL))
);
