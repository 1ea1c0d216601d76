-- Payments (docs/payments.md section 2). Idempotency-Key answers are the
-- runtime's table (sb_idempotency, service_call.c), not one of ours.

-- One row per attempt: a new attempt (a declined card, a provider error) is
-- a new payment with a new provider key. card_last4 is all that is kept of
-- the card.
CREATE TABLE payments (
    payment_id uuid PRIMARY KEY,
    reservation_id uuid NOT NULL,
    user_id uuid NOT NULL,
    amount bigint NOT NULL CHECK (amount > 0),
    method text NOT NULL DEFAULT 'CARD',
    status text NOT NULL
        CHECK (status IN ('PENDING', 'APPROVED', 'DECLINED', 'CANCELLED', 'REFUNDED', 'DISPUTED')),
    card_last4 text NOT NULL CHECK (card_last4 ~ '^[0-9]{4}$'),
    provider_ref text,                -- the provider's charge id (ch_...), once known
    provider_key text NOT NULL UNIQUE, -- the attempt's Idempotency-Key at the provider: pay_<payment_id>
    reason text,                      -- why declined / refunded / disputed / corrected
    refunded_amount bigint NOT NULL DEFAULT 0,
    refund_requested_at timestamptz,  -- a refund is wanted (the payment-refunds job does it)
    refund_reason text,               -- sent with it (the same bytes on every retry)
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- At most one payment in flight or approved per reservation: a second
-- attempt while one is PENDING or APPROVED is refused (409).
CREATE UNIQUE INDEX payments_one_live ON payments (reservation_id) WHERE status IN ('PENDING', 'APPROVED');
CREATE INDEX payments_reservation ON payments (reservation_id, created_at DESC);
CREATE INDEX payments_user ON payments (user_id, created_at DESC, payment_id DESC);
CREATE INDEX payments_created ON payments (created_at DESC, payment_id DESC);
CREATE INDEX payments_provider_ref ON payments (provider_ref) WHERE provider_ref IS NOT NULL;
CREATE INDEX payments_pending ON payments (created_at) WHERE status = 'PENDING';
CREATE INDEX payments_refund_wanted ON payments (refund_requested_at)
    WHERE refund_requested_at IS NOT NULL AND status = 'APPROVED';

-- Every state change: from (NULL for the first), to, who (a user id, an
-- admin's, "provider", "system"), why.
CREATE TABLE payment_log (
    id bigserial PRIMARY KEY,
    payment_id uuid NOT NULL REFERENCES payments (payment_id),
    from_status text,
    to_status text NOT NULL,
    actor text NOT NULL,
    reason text,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_log_payment ON payment_log (payment_id, id);

-- Provider webhooks seen (by the provider's event id): a second delivery
-- has no second effect.
CREATE TABLE webhook_events (
    event_id text PRIMARY KEY,
    type text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
