/*
 * src_sql: the `sql` source plugin (see src_sql.h for the query contract). This file holds the
 * watermark logic of issue 2: the database's clock gives the upper bound, the exact
 * (wm_ts, wm_id) tuple of the last row read becomes the cursor stored with its batch, and the
 * position advances only when the runtime acks that the batch is durable (adp_source.h "pull
 * protocol"). A database that is down or goes away is an error of one poll, never of the
 * daemon: the next poll reconnects.
 *
 * Cursor text: "<wm_ts as PostgreSQL prints it in ISO style, UTC>|<wm_id>". The session is
 * set to DateStyle ISO and TimeZone UTC on every (re)connection, so the text read back as
 * $1::timestamptz is exactly the instant that was read (microseconds included).
 */
#include "src_sql.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_err.h"
#include "kp_pg.h"

#define CFG(field) offsetof(struct src_sql_config, field)
static const struct kp_cfg_entry sql_config[] = {
    {"source.dsn", KP_CFG_STR, "", 0, 0, CFG(dsn), false, false,
     "libpq connection string of the department database (include connect_timeout)"},
    {"source.query", KP_CFG_STR, "", 0, 0, CFG(query), false, false,
     "SELECT with $1 wm ts, $2 wm id, $3 upper bound, $4 limit returning wm_ts, wm_id, u, i, "
     "p, val, ref, rev[, at, w] ordered by (wm_ts, wm_id)"},
    {"source.lag_ms", KP_CFG_MS, "2000", 0, 86400000.0, CFG(lag_ms), false, false,
     "read only rows older than the database clock minus this (longer than any transaction "
     "of the source that writes these rows)"},
    {"source.overlap_ms", KP_CFG_MS, "0", 0, 86400000.0, CFG(overlap_ms), false, false,
     "also re-read this window behind the watermark every poll cycle (0 = off)"},
    KP_CFG_END,
};

#define TS_MAX      64
#define ID_MAX      24
#define ID_MIN_TEXT "-9223372036854775808"
#define TS_MIN_TEXT "-infinity"

enum col { C_WM_TS, C_WM_ID, C_U, C_I, C_P, C_VAL, C_REF, C_REV, C_AT, C_W, C__COUNT };
static const char *const col_name[C__COUNT] = {"wm_ts", "wm_id", "u",   "i",  "p",
                                               "val",   "ref",   "rev", "at", "w"};
#define C_REQUIRED C_AT /* columns before this one are required */

enum phase { PH_MAIN, PH_RESCAN };

struct pos {
    char ts[TS_MAX];
    char id[ID_MAX];
};

struct sql_state {
    const struct src_sql_config *cfg;
    struct kp_pg *pg;
    bool session_ready; /* DateStyle/TimeZone set and columns validated on this connection */
    int col[C__COUNT];
    char lag_text[40], overlap_text[40];

    struct pos wm; /* committed watermark (the cursor stored in the spool) */
    enum phase phase;
    struct pos rs;         /* rescan: position inside the overlap window */
    char rs_upper[TS_MAX]; /* rescan: the watermark ts when the rescan began */

    /* what the last poll would make true once acked */
    bool pending;
    enum phase pend_phase;
    struct pos pend_pos;
    enum phase pend_next;
};

static void copy_text(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s);
}

static int sql_check(const void *cfgp, char *err, size_t errlen)
{
    const struct src_sql_config *cfg = cfgp;
    if (!cfg->dsn || !cfg->dsn[0]) {
        snprintf(err, errlen, "source.dsn: required by source.driver sql");
        return KP_ECONFIG;
    }
    if (!cfg->query || !cfg->query[0]) {
        snprintf(err, errlen, "source.query: required by source.driver sql");
        return KP_ECONFIG;
    }
    /* PostgreSQL refuses a statement that does not use a parameter it is given (its type
     * cannot be determined): say so before the first poll does. */
    const char *need[] = {"$1", "$2", "$3", "$4"};
    for (size_t k = 0; k < 4; k++)
        if (!strstr(cfg->query, need[k])) {
            snprintf(err, errlen,
                     "source.query: does not use %s ($1 wm ts, $2 wm id, $3 upper bound, "
                     "$4 limit)",
                     need[k]);
            return KP_ECONFIG;
        }
    return 0;
}

