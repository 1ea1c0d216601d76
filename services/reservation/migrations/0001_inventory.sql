-- Inventory: the reservation service's own copy of the catalog, built only
-- from the performance service's events on sb.performance (inventory_events.c).
-- Nothing here is written by a user request; bookings (a later migration)
-- change only seats.status / seats.reservation_id.
--
-- Every snapshot carries a version; a row keeps the highest version applied,
-- so a redelivered or late (older) snapshot is recognised and ignored.
-- A cancellation is terminal: status CANCELLED is never turned back. A
-- cancellation that arrives before any snapshot leaves a tombstone row
-- (status CANCELLED, the cancellation's version, empty details) so the
-- late approval is ignored too.
CREATE TABLE inv_performances (
  performance_id  uuid PRIMARY KEY,
  planner_id      uuid,                    -- NULL only on a tombstone without one
  title           text NOT NULL DEFAULT '',
  venue           text NOT NULL DEFAULT '',
  category        text NOT NULL DEFAULT '',
  running_minutes integer NOT NULL DEFAULT 0,
  version         bigint NOT NULL,
  status          text NOT NULL CHECK (status IN ('ON_SALE', 'CANCELLED')),
  updated_at      timestamptz NOT NULL DEFAULT now()
);
-- ListBookable: keyset over performance_id, optionally within one category.
CREATE INDEX inv_performances_on_sale_idx ON inv_performances (performance_id)
  WHERE status = 'ON_SALE';
CREATE INDEX inv_performances_category_idx ON inv_performances (category, performance_id)
  WHERE status = 'ON_SALE';

-- A schedule dropped by a newer snapshot while some of its seats are held or
-- sold is kept with removed = true (not bookable, not listed, no seat map) so
-- those reservations keep their seats; one without any is deleted outright.
CREATE TABLE inv_schedules (
  schedule_id    uuid PRIMARY KEY,
  performance_id uuid NOT NULL REFERENCES inv_performances (performance_id),
  starts_at      timestamptz NOT NULL,
  venue          text NOT NULL,
  removed        boolean NOT NULL DEFAULT false,
  updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inv_schedules_performance_idx ON inv_schedules (performance_id, starts_at);

-- The grades of the latest snapshot, in snapshot order (position).
CREATE TABLE inv_grades (
  performance_id uuid NOT NULL REFERENCES inv_performances (performance_id),
  grade          text NOT NULL,
  price          bigint NOT NULL CHECK (price >= 0),
  seat_count     integer NOT NULL CHECK (seat_count >= 0),
  position       integer NOT NULL,
  PRIMARY KEY (performance_id, grade)
);

-- Row label of the idx-th row (0-based) of a grade: A..Z, AA..AZ, BA, ...
CREATE FUNCTION inv_row_label(idx integer) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
  n integer := idx + 1;
  s text := '';
BEGIN
  WHILE n > 0 LOOP
    n := n - 1;
    s := chr(65 + n % 26) || s;
    n := n / 26;
  END LOOP;
  RETURN s;
END
$$;

-- Seats are generated per schedule from the grades: the k-th seat (0-based,
-- seat_index) of grade G sits in row inv_row_label(k / 20), number k % 20 + 1,
-- and is called "G-<row>-<number>" ("VIP-A-1"). Rows start at A in every
-- grade, so a grade's seat ids never depend on the other grades' sizes.
-- Bookings: status AVAILABLE -> HELD (reservation_id, held_until set) -> SOLD,
-- or back to AVAILABLE. price is the price the seat is sold at: a price change
-- only reaches AVAILABLE seats.
CREATE TABLE seats (
  schedule_id    uuid NOT NULL REFERENCES inv_schedules (schedule_id),
  seat_id        text NOT NULL,
  grade          text NOT NULL,
  seat_index     integer NOT NULL CHECK (seat_index >= 0),
  row_label      text NOT NULL,
  seat_number    integer NOT NULL CHECK (seat_number > 0),
  price          bigint NOT NULL CHECK (price >= 0),
  status         text NOT NULL DEFAULT 'AVAILABLE' CHECK (status IN ('AVAILABLE', 'HELD', 'SOLD')),
  reservation_id uuid,
  held_until     timestamptz,
  updated_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (schedule_id, seat_id),
  CHECK ((status = 'AVAILABLE') = (reservation_id IS NULL)),
  CHECK (held_until IS NULL OR status = 'HELD')
);
-- Counts per grade and status (GROUP BY over one schedule, index-only), the
-- seat map's order, and a grade's seats beyond a shrunk count.
CREATE INDEX seats_schedule_grade_idx ON seats (schedule_id, grade, status, seat_index);
-- Free seats of a schedule (best-available holds), expiring holds.
CREATE INDEX seats_schedule_status_idx ON seats (schedule_id, status);
CREATE INDEX seats_reservation_idx ON seats (reservation_id) WHERE reservation_id IS NOT NULL;
