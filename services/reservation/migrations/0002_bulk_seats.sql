-- Seats are created in bulk: one approval of the largest performance the
-- catalog allows is 2,000,000 rows in one statement (inventory_events.c), and
-- every per-row cost of the seats table is paid two million times. Measured
-- (bench/inventory_approve.c, docs/benchmarks.md), the table kept only what
-- the rows need:
--
-- * No foreign key to inv_schedules: its check is a trigger that runs one
--   query per inserted row (a quarter of the insert's time). The guarantee it
--   gave holds by construction: seats are inserted only by the inventory
--   handler, from inv_schedules rows it has just written under the
--   performance's lock, and a schedule is deleted only when no seat of it is
--   left (inventory_events.c, stmt_schedule_delete).
-- * No (schedule_id, status) index: what it served is served by the (schedule_id,
--   grade, status, seat_index) index (free seats of a schedule, per grade) and,
--   for expiring holds, by a partial index on held_until that only held seats
--   enter (an AVAILABLE seat costs it nothing at insert).
-- * The text keys (seat_id, grade, status, and inv_grades.grade they join
--   with) in the "C" collation: a btree insert compares them byte-wise
--   instead of through the locale's strcoll (a third less time per seat). No
--   reader sorts by them in another order (inventory.c orders grades with
--   COLLATE "C" already).
--
-- Bounded batches: a snapshot with more seats than INVENTORY_INLINE_SEATS
-- does not create them in the event's transaction. It marks its schedules
-- seats_pending (the durable progress marker) and the seat-fill job
-- (inventory_events.c) creates one schedule's seats per transaction,
-- clearing the mark in the same transaction: a kill mid-way leaves the
-- remaining schedules marked and the next tick goes on; nothing is created
-- twice. A schedule whose seats are pending is not served (no seat map, not
-- bookable) until they are all there.
--
-- What stays: the primary key (schedule_id, seat_id), so a seat exists once
-- per schedule; the status column with its CHECKs, for a booking's guarded
-- UPDATE ... WHERE status = 'AVAILABLE'.
ALTER TABLE seats DROP CONSTRAINT IF EXISTS seats_schedule_id_fkey;
DROP INDEX IF EXISTS seats_schedule_status_idx;
CREATE INDEX seats_held_until_idx ON seats (held_until) WHERE status = 'HELD';
ALTER TABLE seats ALTER COLUMN seat_id TYPE text COLLATE "C",
  ALTER COLUMN grade TYPE text COLLATE "C", ALTER COLUMN status TYPE text COLLATE "C";
ALTER TABLE inv_grades ALTER COLUMN grade TYPE text COLLATE "C";
ALTER TABLE inv_schedules ADD COLUMN seats_pending boolean NOT NULL DEFAULT false;
CREATE INDEX inv_schedules_seats_pending_idx ON inv_schedules (updated_at, schedule_id)
  WHERE seats_pending AND NOT removed;
