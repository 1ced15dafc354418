-- kaoping schema, migration 3: alert lifecycle and delivery (issue 7).
--
-- The `alert` table of 001 becomes the source of truth of every alert's lifecycle: one row per
-- occurrence of an alert identity (rule + labels {scheme, unit, indicator, period, severity},
-- or {scheme, src, adapter, severity} for source_stale), written by the scorer in the
-- transaction of the batch (or of the timer pass) that caused the transition
-- (scorer/scr_alert.c). A row is `pending`, then `firing` (fired_at = Alertmanager's
-- startsAt, never changed), then `resolved` (resolved_at); a pending row whose condition
-- clears before it fires is deleted. A later occurrence of the same identity is a new row.
-- The Alertmanager sender (scorer/scr_alert_am.c) records in am_state/am_sent_at what
-- Alertmanager has accepted, so nothing is lost while it is down.

ALTER TABLE alert
    ADD COLUMN kind        text NOT NULL DEFAULT '',     -- the rule's kind: progress_lag, ...
    ADD COLUMN fingerprint text NOT NULL DEFAULT '',     -- rule|severity|unit|indicator|period|src|adapter
    ADD COLUMN labels      jsonb NOT NULL DEFAULT '{}',  -- the identity's labels, as sent to Alertmanager
    ADD COLUMN pending_at  timestamptz,                  -- when the condition (or the event) started
    ADD COLUMN value       double precision,             -- the measure behind it (lag, total, z, ...)
    ADD COLUMN ref_value   double precision,             -- event rules: what the event is measured against
    ADD COLUMN updated_at  timestamptz NOT NULL DEFAULT now(), -- last transition (server clock)
    ADD COLUMN am_state    text,                         -- the state Alertmanager last accepted
    ADD COLUMN am_sent_at  timestamptz,                  -- when (server clock)
    ADD COLUMN am_error    text;                         -- the last refusal, if any

-- At most one open occurrence per identity.
CREATE UNIQUE INDEX alert_open ON alert (scheme, fingerprint)
    WHERE state IN ('pending', 'firing');
-- The sender's scans: what Alertmanager has not confirmed, and the recent resolutions it
-- re-sends for a while.
CREATE INDEX alert_unsent ON alert (scheme)
    WHERE fired_at IS NOT NULL AND (state <> 'resolved' OR am_state IS DISTINCT FROM 'resolved');
CREATE INDEX alert_resolved_recent ON alert (updated_at)
    WHERE state = 'resolved' AND fired_at IS NOT NULL;

-- The PROTOCOL.md columns first, unchanged; labels and the lifecycle times after them.
CREATE OR REPLACE VIEW kp_alert AS
SELECT id, scheme, rule, severity, unit, indicator, period, state, fired_at, resolved_at, summary,
       kind, labels, pending_at, updated_at
  FROM alert;
