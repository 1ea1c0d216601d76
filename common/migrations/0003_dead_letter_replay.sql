-- Dead letters can be replayed by an admin (GET/POST /admin/dead-letters/...,
-- common/src/dead_letters.c): a successful replay records when and by whom, in
-- the transaction that applied the event; a failed one counts the attempt and
-- keeps the latest reason in error. Rows are never deleted. The partial index
-- serves the unreplayed count of /metrics and the unreplayed list.
ALTER TABLE sb_dead_letters
  ADD COLUMN IF NOT EXISTS replayed_at timestamptz,
  ADD COLUMN IF NOT EXISTS replayed_by text,
  ADD COLUMN IF NOT EXISTS replay_attempts int NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS sb_dead_letters_unreplayed ON sb_dead_letters (id) WHERE replayed_at IS NULL;
