/*
 * src_sql: the `sql` source of kp-adapter. It pulls rows from a department database through
 * libpq (kp_pg) with a persisted (timestamp, id) watermark whose upper bound comes from the
 * source database's own clock: each poll asks the database for clock_timestamp() - lag and
 * reads only rows at or below it, so that rows of transactions that commit late (up to `lag`
 * after their timestamp) are not passed over (issue 2; ARCHITECTURE.md guarantee 1).
 *
 * The configured query receives
 *   $1  watermark timestamp (text, use as $1::timestamptz; '-infinity' at first start)
 *   $2  watermark id        (text, use as $2::bigint; -9223372036854775808 at first start)
 *   $3  upper bound         (text, use as $3::timestamptz)
 *   $4  row limit           (text, use as LIMIT $4)
 * and must return columns named wm_ts (timestamptz), wm_id (bigint), u, i, p, val, ref, rev,
 * optionally at (ms since the epoch) and w, ordered by (wm_ts, wm_id), e.g.
 *
 *   SELECT t.updated_at AS wm_ts, t.id AS wm_id, t.unit AS u, t.indicator AS i,
 *          t.period AS p, t.value AS val, t.id::text AS ref, t.version AS rev
 *     FROM stats_fact t
 *    WHERE (t.updated_at, t.id) > ($1::timestamptz, $2::bigint)
 *      AND t.updated_at <= $3::timestamptz
 *    ORDER BY t.updated_at, t.id
 *    LIMIT $4
 *
 * The watermark is the exact (wm_ts, wm_id) of the last row put in a batch, stored in the
 * spool with that batch, so rows sharing one timestamp are never lost across batches. With
 * overlap_ms > 0, each poll cycle also re-reads the window [watermark - overlap, watermark]
 * and sends it again (same ref and rev: the scorer changes nothing), a safety net for
 * sources whose transactions may commit later than `lag`.
 */
#ifndef SRC_SQL_H
#define SRC_SQL_H

#include "adp_source.h"

struct src_sql_config {
    char *dsn;            /* libpq connection string; put connect_timeout in it */
    char *query;          /* see above */
    long long lag_ms;     /* rows newer than the database clock minus this are not read yet */
    long long overlap_ms; /* re-read window behind the watermark, 0 = off */
};

extern const struct adp_source adp_source_sql;

#endif
