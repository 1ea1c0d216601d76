-- Notices and their e-mails, and the projections the texts are made from.
--
-- Projections (from events, never asked of another service at render time):
--   performances/schedules  from performance.approved/.changed/.cancelled
--                            (title, planner, schedule times and venues)
--   holdings                 one row per reservation from reservation.*
--                            events: who holds which seats of which
--                            schedule; performance.changed/.cancelled
--                            notify the holders found here.
CREATE TABLE performances (
  performance_id uuid PRIMARY KEY,
  planner_id     uuid,
  title          text NOT NULL,
  version        bigint NOT NULL DEFAULT 0,
  cancelled      boolean NOT NULL DEFAULT false
);

CREATE TABLE schedules (
  schedule_id    uuid PRIMARY KEY,
  performance_id uuid NOT NULL,
  starts_at      timestamptz,
  venue          text NOT NULL DEFAULT ''
);
CREATE INDEX schedules_performance ON schedules (performance_id);

CREATE TABLE holdings (
  reservation_id uuid PRIMARY KEY,
  user_id        uuid NOT NULL,
  performance_id uuid,
  schedule_id    uuid,
  seats          text NOT NULL DEFAULT '',
  amount         bigint NOT NULL DEFAULT 0,
  status         text NOT NULL,
  payment_id     uuid,
  version        bigint NOT NULL DEFAULT 0
);
CREATE INDEX holdings_performance ON holdings (performance_id) WHERE status IN ('PENDING_PAYMENT', 'CONFIRMED');

-- One notice per affected user per event (event_id NULL: an explicit notice
-- sent through the API). The facts are those of the event; the title and
-- the schedule come from the projections when the text is made.
CREATE TABLE notices (
  notice_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  event_id       uuid,
  user_id        uuid NOT NULL,
  kind           text NOT NULL,
  reservation_id uuid,
  payment_id     uuid,
  performance_id uuid,
  schedule_id    uuid,
  seats          text NOT NULL DEFAULT '',
  amount         bigint,
  reason         text NOT NULL DEFAULT '',
  deadline       timestamptz,
  headline       text NOT NULL DEFAULT '',
  message        text NOT NULL DEFAULT '',
  created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
  read_at        timestamptz,
  UNIQUE (event_id, user_id)
);
CREATE INDEX notices_inbox ON notices (user_id, created_at DESC, notice_id DESC);
CREATE INDEX notices_unread ON notices (user_id) WHERE read_at IS NULL;

-- The delivery queue: one row per notice, inserted with it. The mail job
-- (mail.c) records an attempt (SENDING, attempts + 1) and commits before
-- it talks to the relay, then marks SENT, or PENDING again with next_at
-- backed off, or FAILED after MAIL_MAX_ATTEMPTS.
CREATE TABLE mail_queue (
  notice_id   uuid PRIMARY KEY REFERENCES notices,
  status      text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'SENDING', 'SENT', 'FAILED')),
  attempts    int NOT NULL DEFAULT 0,
  next_at     timestamptz NOT NULL DEFAULT now(),
  attempt_at  timestamptz,
  sent_at     timestamptz,
  recipient   text NOT NULL DEFAULT '',
  last_error  text NOT NULL DEFAULT ''
);
CREATE INDEX mail_queue_due ON mail_queue (next_at) WHERE status IN ('PENDING', 'SENDING');
CREATE INDEX mail_queue_failed ON mail_queue (notice_id) WHERE status = 'FAILED';

-- Payments from payment.* events: who paid what, for SendPaymentNotice and
-- the texts of payment notices.
CREATE TABLE payments (
  payment_id     uuid PRIMARY KEY,
  user_id        uuid NOT NULL,
  reservation_id uuid,
  amount         bigint NOT NULL DEFAULT 0,
  status         text NOT NULL
);
