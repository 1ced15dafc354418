-- kaoping schema, migration 7: a log of changed cells beside the part rows (issue 9).
--
-- Migration 005 stores a (scheme, period, unit)'s cells as parts of 64, and the scorer rewrote
-- each part a transaction changed whole (~1.9 kB). An observation changes its leaf and a few
-- ancestors in its month, quarter, half and year, so a group of 500 random observations at
-- 10,000 obs/s rewrote ~1,600 parts (3.2 rows and 5.8 kB of WAL per observation) for about
-- 5,000 changed cells. Now the scorer writes, per (scheme, period, unit) a transaction changed,
-- one row holding only the cells it changed (~600 rows of ~9 cells for such a group), and
-- folds the log into the parts (rewrites them whole and deletes the log rows, in the same
-- transaction) once a (scheme, period, unit) has 16 to 31 rows in it (scorer/scr_cells.c).
-- A scorer that starts keeps a log that equals its engine, and folds one that does not.
--
--   indicator_cell_log  one row per (scheme, period, unit) and transaction that changed cells
--                       of it without folding: cell[j] is the cell's position in the layout
--                       (codes[cell[j] + 1], as in indicator_cells), value, score and n_obs as
--                       there (n_obs 0: the cell no longer exists), updated_us the
--                       transaction's now() for all its cells. seq orders the rows: a later row
--                       wins, and any row wins over the part rows.
--
-- The read model does not change (PROTOCOL.md "Read model"): kp_indicator_score shows, for
-- every cell, its latest log entry if it has one, else its part's; a cell exists when that
-- shows n_obs > 0.

CREATE TABLE indicator_cell_log (
    scheme      text NOT NULL,
    period      text NOT NULL,
    unit        text NOT NULL,
    seq         bigserial,
    layout      integer NOT NULL,
    cell        integer[] NOT NULL,
    value       double precision[] NOT NULL,
    score       double precision[] NOT NULL,
    n_obs       integer[] NOT NULL,
    updated_us  bigint NOT NULL,
    PRIMARY KEY (scheme, period, unit, seq)
);

DROP VIEW kp_indicator_score;

-- DISTINCT ON keeps the latest entry of each cell; its key columns lead, so a reader's
-- `scheme = … AND period = … AND unit = …` reaches both tables' indexes.
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
                SELECT g.scheme, g.period, g.unit, l.codes[t.k + 1], t.value, t.score, t.n_obs,
                       g.updated_us, g.seq
                  FROM indicator_cell_log g
                  JOIN indicator_layout l ON l.layout = g.layout
                 CROSS JOIN LATERAL unnest(g.cell, g.value, g.score, g.n_obs)
                                    AS t(k, value, score, n_obs)) a
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
