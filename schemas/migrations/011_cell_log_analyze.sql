-- kaoping schema, migration 11: the cell log analyzed from a small sample, and less often
-- (issue 9).
--
-- indicator_cell_log (migrations 009, 010) is a queue: at 10,000 obs/s about 1,700 rows a
-- second are inserted and as many deleted again, a few thousand are live, and the table keeps
-- the size of its largest burst (~21,000 pages after a maximum-throughput run). Autovacuum's
-- analyze threshold (50 rows and a tenth of the live ones) is passed at every visit, every 5 s
-- with deploy/postgresql/kaoping.conf, and each ANALYZE samples up to 300 x
-- default_statistics_target = 30,000 pages: 23 of them in one run of bench_e2e, 0.3-1.3 s each,
-- ~13,000 pages read, while the scorer writes. Groups committing then waited up to 150 ms
-- (docs/BENCHMARKS.md rounds 22 and 23).
--
-- What reads the log selects by scheme and period (the scorer's folds and reads also by bucket),
-- the primary key's first columns, and VACUUM keeps the table's row count current: a statistics
-- target of 10 (3,000 pages sampled, up to 10 common values per column) is enough. An analyze
-- after 200,000 rows changed comes about once a minute at that load instead of every 5 s.
ALTER TABLE indicator_cell_log
    ALTER COLUMN scheme SET STATISTICS 10,
    ALTER COLUMN period SET STATISTICS 10,
    ALTER COLUMN bucket SET STATISTICS 10,
    ALTER COLUMN seq SET STATISTICS 10,
    ALTER COLUMN layout SET STATISTICS 10,
    ALTER COLUMN units SET STATISTICS 10,
    ALTER COLUMN u SET STATISTICS 10,
    ALTER COLUMN cell SET STATISTICS 10,
    ALTER COLUMN value SET STATISTICS 10,
    ALTER COLUMN score SET STATISTICS 10,
    ALTER COLUMN n_obs SET STATISTICS 10,
    ALTER COLUMN updated_us SET STATISTICS 10;
ALTER TABLE indicator_cell_log SET (autovacuum_analyze_threshold = 200000);
