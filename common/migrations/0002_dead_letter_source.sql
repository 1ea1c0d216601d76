-- A dead letter says what it was (the envelope's type when it decodes) and
-- where it came from: 'kafka' (the consumer; topic is the Kafka topic) or
-- 'DeliverEvent' (POST /events/{serviceId}; topic is the type's). Rows from
-- before this migration came from the consumer.
ALTER TABLE sb_dead_letters
  ADD COLUMN IF NOT EXISTS type text,
  ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT 'kafka';
