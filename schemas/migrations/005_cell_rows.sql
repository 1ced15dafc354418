-- kaoping schema, migration 5: indicator scores stored as arrays, a row per part of a
-- (scheme, period, unit) (issue 9: each observation changes its leaf and its ancestors in its
-- month, quarter, half and year, so a batch of 1,000 upserted ~8,400 rows of indicator_score,
-- 59% of the batch's time).
--
-- The read model does not change (PROTOCOL.md "Read model"): kp_indicator_score keeps its
-- columns, types, collations and meaning; only the tables behind it do.
--
--   indicator_layout  the order of a scheme's nodes in the arrays: codes[k] is node k of the
--                     scheme file the scorer loaded (node 0, the root, is not a cell; so for a
--                     scorer's own layout codes[k] = the kp_indicator row with ord = k). A
--                     scorer looks its layout up (or adds it) whenever it loads a scheme; a
--                     changed scheme file gets a new layout and rows written before keep
--                     pointing at the one they were written with, so the view never reads an
--                     array in the wrong order (the scorer then rewrites them: scr_cells.c).
--                     Layouts are never deleted (one per edit of a scheme file's node list);
--                     two scorers adding the same one at once make two equal rows: harmless.
--   indicator_cells   one row per part of a (scheme, period, unit): the cells of the layout's
--                     codes base+1 .. base+cardinality (the scorer's parts are 64 cells, the
--                     last one padded), present while one of its cells exists. Parallel arrays
--                     without NULLs (the scorer's write slices its parameters, which PostgreSQL
--                     does in constant time only without NULLs): value (NaN where the view shows
--                     NULL: inner nodes), score, n_obs (0: the cell does not exist and is not in
--                     the view, as a missing indicator_score row was; its other elements are
--                     then 0 or NaN) and updated_us, each cell's own updated_at in microseconds
--                     since the Unix epoch (server clock: the transaction's now(), moved only
--                     when the cell's value, score or n_obs changes, as before).
--
-- The scorer writes every part a batch changed whole (scorer/scr_cells.c): a batch of 1,000
-- writes ~1,400 rows instead of ~8,400, each ~1.8 kB, below the TOAST threshold. A whole
-- (unit, period) of a 337-node scheme (9.4 kB) was measured too: half the statement time of
-- indicator_score for big batches, but TOASTed (compressed, stored out of line) at every write,
-- and slower than before for batches of 100, which touch as many (unit, period)s.
--
-- The key columns keep the database's default collation, as the view's columns always had
-- (an index of another collation would not serve a reader's `unit = '…'`); with a few hundred
-- rows per batch the collation's cost is gone anyway.

CREATE TABLE indicator_layout (
    layout      serial PRIMARY KEY,
    scheme      text NOT NULL,
    codes       text[] NOT NULL
);
CREATE INDEX indicator_layout_scheme ON indicator_layout (scheme);

CREATE TABLE indicator_cells (
    scheme      text NOT NULL,
    period      text NOT NULL,
    unit        text NOT NULL,
    base        integer NOT NULL,
    layout      integer NOT NULL,
    value       double precision[] NOT NULL,
    score       double precision[] NOT NULL,
    n_obs       integer[] NOT NULL,
    updated_us  bigint[] NOT NULL,
    PRIMARY KEY (scheme, period, unit, base)
);

-- TOAST: a part stays inline. Should a row be larger (a reader's hand-made row), lz4 where the
-- server has it: pglz took 37% of the backend when whole (unit, period) rows were TOASTed.
DO $lz4$
BEGIN
    ALTER TABLE indicator_cells
        ALTER COLUMN value SET COMPRESSION lz4, ALTER COLUMN score SET COMPRESSION lz4,
        ALTER COLUMN n_obs SET COMPRESSION lz4, ALTER COLUMN updated_us SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    NULL;
END
$lz4$;

-- The existing rows, in each scheme's node order as recorded in kp_indicator.ord (a scorer
-- whose scheme file orders them otherwise rewrites the rows in its own layout when it
-- starts). Rows of indicators kp_indicator does not know were not in the view; they go.
INSERT INTO indicator_layout (scheme, codes)
SELECT scheme, array_agg(indicator ORDER BY ord NULLS LAST, indicator)
  FROM kp_indicator
 GROUP BY scheme;

INSERT INTO indicator_cells (scheme, period, unit, base, layout, value, score, n_obs,
                             updated_us)
SELECT k.scheme, k.period, k.unit, (t.pos - 1) / 64 * 64, l.layout,
       array_agg(coalesce(s.value, 'NaN') ORDER BY t.pos),
       array_agg(coalesce(s.score, 0) ORDER BY t.pos),
       array_agg(coalesce(s.n_obs, 0) ORDER BY t.pos),
       array_agg(coalesce((extract(epoch FROM s.updated_at) * 1000000)::bigint, 0) ORDER BY t.pos)
  FROM (SELECT DISTINCT scheme, period, unit FROM indicator_score) k
  JOIN indicator_layout l ON l.scheme = k.scheme
 CROSS JOIN LATERAL unnest(l.codes) WITH ORDINALITY AS t(code, pos)
  LEFT JOIN indicator_score s
         ON s.scheme = k.scheme AND s.period = k.period AND s.unit = k.unit
        AND s.indicator = t.code AND s.n_obs > 0
 GROUP BY k.scheme, k.period, k.unit, (t.pos - 1) / 64, l.layout
HAVING count(s.indicator) > 0;

DROP VIEW kp_indicator_score;
DROP TABLE indicator_score;

-- A cell is in the view when it exists (n_obs > 0), exactly as a row of indicator_score was.
CREATE VIEW kp_indicator_score AS
SELECT c.scheme, c.period, c.unit, t.indicator, i.name AS indicator_name,
       NULLIF(t.value, 'NaN') AS value, t.score,
       t.n_obs, timestamptz 'epoch' + t.us * interval '1 microsecond' AS updated_at
  FROM indicator_cells c
  JOIN indicator_layout l ON l.layout = c.layout
 CROSS JOIN LATERAL unnest(l.codes[c.base + 1:c.base + cardinality(c.n_obs)], c.value,
                           c.score, c.n_obs, c.updated_us) AS t(indicator, value, score, n_obs, us)
  JOIN kp_indicator i ON i.scheme = c.scheme AND i.indicator = t.indicator
 WHERE t.n_obs > 0;

-- DROP + CREATE loses the view's grants (migration 4): the reader gets it back. The writer's
-- rights on the new tables and the layout sequence come from 4's default privileges.
DO $grant$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kaoping_reader') THEN
        GRANT SELECT ON kp_indicator_score TO kaoping_reader;
    END IF;
END
$grant$;
