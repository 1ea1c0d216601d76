-- The booking saga (saga.c). A cancellation of many reservations at once (a
-- performance cancelled, a member withdrawn) ends a first batch in the
-- event's own transaction; what is left is a row here, which the
-- mass-cancel job works off a batch per transaction and deletes when no live
-- reservation of its performance or member remains.
CREATE TABLE resv_mass_cancels (
  id             bigserial PRIMARY KEY,
  performance_id uuid,
  user_id        uuid,
  reason         text NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  CHECK ((performance_id IS NULL) <> (user_id IS NULL))
);

-- A performance's live reservations, oldest first (the mass cancel's scan;
-- reservations_performance_idx would walk every ended one too).
CREATE INDEX reservations_performance_live_idx ON reservations (performance_id, created_at)
  WHERE status IN ('PENDING_PAYMENT', 'CONFIRMED');
