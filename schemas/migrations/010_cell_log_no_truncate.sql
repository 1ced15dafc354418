-- kaoping schema, migration 10: vacuum keeps the cell log's empty pages (issue 9).
--
-- indicator_cell_log (migration 009) is a queue: the scorer inserts a bucket's rows and a fold
-- deletes them again within about a second. When a vacuum finds empty pages at the end of the
-- table it truncates them, and for that it holds an ACCESS EXCLUSIVE lock on the table, which
-- the scorer's next insert waits for. With autovacuum every 5 s (deploy/postgresql/kaoping.conf)
-- a vacuum after a burst truncated 14,126 pages, and the two groups committing then waited 42
-- and 55 ms (docs/BENCHMARKS.md round 21). Without truncation the table keeps the size of its
-- largest burst, and the next rows reuse those pages.
ALTER TABLE indicator_cell_log SET (vacuum_truncate = false);