/* Parses "ts|id"; "" is the start (before every row). */
static int parse_cursor(const char *cursor, struct pos *p)
{
    if (!cursor || !cursor[0]) {
        copy_text(p->ts, sizeof p->ts, TS_MIN_TEXT);
        copy_text(p->id, sizeof p->id, ID_MIN_TEXT);
        return 0;
    }
    const char *bar = strrchr(cursor, '|');
    if (!bar || bar == cursor || (size_t)(bar - cursor) >= sizeof p->ts ||
        strlen(bar + 1) >= sizeof p->id || !bar[1])
        return KP_EINVAL;
    memcpy(p->ts, cursor, (size_t)(bar - cursor));
    p->ts[bar - cursor] = 0;
    copy_text(p->id, sizeof p->id, bar + 1);
    return 0;
}

static void fail_db(struct sql_state *st, const char *what, char *err, size_t errlen)
{
    const char *code = kp_pg_sqlstate(st->pg);
    snprintf(err, errlen, "%s: %s%s%s%s", what, kp_pg_errmsg(st->pg), code[0] ? " (SQLSTATE " : "",
             code, code[0] ? ")" : "");
}

/* Runs the configured query; res is the caller's. */
static int run_query(struct sql_state *st, const struct pos *from, const char *upper,
                     const char *limit, struct kp_pg_res **res)
{
    const char *params[4] = {from->ts, from->id, upper, limit};
    return kp_pg_exec(st->pg, st->cfg->query, 4, params, res);
}

/* Connects or reconnects, sets the session up and validates the query's columns. KP_EDB:
 * the database is unreachable or failed (retry next poll); KP_ECONFIG: the query is wrong. */
static int ensure_session(struct sql_state *st, char *err, size_t errlen)
{
    if (!st->pg) {
        int rc = kp_pg_open(st->cfg->dsn, &st->pg);
        if (!st->pg) {
            snprintf(err, errlen, "connect: out of memory");
            return KP_ENOMEM;
        }
        if (rc != 0) {
            fail_db(st, "connect", err, errlen);
            return KP_EDB;
        }
        st->session_ready = false;
    } else if (kp_pg_conn_lost(st->pg)) {
        st->session_ready = false;
        if (kp_pg_reset(st->pg) != 0) {
            fail_db(st, "reconnect", err, errlen);
            return KP_EDB;
        }
    }
    if (st->session_ready)
        return 0;
    if (kp_pg_exec(st->pg,
                   "SELECT set_config('DateStyle', 'ISO, YMD', false), "
                   "set_config('TimeZone', 'UTC', false)",
                   0, NULL, NULL) != 0) {
        fail_db(st, "session setup", err, errlen);
        return KP_EDB;
    }
    /* Validate the columns with a run that returns no rows. */
    struct kp_pg_res *res = NULL;
    struct pos start;
    parse_cursor("", &start);
    if (run_query(st, &start, "-infinity", "0", &res) != 0) {
        const char *code = kp_pg_sqlstate(st->pg);
        /* Class 42 (syntax error or access rule violation) and 22 (data exception) are
         * mistakes in the query itself, not a passing failure. */
        bool config = !kp_pg_conn_lost(st->pg) &&
                      (strncmp(code, "42", 2) == 0 || strncmp(code, "22", 2) == 0);
        fail_db(st, "source.query", err, errlen);
        return config ? KP_ECONFIG : KP_EDB;
    }
    int rc = 0;
    for (int c = 0; c < C__COUNT; c++) {
        st->col[c] = kp_pg_res_fnumber(res, col_name[c]);
        if (st->col[c] < 0 && c < C_REQUIRED) {
            snprintf(err, errlen,
                     "source.query: the result has no column \"%s\" (required: "
                     "wm_ts, wm_id, u, i, p, val, ref, rev; optional: at, w)",
                     col_name[c]);
            rc = KP_ECONFIG;
            break;
        }
    }
    kp_pg_res_free(&res);
    if (rc == 0)
        st->session_ready = true;
    return rc;
}

