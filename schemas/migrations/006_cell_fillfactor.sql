-- kaoping schema, migration 6: room on every page of indicator_cells for the next version of
-- its rows (issue 9).
--
-- The scorer rewrites a part row (~1.9 kB, migration 005) whenever one of its cells changes:
-- the rows of the current month, quarter, half and year many times a minute under load. At
-- the default fillfactor (100) four rows fill a page, so an update often finds no room beside
-- its row: the new version goes to another page with a new primary-key entry (not a HOT
-- update), and table and index grow until vacuum catches up. At 50 two rows share a page and
-- the next versions of both fit beside them; HOT pruning reclaims the dead ones in place.
-- bench_e2e, alternating runs of 300,000 observations (docs/BENCHMARKS.md, round 5): maximum
-- throughput +9% in source order and +11% on random cells; at 10,000 obs/s in source order
-- p99 24-25 ms instead of 29 ms.
--
-- It costs a table twice as large: about 4 kB per part row, 32 MB for a year of a 70-unit,
-- 337-node scheme. Pages written from now on follow it; VACUUM FULL indicator_cells (an
-- exclusive lock for its duration) would repack the existing ones.

ALTER TABLE indicator_cells SET (fillfactor = 50);
