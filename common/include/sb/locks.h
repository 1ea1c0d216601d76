/* Every PostgreSQL advisory lock key the platform takes, named in one place.
 *
 * Advisory locks are one key space per database (the maintenance database
 * for SB_LOCK_CREATE_DATABASE), and a key means the same thing to every
 * process that takes it, whatever build it runs: a key here is never
 * renumbered, so replicas of two versions still exclude each other during a
 * rolling update. All keys are the single bigint form (pg_advisory_*(bigint));
 * the hashed families spread over 2^64 values, so they do not meet the fixed
 * keys or each other in practice.
 *
 * Fixed keys (bigint literals, for SQL text and for bind parameters):
 *   SB_LOCK_MIGRATE        session lock around applying a database's
 *                          migrations (sb_pg_migrate): one migrator at a time
 *   SB_LOCK_OUTBOX_RELAY   the outbox relay: one per database (relay.c).
 *                          Held as a session lock by the relay job's own
 *                          connection; older builds took it per transaction
 *                          (pg_try_advisory_xact_lock) - the same lock, so
 *                          the two exclude each other.
 *   SB_LOCK_AUTH_DENYLIST  auth: every transaction that writes a revocation
 *                          (and its Redis entry) holds it shared; the
 *                          denylist rebuild holds it exclusively, so it reads
 *                          the table only after every revocation in flight
 *                          has committed, and none is written while it runs
 *                          (services/auth/revocations.c), per transaction
 *
 * Hashed families: SQL expressions of one text argument (an SQL expression
 * such as "$1" or "$1::uuid::text"), to write inside pg_advisory_*():
 *   SB_LOCK_CREATE_DATABASE(name)   CREATE DATABASE <name> (pg.c), session
 *                                   lock on the maintenance database
 *   SB_LOCK_JOB(name)               a job of the job table (jobs.c), by its
 *                                   name, per tick (xact) or per leadership
 *                                   (session); see sb/jobs.h
 *   SB_LOCK_AUTH_USER(user_id)      auth: revocations and rotations of one
 *                                   user's refresh tokens (tokens.c,
 *                                   member_events.c), per transaction
 *   SB_LOCK_INV_PERFORMANCE(id)     reservation: the inventory events of one
 *                                   performance (inventory_events.c), per
 *                                   transaction
 *   SB_LOCK_RESV_USER_SCHEDULE(user, schedule)
 *                                   reservation: one user's holds of one
 *                                   schedule (holds.c, booking.c), per
 *                                   transaction, so the per-user limits are
 *                                   checked against committed holds only */
#ifndef SB_LOCKS_H
#define SB_LOCKS_H

#define SB_LOCK_MIGRATE "7311001"
#define SB_LOCK_OUTBOX_RELAY "7311002"
#define SB_LOCK_AUTH_DENYLIST "7311003"

#define SB_LOCK_CREATE_DATABASE(name) "hashtext('sb:create-database:' || " name ")"
#define SB_LOCK_JOB(name) "hashtextextended('sb:job:' || " name ", 0)"
#define SB_LOCK_AUTH_USER(user_id) "hashtextextended(" user_id ", 1)"
#define SB_LOCK_INV_PERFORMANCE(id) "hashtextextended('sb-inv:' || " id ", 0)"
#define SB_LOCK_RESV_USER_SCHEDULE(user, schedule)                                                      \
    "hashtextextended('sb-resv-user:' || " user " || ':' || " schedule ", 0)"

#endif