static int sql_init(const struct adp_source_env *env, const void *cfgp, const char *cursor,
                    void **state, char *err, size_t errlen)
{
    *state = NULL;
    const struct src_sql_config *cfg = cfgp;
    int rc = sql_check(cfg, err, errlen);
    if (rc != 0)
        return rc;
    if (env->batch_max_obs < 1) {
        snprintf(err, errlen, "batch_max_obs: must be at least 1");
        return KP_ECONFIG;
    }
    struct sql_state *st = kp_xcalloc(1, sizeof *st);
    st->cfg = cfg;
    if (parse_cursor(cursor, &st->wm) != 0) {
        snprintf(err, errlen,
                 "spool: the stored cursor \"%.80s\" is not a sql watermark "
                 "(ts|id): was the spool written by another source?",
                 cursor);
        free(st);
        return KP_EINVAL;
    }
    snprintf(st->lag_text, sizeof st->lag_text, "%lld milliseconds", cfg->lag_ms);
    snprintf(st->overlap_text, sizeof st->overlap_text, "%lld milliseconds", cfg->overlap_ms);
    /* Validate the query now when the database answers, so a wrong query stops the daemon
     * at start; an unreachable database is retried by poll. */
    rc = ensure_session(st, err, errlen);
    if (rc == KP_ECONFIG || rc == KP_ENOMEM) {
        kp_pg_close(&st->pg);
        free(st);
        return rc;
    }
    if (errlen)
        err[0] = 0;
    *state = st;
    return 0;
}

/* Adds the rows of res to out; sets *last to the (wm_ts, wm_id) of the last one. */
static int add_rows(struct sql_state *st, const struct kp_pg_res *res, struct adp_out *out,
                    struct pos *last, char *err, size_t errlen)
{
    int n = kp_pg_res_ntuples(res);
    for (int r = 0; r < n; r++) {
        const char *v[C__COUNT];
        for (int c = 0; c < C__COUNT; c++)
            v[c] = st->col[c] >= 0 && !kp_pg_res_isnull(res, r, st->col[c])
                       ? kp_pg_res_value(res, r, st->col[c])
                       : NULL;
        if (!v[C_WM_TS] || !v[C_WM_ID]) {
            snprintf(err, errlen,
                     "source.query: row %d has a NULL %s: the watermark cannot "
                     "pass it",
                     r, v[C_WM_TS] ? "wm_id" : "wm_ts");
            return KP_EINVAL;
        }
        if (strlen(v[C_WM_TS]) >= TS_MAX || strlen(v[C_WM_ID]) >= ID_MAX) {
            snprintf(err, errlen,
                     "source.query: row %d: wm_ts or wm_id is too long to be a "
                     "timestamptz and a bigint",
                     r);
            return KP_EINVAL;
        }
        struct adp_rec rec = {v[C_U],   v[C_I],   v[C_P],  v[C_VAL],
                              v[C_REF], v[C_REV], v[C_AT], v[C_W]};
        if (adp_out_add(out, &rec) != 0) {
            snprintf(err, errlen, "source.query: returned more than LIMIT $4 rows");
            return KP_EINVAL;
        }
        copy_text(last->ts, sizeof last->ts, v[C_WM_TS]);
        copy_text(last->id, sizeof last->id, v[C_WM_ID]);
    }
    return n;
}

