-- The hold of one buyer choosing seats (bench/flash_sale.c --mode seats), as
-- the reservation service runs it (services/reservation/holds.c resv_create,
-- chosen seats: the statements and their order, one round trip each), for
-- pgbench -M prepared: the database's own ceiling for the same SQL.
-- bench/flash_sale_pgbench.sh runs it; variables (-D): sid (schedule), perf
-- (its performance), grade, q (seats per buyer), blocks (seats / q), ttl.
--
-- The buyer asks for block :blk of q neighbouring seats, as the C program's
-- buyers do. The service makes the reservation and user ids in the process
-- (no round trip); here they are made of random integers. Two departures:
-- the outbox row is written with published_at set (a junk envelope must
-- never reach the relay and Kafka), so the relay's later UPDATE is not part
-- of this figure; and the event envelope is a fixed 300 bytes.
\set blk random(0, :blocks - 1)
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
-- resv_take: the guarded UPDATE (RETURNING seat_id, counted here)
WITH t AS (UPDATE seats SET status = 'HELD', reservation_id = (lpad(to_hex(:r1::int), 8, '0') || '-0000-4000-8000-0000' || lpad(to_hex(:r2::int), 8, '0'))::uuid, held_until = COALESCE(NULL::timestamptz, now() + :ttl::int * interval '1 second'), updated_at = now() WHERE schedule_id = :sid::uuid AND seat_id = ANY(ARRAY(SELECT :grade::text || '-' || inv_row_label(k / 20) || '-' || (k % 20 + 1) FROM generate_series(:blk::int * :q::int, :blk::int * :q::int + :q::int - 1) k)) AND (status = 'AVAILABLE' OR (status = 'HELD' AND held_until <= now())) RETURNING seat_id) SELECT count(*) AS n FROM t \gset
\if :n = :q
-- resv_insert: the reservation and its first log row (RESV_COLS; the
-- format spells ":" as chr(58), which pgbench would take for a variable)
WITH s AS (SELECT array_agg(seat_id ORDER BY grade COLLATE "C", seat_index) AS ids, sum(price) AS amount, min(held_until) AS until FROM seats WHERE schedule_id = :sid::uuid AND reservation_id = (lpad(to_hex(:r1::int), 8, '0') || '-0000-4000-8000-0000' || lpad(to_hex(:r2::int), 8, '0'))::uuid), r AS (INSERT INTO reservations (reservation_id, user_id, performance_id, schedule_id, seat_ids, amount, status, expires_at, attendee_name, attendee_phone) SELECT (lpad(to_hex(:r1::int), 8, '0') || '-0000-4000-8000-0000' || lpad(to_hex(:r2::int), 8, '0'))::uuid, (lpad(to_hex(:u1::int), 8, '0') || '-0000-4000-8000-0000' || lpad(to_hex(:u2::int), 8, '0'))::uuid, :perf::uuid, :sid::uuid, s.ids, s.amount, 'PENDING_PAYMENT', s.until, 'Buyer', '010-0000-0000' FROM s RETURNING *), l AS (INSERT INTO reservation_log (reservation_id, to_status, actor, reason) SELECT reservation_id, 'PENDING_PAYMENT', user_id::text, 'held' FROM r) SELECT reservation_id::text AS reservation_id, user_id::text AS user_id, performance_id::text AS performance_id, schedule_id::text AS schedule_id, array_to_string(seat_ids, E'\x1f') AS seat_list, amount, resv_status(status, expires_at) AS status, status AS stored_status, to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24' || chr(58) || 'MI' || chr(58) || 'SS.MS"Z"') AS expires_at, attendee_name, attendee_phone, payment_id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24' || chr(58) || 'MI' || chr(58) || 'SS.MS"Z"') AS created_at, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24' || chr(58) || 'MI' || chr(58) || 'SS.MS"Z"') AS updated_at, version, (extract(epoch FROM created_at) * 1000000)::bigint AS cursor_us FROM r;
-- sb_outbox_insert + sb_outbox_notify (resv_emit -> sb_outbox_add)
INSERT INTO sb_outbox (event_id, topic, type, aggregate_id, envelope, occurred_at, published_at) VALUES (gen_random_uuid(), 'sb.reservation.pgbench', 'reservation.created', (lpad(to_hex(:r1::int), 8, '0') || '-0000-4000-8000-0000' || lpad(to_hex(:r2::int), 8, '0')), decode(repeat('ab', 300), 'hex'), now(), now());
SELECT pg_notify('sb_outbox', '');
COMMIT;
\else
-- resv_existing (the refusal names the seats), then the call rolls back
SELECT seat_id FROM seats WHERE schedule_id = :sid::uuid AND seat_id = ANY(ARRAY(SELECT :grade::text || '-' || inv_row_label(k / 20) || '-' || (k % 20 + 1) FROM generate_series(:blk::int * :q::int, :blk::int * :q::int + :q::int - 1) k));
ROLLBACK;
\endif
