-- The admin audit log of the whole platform (services/auth/audit.c): one row
-- per audit.admin_action event, whichever service wrote it (sb_audit_record
-- in that service's change transaction, common/src/audit.c). Filled through
-- the inbox, so a redelivered event is stored once (and the event id is the
-- key besides). Read by GET /admin/audit, newest first, keyset pages on
-- (occurred_at, event_id).
CREATE TABLE admin_audit (
    event_id uuid PRIMARY KEY,
    admin_id text NOT NULL,
    service text NOT NULL,
    action text NOT NULL,
    target_type text NOT NULL,
    target_id text NOT NULL,
    reason text NOT NULL,
    trace_id text NOT NULL DEFAULT '',
    occurred_at timestamptz NOT NULL,
    before text NOT NULL DEFAULT '',
    after text NOT NULL DEFAULT '',
    stored_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX admin_audit_recent ON admin_audit (occurred_at DESC, event_id DESC);
CREATE INDEX admin_audit_admin ON admin_audit (admin_id, occurred_at DESC, event_id DESC);
CREATE INDEX admin_audit_target ON admin_audit (target_id, occurred_at DESC, event_id DESC);
