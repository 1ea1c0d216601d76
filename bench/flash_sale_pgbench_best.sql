-- The hold of one buyer asking for the best available seats
-- (bench/flash_sale.c --mode best), as the reservation service runs it
-- (services/reservation/holds.c resv_create + take_best): up to 5 attempts,
-- each reading the grade's free seats, choosing, and locking the choice FOR
-- UPDATE SKIP LOCKED and updating it inside a savepoint; a lost race rolls
-- back to the savepoint and chooses again.
-- Variables and departures as in flash_sale_pgbench.sql; here the choice is
-- made in SQL (the first q free seats in seat order) where the service runs
-- seat_pick.c on the rows it read, and a buyer meeting a sold-out grade
-- still runs one (empty) UPDATE before giving up.
\set go 1
\set n 0
\set u1 random(1, 2147483647)
\set u2 random(1, 2147483647)
\set r1 random(1, 2147483647)
\set r2 random(1, 2147483647)
BEGIN ISOLATION LEVEL READ COMMITTED;
-- resv_schedule
SELECT sc.performance_id::text, (p.status = 'ON_SALE' AND NOT sc.removed AND sc.starts_at > now()) AS bookable FROM inv_schedules sc JOIN inv_performances p ON p.performance_id = sc.performance_id WHERE sc.schedule_id = :sid::uuid;
-- resv_user_lock (SB_LOCK_RESV_USER_SCHEDULE)
SELECT pg_advisory_xact_lock(hashtextextended('sb-resv-user:' || (lpad(to_hex(:u1::int), 8, '0') || '-0000-4000-8000-0000' || lpad(to_hex(:u2::int), 8, '0')) || ':' || :sid::text, 0));
-- resv_user_counts
SELECT count(*) FILTER (WHERE resv_status(status, expires_at) = 'PENDING_PAYMENT'), COALESCE(sum(cardinality(seat_ids)) FILTER (WHERE resv_status(status, expires_at) IN ('PENDING_PAYMENT', 'CONFIRMED')), 0) FROM reservations WHERE user_id = (lpad(to_hex(:u1::int), 8, '0') || '-0000-4000-8000-0000' || lpad(to_hex(:u2::int), 8, '0'))::uuid AND schedule_id = :sid::uuid AND status IN ('PENDING_PAYMENT', 'CONFIRMED') AND reservation_id <> '00000000-0000-0000-0000-000000000000'::uuid;
\if :go
-- resv_grade_free: the grade's free seats, for the picker (seat_pick.c)
SELECT seat_id, seat_index / 20 AS row, seat_number FROM seats WHERE schedule_id = :sid::uuid AND grade = :grade::text AND status IN ('AVAILABLE', 'HELD') AND (status = 'AVAILABLE' OR held_until <= now()) ORDER BY seat_index;
SAVEPOINT resv_pick;
-- resv_take_skip on the picker's choice (here: the first q free seats in seat
-- order that no other transaction has locked, what the picker ends up with
-- after skipping the busy ones)
WITH l AS (SELECT seat_id FROM seats WHERE schedule_id = :sid::uuid AND grade = :grade::text AND status IN ('AVAILABLE', 'HELD') AND (status = 'AVAILABLE' OR held_until <= now()) ORDER BY seat_index LIMIT :q::int FOR UPDATE SKIP LOCKED), u AS (UPDATE seats SET status = 'HELD', reservation_id = (lpad(to_hex(:r1::int), 8, '0') || '-0000-4000-8000-0000' || lpad(to_hex(:r2::int), 8, '0'))::uuid, held_until = COALESCE(NULL::timestamptz, now() + :ttl::int * interval '1 second'), updated_at = now() FROM l WHERE (SELECT count(*) FROM l) = :q::int AND seats.schedule_id = :sid::uuid AND seats.seat_id = l.seat_id RETURNING seats.seat_id) SELECT (SELECT count(*) FROM u) AS n, (SELECT count(*) FROM l) AS avail \gset
\if :n = :q
RELEASE SAVEPOINT resv_pick;
\set go 0
\else
ROLLBACK TO SAVEPOINT resv_pick;
\set go :avail >= :q
\endif
\endif
\if :go
-- resv_grade_free: the grade's free seats, for the picker (seat_pick.c)
SELECT seat_id, seat_index / 20 AS row, seat_number FROM seats WHERE schedule_id = :sid::uuid AND grade = :grade::text AND status IN ('AVAILABLE', 'HELD') AND (status = 'AVAILABLE' OR held_until <= now()) ORDER BY seat_index;
SAVEPOINT resv_pick;
-- resv_take_skip on the picker's choice (here: the first q free seats in seat
-- order that no other transaction has locked, what the picker ends up with
-- after skipping the busy ones)
WITH l AS (SELECT seat_id FROM seats WHERE schedule_id = :sid::uuid AND grade = :grade::text AND status IN ('AVAILABLE', 'HELD') AND (status = 'AVAILABLE' OR held_until <= now()) ORDER BY seat_index LIMIT :q::int FOR UPDATE SKIP LOCKED), u AS (UPDATE seats SET status = 'HELD', reservation_id = (lpad(to_hex(:r1::int), 8, '0') || '-0000-4000-8000-0000' || lpad(to_hex(:r2::int), 8, '0'))::uuid, held_until = COALESCE(NULL::timestamptz, now() + :ttl::int * interval '1 second'), updated_at = now() FROM l WHERE (SELECT count(*) FROM l) = :q::int AND seats.schedule_id = :sid::uuid AND seats.seat_id = l.seat_id RETURNING seats.seat_id) SELECT (SELECT count(*) FROM u) AS n, (SELECT count(*) FROM l) AS avail \gset
\if :n = :q
RELEASE SAVEPOINT resv_pick;
\set go 0
\else
ROLLBACK TO SAVEPOINT resv_pick;
\set go :avail >= :q
\endif
\endif
\if :go
-- resv_grade_free: the grade's free seats, for the picker (seat_pick.c)
SELECT seat_id, seat_index / 20 AS row, seat_number FROM seats WHERE schedule_id = :sid::uuid AND grade = :grade::text AND status IN ('AVAILABLE', 'HELD') AND (status = 'AVAILABLE' OR held_until <= now()) ORDER BY seat_index;
SAVEPOINT resv_pick;
-- resv_take_skip on the picker's choice (here: the first q free seats in seat
-- order that no other transaction has locked, what the picker ends up with
-- after skipping the busy ones)
WITH l AS (SELECT seat_id FROM seats WHERE schedule_id = :sid::uuid AND grade = :grade::text AND status IN ('AVAILABLE', 'HELD') AND (status = 'AVAILABLE' OR held_until <= now()) ORDER BY seat_index LIMIT :q::int FOR UPDATE SKIP LOCKED), u AS (UPDATE seats SET status = 'HELD', reservation_id = (lpad(to_hex(:r1::int), 8, '0') || '-0000-4000-8000-0000' || lpad(to_hex(:r2::int), 8, '0'))::uuid, held_until = COALESCE(NULL::timestamptz, now() + :ttl::int * interval '1 second'), updated_at = now() FROM l WHERE (SELECT count(*) FROM l) = :q::int AND seats.schedule_id = :sid::uuid AND seats.seat_id = l.seat_id RETURNING seats.seat_id) SELECT (SELECT count(*) FROM u) AS n, (SELECT count(*) FROM l) AS avail \gset
\if :n = :q
RELEASE SAVEPOINT resv_pick;
\set go 0
\else
ROLLBACK TO SAVEPOINT resv_pick;
\set go :avail >= :q
\endif
\endif
\if :go
-- resv_grade_free: the grade's free seats, for the picker (seat_pick.c)
SELECT seat_id, seat_index / 20 AS row, seat_number FROM seats WHERE schedule_id = :sid::uuid AND grade = :grade::text AND status IN ('AVAILABLE', 'HELD') AND (status = 'AVAILABLE' OR held_until <= now()) ORDER BY seat_index;
SAVEPOINT resv_pick;
-- resv_take_skip on the picker's choice (here: the first q free seats in seat
-- order that no other transaction has locked, what the picker ends up with
-- after skipping the busy ones)
WITH l AS (SELECT seat_id FROM seats WHERE schedule_id = :sid::uuid AND grade = :grade::text AND status IN ('AVAILABLE', 'HELD') AND (status = 'AVAILABLE' OR held_until <= now()) ORDER BY seat_index LIMIT :q::int FOR UPDATE SKIP LOCKED), u AS (UPDATE seats SET status = 'HELD', reservation_id = (lpad(to_hex(:r1::int), 8, '0') || '-0000-4000-8000-0000' || lpad(to_hex(:r2::int), 8, '0'))::uuid, held_until = COALESCE(NULL::timestamptz, now() + :ttl::int * interval '1 second'), updated_at = now() FROM l WHERE (SELECT count(*) FROM l) = :q::int AND seats.schedule_id = :sid::uuid AND seats.seat_id = l.seat_id RETURNING seats.seat_id) SELECT (SELECT count(*) FROM u) AS n, (SELECT count(*) FROM l) AS avail \gset
\if :n = :q
RELEASE SAVEPOINT resv_pick;
\set go 0
\else
ROLLBACK TO SAVEPOINT resv_pick;
\set go :avail >= :q
\endif
\endif
\if :go
-- resv_grade_free: the grade's free seats, for the picker (seat_pick.c)
SELECT seat_id, seat_index / 20 AS row, seat_number FROM seats WHERE schedule_id = :sid::uuid AND grade = :grade::text AND status IN ('AVAILABLE', 'HELD') AND (status = 'AVAILABLE' OR held_until <= now()) ORDER BY seat_index;
SAVEPOINT resv_pick;
-- resv_take_skip on the picker's choice (here: the first q free seats in seat
-- order that no other transaction has locked, what the picker ends up with
-- after skipping the busy ones)
WITH l AS (SELECT seat_id FROM seats WHERE schedule_id = :sid::uuid AND grade = :grade::text AND status IN ('AVAILABLE', 'HELD') AND (status = 'AVAILABLE' OR held_until <= now()) ORDER BY seat_index LIMIT :q::int FOR UPDATE SKIP LOCKED), u AS (UPDATE seats SET status = 'HELD', reservation_id = (lpad(to_hex(:r1::int), 8, '0') || '-0000-4000-8000-0000' || lpad(to_hex(:r2::int), 8, '0'))::uuid, held_until = COALESCE(NULL::timestamptz, now() + :ttl::int * interval '1 second'), updated_at = now() FROM l WHERE (SELECT count(*) FROM l) = :q::int AND seats.schedule_id = :sid::uuid AND seats.seat_id = l.seat_id RETURNING seats.seat_id) SELECT (SELECT count(*) FROM u) AS n, (SELECT count(*) FROM l) AS avail \gset
\if :n = :q
RELEASE SAVEPOINT resv_pick;
\set go 0
\else
ROLLBACK TO SAVEPOINT resv_pick;
\set go :avail >= :q
\endif
\endif
\if :n = :q
-- resv_insert: the reservation and its first log row (RESV_COLS; the
-- format spells ":" as chr(58), which pgbench would take for a variable)
WITH s AS (SELECT array_agg(seat_id ORDER BY grade COLLATE "C", seat_index) AS ids, sum(price) AS amount, min(held_until) AS until FROM seats WHERE schedule_id = :sid::uuid AND reservation_id = (lpad(to_hex(:r1::int), 8, '0') || '-0000-4000-8000-0000' || lpad(to_hex(:r2::int), 8, '0'))::uuid), r AS (INSERT INTO reservations (reservation_id, user_id, performance_id, schedule_id, seat_ids, amount, status, expires_at, attendee_name, attendee_phone) SELECT (lpad(to_hex(:r1::int), 8, '0') || '-0000-4000-8000-0000' || lpad(to_hex(:r2::int), 8, '0'))::uuid, (lpad(to_hex(:u1::int), 8, '0') || '-0000-4000-8000-0000' || lpad(to_hex(:u2::int), 8, '0'))::uuid, :perf::uuid, :sid::uuid, s.ids, s.amount, 'PENDING_PAYMENT', s.until, 'Buyer', '010-0000-0000' FROM s RETURNING *), l AS (INSERT INTO reservation_log (reservation_id, to_status, actor, reason) SELECT reservation_id, 'PENDING_PAYMENT', user_id::text, 'held (best available)' FROM r) SELECT reservation_id::text AS reservation_id, user_id::text AS user_id, performance_id::text AS performance_id, schedule_id::text AS schedule_id, array_to_string(seat_ids, E'\x1f') AS seat_list, amount, resv_status(status, expires_at) AS status, status AS stored_status, to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24' || chr(58) || 'MI' || chr(58) || 'SS.MS"Z"') AS expires_at, attendee_name, attendee_phone, payment_id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24' || chr(58) || 'MI' || chr(58) || 'SS.MS"Z"') AS created_at, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24' || chr(58) || 'MI' || chr(58) || 'SS.MS"Z"') AS updated_at, version, (extract(epoch FROM created_at) * 1000000)::bigint AS cursor_us FROM r;
-- sb_outbox_insert + sb_outbox_notify (resv_emit -> sb_outbox_add)
INSERT INTO sb_outbox (event_id, topic, type, aggregate_id, envelope, occurred_at, published_at) VALUES (gen_random_uuid(), 'sb.reservation.pgbench', 'reservation.created', (lpad(to_hex(:r1::int), 8, '0') || '-0000-4000-8000-0000' || lpad(to_hex(:r2::int), 8, '0')), decode(repeat('ab', 300), 'hex'), now(), now());
SELECT pg_notify('sb_outbox', '');
COMMIT;
\else
ROLLBACK;
\endif
