-- kaoping schema, migration 8: a period's unit totals in one row (issue 9).
--
-- unit_score held one row per (scheme, period, unit). A change of one total usually moves
-- ranks in its group too, so on random cells a group of ~400 observations at 10,000 obs/s
-- upserted ~600 of them (1.5 rows per observation), which cost as much as the cell log.
-- Now a (scheme, period) is one row holding every unit's total, coverage, rank, grade, veto
-- and updated_at as arrays, in the scheme's unit order. A transaction rewrites the row of each
-- period whose totals it changed, whole, from the engine (scorer/scr_totals.c): ~20 rows for
-- such a group. The scorer keeps each entry's updated_at, so a unit whose entry did not change
-- keeps its own: updated_at still says when that unit's total last changed.
--
--   unit_scores  one row per (scheme, period) that has at least one total: unit[j] is a unit
--                code, and total[j], coverage[j], rank[j], grade[j], vetoed[j] are its entry
--                as unit_score's columns were, updated_us[j] its updated_at in microseconds
--                since the Unix epoch (as indicator_cells.updated_us).
--
-- The rows are kept whole up to the page's size (toast_tuple_target): a period of up to ~170
-- units (~48 bytes each) is one heap tuple, neither compressed nor moved to TOAST; a larger
-- one is compressed first (STORAGE MAIN), and moved out of line only if still too big.
--
-- A row is ~3.4 kB for the bench's 70 units and is rewritten by nearly every transaction on
-- random cells (~20 rows 25 times a second at 10,000 obs/s). fillfactor 10 puts each row on a
-- page of its own, so the new version fits beside the old one (a HOT update, while a row is
-- under ~4 kB: up to ~80 units): no index entry per update and no table growth between
-- vacuums. Measured in a scratch table, 1,500 such statements of 19 rows: 352 kB and every
-- update HOT, against 110 MB and 2% HOT with the default fillfactor, at the same time per
-- statement.
--
-- The read model does not change (PROTOCOL.md "Read model"): kp_unit_score has the same
-- columns and one row per (scheme, period, unit) with a total.

CREATE TABLE unit_scores (
    scheme      text NOT NULL,
    period      text NOT NULL,
    unit        text[] NOT NULL,
    total       double precision[] NOT NULL,
    coverage    double precision[] NOT NULL,
    rank        integer[] NOT NULL,
    grade       text[] NOT NULL,
    vetoed      boolean[] NOT NULL,
    updated_us  bigint[] NOT NULL,
    PRIMARY KEY (scheme, period),
    CHECK (cardinality(unit) > 0 AND cardinality(total) = cardinality(unit)
           AND cardinality(coverage) = cardinality(unit) AND cardinality(rank) = cardinality(unit)
           AND cardinality(grade) = cardinality(unit) AND cardinality(vetoed) = cardinality(unit)
           AND cardinality(updated_us) = cardinality(unit))
) WITH (toast_tuple_target = 8160, fillfactor = 10);
ALTER TABLE unit_scores ALTER COLUMN unit SET STORAGE MAIN, ALTER COLUMN total SET STORAGE MAIN,
    ALTER COLUMN coverage SET STORAGE MAIN, ALTER COLUMN rank SET STORAGE MAIN,
    ALTER COLUMN grade SET STORAGE MAIN, ALTER COLUMN vetoed SET STORAGE MAIN,
    ALTER COLUMN updated_us SET STORAGE MAIN;

-- The rows migration 1 kept, in unit code order (a scorer that starts rewrites each row in its
-- scheme's unit order once, keeping every updated_at).
INSERT INTO unit_scores (scheme, period, unit, total, coverage, rank, grade, vetoed, updated_us)
SELECT scheme, period, array_agg(unit ORDER BY unit), array_agg(total ORDER BY unit),
       array_agg(coverage ORDER BY unit), array_agg(rank ORDER BY unit),
       array_agg(grade ORDER BY unit), array_agg(vetoed ORDER BY unit),
       array_agg((extract(epoch FROM updated_at) * 1000000)::bigint ORDER BY unit)
  FROM unit_score
 GROUP BY scheme, period;

DROP VIEW kp_unit_score;
DROP TABLE unit_score;

-- A reader's `scheme = … AND period = …` reaches the primary key; a filter on the unit reads
-- the scheme's (or the period's) rows and keeps that unit's entries.
CREATE VIEW kp_unit_score AS
SELECT s.scheme, s.period, t.unit, u.name AS unit_name, u.grp, t.total, t.coverage, t.rank,
       t.grade, t.vetoed, timestamptz 'epoch' + t.us * interval '1 microsecond' AS updated_at
  FROM unit_scores s
 CROSS JOIN LATERAL unnest(s.unit, s.total, s.coverage, s.rank, s.grade, s.vetoed, s.updated_us)
                    AS t(unit, total, coverage, rank, grade, vetoed, us)
  JOIN kp_unit u ON u.scheme = s.scheme AND u.unit = t.unit;

-- DROP + CREATE loses the view's grants (migration 4): the reader gets it back. The writer's
-- rights on the new table come from 4's default privileges.
DO $grant$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kaoping_reader') THEN
        GRANT SELECT ON kp_unit_score TO kaoping_reader;
    END IF;
END
$grant$;
