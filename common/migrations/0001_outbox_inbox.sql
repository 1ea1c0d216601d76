-- The tables every service's database has (see sb/events.h): the outbox its
-- state changes write events to, the inbox of events it has handled, and the
-- events it could not handle. Version 1 is the DDL events.c carried inline
-- before the migrations moved here, byte for byte in effect: databases that
-- applied it then have (common, 1) recorded and skip it.
CREATE TABLE sb_outbox (
  id bigserial PRIMARY KEY,
  event_id uuid NOT NULL UNIQUE,
  topic text NOT NULL,
  type text NOT NULL,
  aggregate_id text NOT NULL,
  envelope bytea NOT NULL,
  occurred_at timestamptz NOT NULL DEFAULT now(),
  published_at timestamptz);
CREATE INDEX sb_outbox_unpublished ON sb_outbox (id) WHERE published_at IS NULL;
CREATE TABLE sb_inbox (
  event_id uuid PRIMARY KEY,
  type text NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE sb_dead_letters (
  id bigserial PRIMARY KEY,
  topic text NOT NULL,
  event_id text,
  envelope bytea NOT NULL,
  error text NOT NULL,
  failed_at timestamptz NOT NULL DEFAULT now());