static int sql_poll(void *state, struct adp_out *out, char *err, size_t errlen)
{
    struct sql_state *st = state;
    st->pending = false;
    int rc = ensure_session(st, err, errlen);
    if (rc != 0)
        return rc;

    /* The database's clock, not ours: the upper bound, the lag of the watermark and the
     * start of the overlap window. */
    struct kp_pg_res *res = NULL;
    const char *cp[3] = {st->lag_text, st->wm.ts, st->overlap_text};
    if (kp_pg_exec(st->pg,
                   "SELECT (clock_timestamp() - $1::interval)::text, "
                   "CASE WHEN isfinite($2::timestamptz) THEN "
                   "extract(epoch FROM clock_timestamp() - $2::timestamptz)::float8 END, "
                   "CASE WHEN isfinite($2::timestamptz) THEN "
                   "($2::timestamptz - $3::interval)::text END",
                   3, cp, &res) != 0) {
        fail_db(st, "clock", err, errlen);
        return KP_EDB;
    }
    char upper[TS_MAX], rescan_from[TS_MAX] = "";
    copy_text(upper, sizeof upper, kp_pg_res_value(res, 0, 0));
    if (!kp_pg_res_isnull(res, 0, 1))
        adp_out_set_lag(out, strtod(kp_pg_res_value(res, 0, 1), NULL));
    if (!kp_pg_res_isnull(res, 0, 2))
        copy_text(rescan_from, sizeof rescan_from, kp_pg_res_value(res, 0, 2));
    kp_pg_res_free(&res);

    size_t room = adp_out_room(out);
    char limit[24];
    snprintf(limit, sizeof limit, "%zu", room);

    if (st->phase == PH_RESCAN && !st->rs_upper[0]) {
        /* start a rescan of [watermark - overlap, watermark] */
        if (!rescan_from[0]) {
            st->phase = PH_MAIN; /* nothing read yet: nothing to re-read */
            return 0;
        }
        copy_text(st->rs.ts, sizeof st->rs.ts, rescan_from);
        copy_text(st->rs.id, sizeof st->rs.id, ID_MIN_TEXT);
        copy_text(st->rs_upper, sizeof st->rs_upper, st->wm.ts);
    }
    bool main_pass = st->phase == PH_MAIN;
    const struct pos *from = main_pass ? &st->wm : &st->rs;
    const char *to = main_pass ? upper : st->rs_upper;
    if (run_query(st, from, to, limit, &res) != 0) {
        fail_db(st, "source.query", err, errlen);
        return KP_EDB;
    }
    struct pos last = *from;
    int n = add_rows(st, res, out, &last, err, errlen);
    kp_pg_res_free(&res);
    if (n < 0)
        return n;

    bool full = (size_t)n == room;
    /* Caught up: everything up to the upper bound is read, so the data is `lag` behind the
     * database clock, however long ago the last row was written. */
    if (main_pass && !full)
        adp_out_set_lag(out, (double)st->cfg->lag_ms / 1000.0);
    else if (!main_pass)
        adp_out_set_lag(out, -1);
    enum phase next;
    if (main_pass)
        next = full || st->cfg->overlap_ms == 0 ? PH_MAIN : PH_RESCAN;
    else
        next = full ? PH_RESCAN : PH_MAIN;
    /* Poll again at once when a page was full, or when the main pass caught up and the
     * rescan of this cycle comes next. */
    adp_out_set_more(out, full || (main_pass && next == PH_RESCAN));

    if (n == 0) {
        /* Nothing to make durable: move on now. */
        if (!main_pass || next != st->phase) {
            st->phase = next;
            st->rs_upper[0] = 0;
        }
        return 0;
    }
    if (main_pass) {
        char cursor[TS_MAX + ID_MAX + 2];
        snprintf(cursor, sizeof cursor, "%s|%s", last.ts, last.id);
        adp_out_set_cursor(out, cursor);
    } else {
        adp_out_set_cursor(out, NULL); /* a re-read never moves the stored watermark */
    }
    st->pending = true;
    st->pend_phase = st->phase;
    st->pend_pos = last;
    st->pend_next = next;
    return n;
}

static int sql_ack(void *state)
{
    struct sql_state *st = state;
    if (!st->pending)
        return 0;
    st->pending = false;
    if (st->pend_phase == PH_MAIN)
        st->wm = st->pend_pos;
    else
        st->rs = st->pend_pos;
    if (st->pend_next != st->phase) {
        st->phase = st->pend_next;
        st->rs_upper[0] = 0;
    }
    return 0;
}

static void sql_fini(void **state)
{
    if (!state || !*state)
        return;
    struct sql_state *st = *state;
    kp_pg_close(&st->pg);
    free(st);
    *state = NULL;
}

const struct adp_source adp_source_sql = {
    .name = "sql",
    .summary = "rows of a PostgreSQL query paged by a (timestamp, id) watermark bounded by the "
               "database clock minus lag",
    .config = sql_config,
    .config_size = sizeof(struct src_sql_config),
    .check = sql_check,
    .init = sql_init,
    .poll = sql_poll,
    .ack = sql_ack,
    .fini = sql_fini,
};
