-- Booking (booking.c, holds.c): reservations, their log, and the seats they
-- hold. A seat is held by setting seats.status = 'HELD', reservation_id and
-- held_until (the reservation's expires_at) in one guarded UPDATE whose row
-- count must equal the seats asked for; that UPDATE, not a lock in the
-- process, is what keeps one seat from being held twice.
--
-- Lazy expiry: a hold past its deadline is free at once. Every query reads
-- seats through resv_seat_status() and reservations through
-- resv_status(); the hold-expiry job later writes the EXPIRED state, frees
-- the seats and emits reservation.expired (holds.c).
CREATE TABLE reservations (
  reservation_id uuid PRIMARY KEY,
  user_id        uuid NOT NULL,
  performance_id uuid NOT NULL,
  schedule_id    uuid NOT NULL,
  seat_ids       text[] NOT NULL,
  amount         bigint NOT NULL CHECK (amount >= 0),
  status         text NOT NULL
                 CHECK (status IN ('PENDING_PAYMENT', 'CONFIRMED', 'CANCELLED', 'EXPIRED')),
  expires_at     timestamptz NOT NULL,  -- the hold's deadline (meaningful while PENDING_PAYMENT)
  attendee_name  text NOT NULL DEFAULT '',
  attendee_phone text NOT NULL DEFAULT '',
  payment_id     text NOT NULL DEFAULT '',
  version        bigint NOT NULL DEFAULT 1,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);
-- Lists: newest first, keyset over (created_at, reservation_id).
CREATE INDEX reservations_created_idx ON reservations (created_at DESC, reservation_id DESC);
CREATE INDEX reservations_user_idx ON reservations (user_id, created_at DESC, reservation_id DESC);
CREATE INDEX reservations_performance_idx
  ON reservations (performance_id, created_at DESC, reservation_id DESC);
-- The per-user limits of one schedule.
CREATE INDEX reservations_user_schedule_idx ON reservations (user_id, schedule_id)
  WHERE status IN ('PENDING_PAYMENT', 'CONFIRMED');
-- The hold-expiry job's scan.
CREATE INDEX reservations_pending_expiry_idx ON reservations (expires_at)
  WHERE status = 'PENDING_PAYMENT';

-- Every state change (and every change of seats or attendee), written in the
-- transaction of the change.
CREATE TABLE reservation_log (
  id             bigserial PRIMARY KEY,
  reservation_id uuid NOT NULL REFERENCES reservations (reservation_id),
  from_status    text NOT NULL DEFAULT '',  -- '' at creation
  to_status      text NOT NULL,
  actor          text NOT NULL,             -- the user id who asked, or 'system'
  reason         text NOT NULL,
  at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reservation_log_reservation_idx ON reservation_log (reservation_id, id);

-- A seat's status as every reader must see it: a hold past its deadline is
-- AVAILABLE (inlined by the planner: a plain CASE over the row).
CREATE FUNCTION resv_seat_status(status text, held_until timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN status = 'HELD' AND held_until <= now() THEN 'AVAILABLE' ELSE status END
$$;

-- A reservation's status as every reader must see it: PENDING_PAYMENT past
-- its deadline is EXPIRED.
CREATE FUNCTION resv_status(status text, expires_at timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN status = 'PENDING_PAYMENT' AND expires_at <= now() THEN 'EXPIRED' ELSE status END
$$;
