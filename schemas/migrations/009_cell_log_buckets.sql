-- kaoping schema, migration 9: the cell log by (period, bucket of units) (issue 9).
--
-- Migration 007's log had a row per (scheme, period, unit) and transaction that changed cells
-- of it: an observation changes a leaf and its ancestors in its month, quarter, half and year,
-- so on random cells a group of 300 observations at 10,000 obs/s inserted ~600 log rows of ~5
-- cells (1.1 rows per observation, and as many deleted again by the folds). Each row cost a
-- heap tuple and an entry in the three-text primary key: together they took more of the
-- backend than the observations' COPY.
--
-- Now a transaction writes one log row per (scheme, period, bucket) it changed: a bucket is a
-- run of scr__cells_log_units (16) units in the scheme's unit order, the units unit / 16. Such
-- a group writes ~75 rows of ~45 cells (at most 240 a row, so that a row stays within a page).
-- A bucket's rows fold together once 32 to 63 transactions wrote it rows (scorer/scr_cells.c):
-- the logged parts of the bucket's units are rewritten whole in indicator_cells and the
-- bucket's log rows deleted, in the same transaction. A fold rewrites at most 16 units' parts,
-- so no one transaction folds a whole period.
--
--   indicator_cell_log  one row per (scheme, period, bucket) and transaction that changed
--                       cells of it without folding: units are the units with a cell in the
--                       row, u[j] the index (from 1) in units of cell j's unit; cell[j],
--                       value[j], score[j], n_obs[j] and updated_us as in migration 007 (cell:
--                       the position in the layout; n_obs 0: the cell no longer exists). seq
--                       orders the rows: a later row wins, and any row wins over the parts.
--
-- The rows of 007 move here one to one, units = {unit}, in bucket -1: a scorer that starts
-- finds them outside its buckets and folds them all once.
--
-- The read model does not change (PROTOCOL.md "Read model"). A reader's filter on the period
-- reaches the log's primary key; one on the unit reads the period's (or the scheme's) log rows
-- and keeps that unit's entries.

DROP VIEW kp_indicator_score;
ALTER TABLE indicator_cell_log RENAME TO indicator_cell_log_007;
ALTER SEQUENCE indicator_cell_log_seq_seq RENAME TO indicator_cell_log_007_seq_seq;

CREATE TABLE indicator_cell_log (
    scheme      text NOT NULL,
    period      text NOT NULL,
    bucket      integer NOT NULL,
    seq         bigserial,
    layout      integer NOT NULL,
    units       text[] NOT NULL,
    u           integer[] NOT NULL,
    cell        integer[] NOT NULL,
    value       double precision[] NOT NULL,
    score       double precision[] NOT NULL,
    n_obs       integer[] NOT NULL,
    updated_us  bigint NOT NULL,
    PRIMARY KEY (scheme, period, bucket, seq),
    CHECK (cardinality(u) = cardinality(cell) AND cardinality(cell) = cardinality(value)
           AND cardinality(value) = cardinality(score) AND cardinality(score) = cardinality(n_obs))
) WITH (toast_tuple_target = 8160);

INSERT INTO indicator_cell_log (scheme, period, bucket, seq, layout, units, u, cell, value, score,
                                n_obs, updated_us)
SELECT scheme, period, -1, seq, layout, ARRAY[unit], array_fill(1, ARRAY[cardinality(cell)]),
       cell, value, score, n_obs, updated_us
  FROM indicator_cell_log_007;
SELECT setval('indicator_cell_log_seq_seq',
              greatest((SELECT last_value FROM indicator_cell_log_007_seq_seq),
                       (SELECT coalesce(max(seq), 1) FROM indicator_cell_log)));
DROP TABLE indicator_cell_log_007;

-- DISTINCT ON keeps the latest entry of each cell.
CREATE VIEW kp_indicator_score AS
SELECT s.scheme, s.period, s.unit, s.indicator, i.name AS indicator_name,
       NULLIF(s.value, 'NaN') AS value, s.score, s.n_obs,
       timestamptz 'epoch' + s.us * interval '1 microsecond' AS updated_at
  FROM (SELECT DISTINCT ON (a.scheme, a.period, a.unit, a.indicator)
               a.scheme, a.period, a.unit, a.indicator, a.value, a.score, a.n_obs, a.us
          FROM (SELECT c.scheme, c.period, c.unit, t.indicator, t.value, t.score, t.n_obs,
                       t.us, 0::bigint AS seq
                  FROM indicator_cells c
                  JOIN indicator_layout l ON l.layout = c.layout
                 CROSS JOIN LATERAL unnest(l.codes[c.base + 1:c.base + cardinality(c.n_obs)],
                                           c.value, c.score, c.n_obs, c.updated_us)
                                    AS t(indicator, value, score, n_obs, us)
                UNION ALL
                SELECT g.scheme, g.period, g.units[t.u], l.codes[t.k + 1], t.value, t.score,
                       t.n_obs, g.updated_us, g.seq
                  FROM indicator_cell_log g
                  JOIN indicator_layout l ON l.layout = g.layout
                 CROSS JOIN LATERAL unnest(g.u, g.cell, g.value, g.score, g.n_obs)
                                    AS t(u, k, value, score, n_obs)) a
         ORDER BY a.scheme, a.period, a.unit, a.indicator, a.seq DESC) s
  JOIN kp_indicator i ON i.scheme = s.scheme AND i.indicator = s.indicator
 WHERE s.n_obs > 0;

-- DROP + CREATE loses the view's grants (migration 4): the reader gets it back. The writer's
-- rights on the new table and its sequence come from 4's default privileges.
DO $grant$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kaoping_reader') THEN
        GRANT SELECT ON kp_indicator_score TO kaoping_reader;
    END IF;
END
$grant$;
