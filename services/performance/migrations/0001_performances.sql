-- Performances: the catalog a planner registers and an admin approves.
--
-- status      PENDING_APPROVAL -> APPROVED | REJECTED -> CANCELLED; an edited
--             REJECTED performance goes back to PENDING_APPROVAL.
-- version     what event consumers see: 1 at creation, +1 on every change of
--             an APPROVED performance (and on its cancellation); snapshots in
--             performance.* events carry it so older ones can be ignored.
-- revision    +1 on every write whatever the status: the service's own
--             optimistic check around the reservation-service query an edit
--             of an approved performance may need (see performance.c).
-- created_at  with performance_id, the keyset of ListPerformances.
CREATE TABLE performances (
  performance_id  uuid PRIMARY KEY,
  planner_id      uuid NOT NULL,
  title           text NOT NULL,
  description     text NOT NULL DEFAULT '',
  venue           text NOT NULL,
  category        text NOT NULL,
  running_minutes int NOT NULL CHECK (running_minutes BETWEEN 1 AND 1440),
  status          text NOT NULL
                  CHECK (status IN ('PENDING_APPROVAL', 'APPROVED', 'REJECTED', 'CANCELLED')),
  version         bigint NOT NULL DEFAULT 1 CHECK (version >= 1),
  revision        bigint NOT NULL DEFAULT 1,
  reject_reason   text,
  cancel_reason   text,
  cancelled_by    text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  approved_at     timestamptz,
  rejected_at     timestamptz,
  cancelled_at    timestamptz,
  CHECK ((status = 'CANCELLED') = (cancelled_at IS NOT NULL))
);

CREATE INDEX performances_page ON performances (created_at DESC, performance_id DESC);
CREATE INDEX performances_planner_page
  ON performances (planner_id, created_at DESC, performance_id DESC);
CREATE INDEX performances_status_page
  ON performances (status, created_at DESC, performance_id DESC);

-- One row per date/time a performance is played. venue NULL: the
-- performance's venue. No two schedules of a performance start at the same
-- time (deferred, so an edit may swap two times).
CREATE TABLE schedules (
  schedule_id    uuid PRIMARY KEY,
  performance_id uuid NOT NULL REFERENCES performances ON DELETE CASCADE,
  starts_at      timestamptz NOT NULL,
  venue          text,
  created_at     timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT schedules_one_per_time UNIQUE (performance_id, starts_at) DEFERRABLE INITIALLY DEFERRED
);

CREATE INDEX schedules_starts_at ON schedules (starts_at, performance_id);

-- Seat grades and prices; every schedule of the performance has them all.
-- position keeps the order the planner gave.
CREATE TABLE grades (
  performance_id uuid NOT NULL REFERENCES performances ON DELETE CASCADE,
  grade          text NOT NULL CHECK (grade ~ '^[A-Za-z0-9]{1,20}$'),
  price          bigint NOT NULL CHECK (price BETWEEN 0 AND 100000000),
  seat_count     int NOT NULL CHECK (seat_count BETWEEN 1 AND 5000),
  position       int NOT NULL,
  PRIMARY KEY (performance_id, grade)
);
