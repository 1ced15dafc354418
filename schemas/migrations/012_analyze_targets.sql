-- kaoping schema, migration 12: observation analyzed from a small sample, and the cells' arrays
-- not at all (issue 9).
--
-- observation only grows: at 10,000 obs/s it passes autovacuum's analyze threshold (a tenth of
-- its rows) every 10-20 s while it holds a million rows or so, and each ANALYZE samples up to
-- 300 x default_statistics_target = 30,000 pages. In bench_e2e (deploy/postgresql/kaoping.conf,
-- every autovacuum run logged) that was 7-10 autoanalyzes a run, the longest of each run
-- 1.6-3.1 s, up to 30,000 pages read, and slow spells of two source-order runs at 10,000 obs/s
-- fell into them (up to 166 ms; docs/BENCHMARKS.md round 23). A statistics target of 10 on
-- every column samples 3,000 rows and pages: on 1.2 million rows, ANALYZE took 30 ms instead
-- of 230-280 (round 24).
-- What reads observation goes through its indexes (the unique key, observation_cell); the
-- scorer's statements hide the scheme from the planner (scorer/scr_db.c). Ten common values and
-- a histogram of ten buckets per column still give a reader's plan the table's shape.
--
-- indicator_cells' arrays (migration 005) are read whole by the scorer, which finds its rows by
-- key, and by the view, which unnests them: no plan uses statistics of an array column. Their
-- element statistics were most of that table's ANALYZE (85-130 ms on 7,200 parts of 64 cells,
-- 22 ms without them).
-- A target of 0 collects none; the key columns keep the default.
ALTER TABLE observation
    ALTER COLUMN id SET STATISTICS 10,
    ALTER COLUMN scheme SET STATISTICS 10,
    ALTER COLUMN src SET STATISTICS 10,
    ALTER COLUMN ref SET STATISTICS 10,
    ALTER COLUMN rev SET STATISTICS 10,
    ALTER COLUMN unit SET STATISTICS 10,
    ALTER COLUMN indicator SET STATISTICS 10,
    ALTER COLUMN period SET STATISTICS 10,
    ALTER COLUMN value SET STATISTICS 10,
    ALTER COLUMN w SET STATISTICS 10,
    ALTER COLUMN x SET STATISTICS 10,
    ALTER COLUMN observed_at SET STATISTICS 10,
    ALTER COLUMN adapter SET STATISTICS 10,
    ALTER COLUMN seq SET STATISTICS 10,
    ALTER COLUMN received_at SET STATISTICS 10;
ALTER TABLE indicator_cells
    ALTER COLUMN value SET STATISTICS 0,
    ALTER COLUMN score SET STATISTICS 0,
    ALTER COLUMN n_obs SET STATISTICS 0,
    ALTER COLUMN updated_us SET STATISTICS 0;
