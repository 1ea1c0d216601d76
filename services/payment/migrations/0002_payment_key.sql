-- The member's Idempotency-Key a payment was made under: a request that
-- takes over a claim left unanswered by a process that died (the runtime,
-- after IDEMPOTENCY_STALE_S) finds the payment its first run made and
-- answers it, instead of paying again.
ALTER TABLE payments ADD COLUMN idempotency_key text;
CREATE UNIQUE INDEX payments_user_key ON payments (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
