/*
 * kp_pg: the libpq wrapper (see kp_pg.h). This file contains the only PQ* calls of kaoping:
 * connections, parameterised statements with text or binary parameters, COPY FROM STDIN,
 * result access, SQLSTATE and lost-connection detection, the builders of PostgreSQL arrays
 * (text literals and binary) behind the scorer's unnest()-based bulk statements and of binary
 * COPY data (one round trip per batch, not per row), and the migration runner that brings a
 * database to the schema in schemas/migrations under an advisory lock.
 * Every PGresult is cleared on every path inside this file (STYLE.md "Ownership"). It serves
 * ARCHITECTURE.md guarantee 1: callers learn exactly whether a statement failed and whether
 * the connection is gone, so they can roll back, nack with retry and reconnect.
 */
#include "kp_pg.h"

#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_buf.h"
#include "kp_err.h"

/* Key of the transaction advisory lock that serialises kp_pg_migrate() callers ("kaop"). */
#define KP_PG_MIGRATE_LOCK "1801547632"

#define KP_PG_ERRMSG_MAX 1024

/* COPY data goes to libpq in pieces of this size (kp_pg_copy_in). */
#define COPY_PIECE ((size_t)64 << 10)

struct kp_pg {
    PGconn *conn; /* NULL only after an allocation failure inside libpq */
    char *dsn;
    char sqlstate[6];
    char errmsg[KP_PG_ERRMSG_MAX];
    bool lost; /* the last failure left the connection unusable */
    /* kp_pg_exec_prepared: the statements this session has prepared, by their text's address;
     * statement i is named "kp<i>" (a new session starts with none) */
    const char *prep[KP_PG_PREPARED_MAX];
    bool prep_ok[KP_PG_PREPARED_MAX]; /* false: kp<i> does not exist (yet) on the server */
    int n_prep;
    bool in_flight; /* a kp_pg_send_prepared or kp_pg_copy_send awaits its kp_pg_wait */
    bool copying;   /* kp_pg_copy_open: a COPY takes data until kp_pg_copy_close */
    bool copy_lost; /* a kp_pg_copy_put of the open COPY failed */
    /* Pipeline mode (kp_pg_pipeline_begin): what was sent and not yet collected, oldest first:
     * Q_STMT a statement, Q_BEGIN the BEGIN of kp_pg_begin, i >= 0 the preparation of
     * statement i (the last two collected by kp_pg_wait before the statement after them). */
    bool pipe, pipe_synced, pipe_flushed, pipe_failed;
    bool begin_pending; /* kp_pg_begin: BEGIN goes with the next statement */
    int *q;
    size_t q_head, q_len, q_cap;
};

struct kp_pg_res {
    PGresult *r;
};

/* Entries of the pipeline's queue other than preparations (struct kp_pg). */
#define Q_STMT  (-1)
#define Q_BEGIN (-2)

/* ---- errors --------------------------------------------------------------------------- */

static void clear_error(struct kp_pg *pg)
{
    pg->sqlstate[0] = 0;
    pg->errmsg[0] = 0;
    pg->lost = false;
}

/* Copies msg without its trailing newlines (libpq messages end in "\n"). */
static void set_errmsg(struct kp_pg *pg, const char *msg)
{
    if (!msg || !*msg)
        msg = "unknown libpq error";
    snprintf(pg->errmsg, sizeof pg->errmsg, "%s", msg);
    size_t n = strlen(pg->errmsg);
    while (n > 0 && (pg->errmsg[n - 1] == '\n' || pg->errmsg[n - 1] == '\r'))
        pg->errmsg[--n] = 0;
}

/* Records why a statement failed: SQLSTATE and message from the result when there is one,
 * else from the connection; then whether the connection survived. */
static void record_failure(struct kp_pg *pg, const PGresult *r)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    snprintf(pg->sqlstate, sizeof pg->sqlstate, "%s", state ? state : "");
    const char *msg = r ? PQresultErrorMessage(r) : NULL;
    if (!msg || !*msg)
        msg = pg->conn ? PQerrorMessage(pg->conn) : "out of memory";
    set_errmsg(pg, msg);
    pg->lost = !pg->conn || PQstatus(pg->conn) == CONNECTION_BAD;
    /* Class 08 is "connection exception"; 57P01..57P03 are server shutdown/crash. libpq
     * usually marks the connection bad by itself, but trust the server's word too. */
    if (!strncmp(pg->sqlstate, "08", 2) || !strncmp(pg->sqlstate, "57P0", 4))
        pg->lost = true;
}

/* Notices ("relation already exists, skipping") are not errors and must not reach stderr
 * outside the log format. */
static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* ---- connections ---------------------------------------------------------------------- */

/* Session settings every kaoping connection relies on: UTF-8 text, and float8 printed so
 * that it parses back to the very same double (extra_float_digits > 0: shortest exact text on
 * PostgreSQL 12+, 17 digits before), whatever the role or database defaults say. */
static int session_setup(struct kp_pg *pg)
{
    pg->n_prep = 0;
    if (PQsetClientEncoding(pg->conn, "UTF8") != 0) {
        set_errmsg(pg, PQerrorMessage(pg->conn));
        pg->lost = PQstatus(pg->conn) == CONNECTION_BAD;
        return KP_EDB;
    }
    PGresult *r = PQexec(pg->conn, "SET extra_float_digits = 3");
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
        record_failure(pg, r);
        PQclear(r);
        return KP_EDB;
    }
    PQclear(r);
    return 0;
}

static int connect_now(struct kp_pg *pg)
{
    if (pg->conn) {
        PQfinish(pg->conn);
        pg->conn = NULL;
    }
    /* Defaults the DSN may override (expanded dbname entries are processed in place, so the
     * DSN's own settings come later and win): a bounded connect so that an unreachable host
     * cannot stall a daemon's loop for minutes, and a name in pg_stat_activity. */
    static const char *const keys[] = {"connect_timeout", "fallback_application_name", "dbname",
                                       NULL};
    const char *vals[] = {"10", "kaoping", pg->dsn, NULL};
    pg->conn = PQconnectdbParams(keys, vals, 1);
    if (!pg->conn) {
        set_errmsg(pg, "out of memory");
        pg->lost = true;
        return KP_EDB;
    }
    PQsetNoticeProcessor(pg->conn, ignore_notice, NULL);
    if (PQstatus(pg->conn) != CONNECTION_OK) {
        set_errmsg(pg, PQerrorMessage(pg->conn));
        pg->lost = true;
        return KP_EDB;
    }
    return session_setup(pg);
}

int kp_pg_open(const char *dsn, struct kp_pg **out)
{
    *out = NULL;
    struct kp_pg *pg = calloc(1, sizeof *pg);
    if (!pg)
        return KP_ENOMEM;
    pg->dsn = strdup(dsn ? dsn : "");
    if (!pg->dsn) {
        free(pg);
        return KP_ENOMEM;
    }
    *out = pg;
    return connect_now(pg);
}

void kp_pg_close(struct kp_pg **pg)
{
    if (!pg || !*pg)
        return;
    if ((*pg)->conn)
        PQfinish((*pg)->conn);
    free((*pg)->q);
    free((*pg)->dsn);
    free(*pg);
    *pg = NULL;
}

/* The connection as libpq sees it. */
static bool conn_up(const struct kp_pg *pg)
{
    return pg && pg->conn && PQstatus(pg->conn) == CONNECTION_OK;
}

/* A connection that libpq still holds in pipeline mode outside a pipeline of ours (one lost
 * while its results were being read: a server that sends 57P01 and closes) cannot run a
 * statement: not ok, so that callers reset it (kp_pg_reset replaces it). */
bool kp_pg_ok(struct kp_pg *pg)
{
    return conn_up(pg) && (pg->pipe || PQpipelineStatus(pg->conn) == PQ_PIPELINE_OFF);
}

int kp_pg_reset(struct kp_pg *pg)
{
    clear_error(pg);
    pg->in_flight = false; /* a new session: what was in flight went with the old one */
    pg->copying = false;
    /* A connection left in pipeline mode (lost inside one) is replaced rather than reset. */
    bool piped = pg->pipe || (pg->conn && PQpipelineStatus(pg->conn) != PQ_PIPELINE_OFF);
    pg->pipe = pg->pipe_synced = pg->pipe_failed = false;
    pg->begin_pending = false;
    pg->q_head = pg->q_len = 0;
    if (!pg->conn || piped)
        return connect_now(pg);
    PQreset(pg->conn);
    if (PQstatus(pg->conn) != CONNECTION_OK) {
        set_errmsg(pg, PQerrorMessage(pg->conn));
        pg->lost = true;
        return KP_EDB;
    }
    return session_setup(pg);
}

/* ---- statements ----------------------------------------------------------------------- */

/* Takes ownership of r: either hands it to *res or clears it. */
static int finish(struct kp_pg *pg, PGresult *r, struct kp_pg_res **res)
{
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
        record_failure(pg, r);
        PQclear(r);
        return KP_EDB;
    }
    if (!res) {
        PQclear(r);
        return 0;
    }
    struct kp_pg_res *w = malloc(sizeof *w);
    if (!w) {
        PQclear(r);
        set_errmsg(pg, "out of memory");
        return KP_ENOMEM;
    }
    w->r = r;
    *res = w;
    return 0;
}

static int check_usable(struct kp_pg *pg)
{
    if (kp_pg_ok(pg))
        return 0;
    if (conn_up(pg)) /* kp_pg_ok's other case: kp_pg_reset replaces such a connection */
        set_errmsg(pg, "the connection was left in pipeline mode");
    else
        set_errmsg(pg, pg->conn ? PQerrorMessage(pg->conn) : "not connected");
    if (!pg->errmsg[0] || !strcmp(pg->errmsg, "unknown libpq error"))
        set_errmsg(pg, "connection to the database is lost");
    pg->lost = true;
    return KP_EDB;
}

/* The start of every call that runs something: the last error forgotten, the connection
 * checked. Returns 0 or KP_EDB. */
static int call_begin(struct kp_pg *pg)
{
    clear_error(pg);
    if (pg->in_flight || (pg->pipe && pg->q_len)) {
        set_errmsg(pg, "a statement is in flight (kp_pg_wait first)");
        return KP_EDB;
    }
    if (pg->copying) {
        set_errmsg(pg, "a COPY is open (kp_pg_copy_close first)");
        return KP_EDB;
    }
    if (pg->pipe_synced) {
        set_errmsg(pg, "the pipeline is synced (kp_pg_pipeline_end first)");
        return KP_EDB;
    }
    return check_usable(pg);
}

/* ---- pipeline ------------------------------------------------------------------------- */

/* Appends what was just sent to the queue of what is to be collected. */
static int q_push(struct kp_pg *pg, int what)
{
    if (pg->q_head + pg->q_len == pg->q_cap) {
        if (pg->q_head) { /* room at the front: move the queue there */
            memmove(pg->q, pg->q + pg->q_head, pg->q_len * sizeof *pg->q);
            pg->q_head = 0;
        } else {
            size_t cap = pg->q_cap ? 2 * pg->q_cap : 16;
            int *q = realloc(pg->q, cap * sizeof *q);
            if (!q) { /* sent but not queued: the session's results can no longer be told */
                set_errmsg(pg, "out of memory");
                pg->lost = true;
                pg->pipe_failed = true;
                return KP_ENOMEM;
            }
            pg->q = q;
            pg->q_cap = cap;
        }
    }
    pg->q[pg->q_head + pg->q_len++] = what;
    pg->pipe_flushed = false;
    return 0;
}

/* Queues what was just sent and hands it to the server at once: in a pipeline libpq keeps
 * small messages until its buffer fills, and the server would sit idle while the caller
 * builds the next statement. */
static int pipe_sent(struct kp_pg *pg, int what)
{
    int rc = q_push(pg, what);
    if (rc)
        return rc;
    if (what == Q_STMT && PQflush(pg->conn) != 0) {
        record_failure(pg, NULL);
        pg->pipe_failed = true;
        return KP_EDB;
    }
    return 0;
}

/* In a pipeline, sends what was sent since the last wait and asks the server to send its
 * results (the server holds them until asked or until the Sync). */
static int pipe_flush(struct kp_pg *pg)
{
    if (pg->pipe_flushed || pg->pipe_synced)
        return 0;
    if (!PQsendFlushRequest(pg->conn) || PQflush(pg->conn) != 0) {
        record_failure(pg, NULL);
        return KP_EDB;
    }
    pg->pipe_flushed = true;
    return 0;
}

/* Takes the oldest entry of the queue and its PGresult (NULL when the connection went away:
 * finish() then records why), then the NULL that ends that statement's results. */
static PGresult *pipe_next(struct kp_pg *pg, int *what)
{
    *what = pg->q[pg->q_head++];
    pg->q_len--;
    if (!pg->q_len)
        pg->q_head = 0;
    PGresult *r = PQgetResult(pg->conn);
    if (r) {
        PGresult *end = PQgetResult(pg->conn);
        PQclear(end); /* NULL but for a second result, which one statement does not have */
    }
    return r;
}

int kp_pg_pipeline_begin(struct kp_pg *pg)
{
    if (pg->pipe) {
        clear_error(pg);
        set_errmsg(pg, "already in a pipeline");
        return KP_EDB;
    }
    if (call_begin(pg))
        return KP_EDB;
    if (!PQenterPipelineMode(pg->conn)) {
        record_failure(pg, NULL);
        return KP_EDB;
    }
    pg->pipe = true;
    pg->pipe_synced = pg->pipe_failed = false;
    pg->pipe_flushed = true;
    pg->q_head = pg->q_len = 0;
    if (pg->begin_pending) { /* kp_pg_begin: first in the pipeline */
        pg->begin_pending = false;
        if (!PQsendQueryParams(pg->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0)) {
            record_failure(pg, NULL);
            pg->pipe_failed = true;
        }
        if (pg->pipe_failed || q_push(pg, Q_BEGIN)) {
            kp_pg_pipeline_end(pg); /* keeps the failure (pipe_failed) */
            return KP_EDB;
        }
    }
    return 0;
}

int kp_pg_begin(struct kp_pg *pg)
{
    if (pg->pipe || pg->begin_pending) {
        clear_error(pg);
        set_errmsg(pg, pg->pipe ? "kp_pg_begin: inside a pipeline" : "kp_pg_begin: twice");
        return KP_EDB;
    }
    if (call_begin(pg))
        return KP_EDB;
    pg->begin_pending = true;
    return 0;
}

/* In a pipeline: sends a statement and queues its result, handed to the server at once
 * (pipe_sent) or with the caller's next wait or sync. */
static int pipe_query(struct kp_pg *pg, const char *sql, int nparams, const char *const *params,
                      const int *lengths, const int *formats, bool flush)
{
    if (!PQsendQueryParams(pg->conn, sql, nparams, NULL, params, lengths, formats, 0)) {
        record_failure(pg, NULL);
        return KP_EDB;
    }
    return flush ? pipe_sent(pg, Q_STMT) : q_push(pg, Q_STMT);
}

/* A BEGIN of kp_pg_begin still to send, for the calls that cannot take it along: run alone. */
static int begin_now(struct kp_pg *pg)
{
    if (!pg->begin_pending)
        return 0;
    pg->begin_pending = false;
    return finish(pg, PQexec(pg->conn, "BEGIN"), NULL);
}

/* kp_pg_exec_bin and kp_pg_exec_prepared after kp_pg_begin: BEGIN and the statement in one
 * round trip (a pipeline of the two). */
static int exec_with_begin(struct kp_pg *pg, const char *sql, int nparams,
                           const char *const *params, const int *lengths, const int *formats,
                           bool prepared, struct kp_pg_res **res)
{
    int rc = kp_pg_pipeline_begin(pg);
    if (rc == 0 && prepared) {
        rc = kp_pg_send_prepared(pg, sql, nparams, params, lengths, formats);
    } else if (rc == 0) {
        rc = pipe_query(pg, sql, nparams, params, lengths, formats, false); /* sync flushes */
    }
    if (rc == 0)
        rc = kp_pg_pipeline_sync(pg);
    if (rc == 0)
        rc = kp_pg_wait(pg, res);
    if (pg->pipe) {
        int end = kp_pg_pipeline_end(pg);
        if (rc == 0 && end != 0) {
            if (res)
                kp_pg_res_free(res);
            rc = KP_EDB;
        }
    }
    return rc ? KP_EDB : 0;
}

bool kp_pg_in_pipeline(const struct kp_pg *pg)
{
    return pg && pg->pipe;
}

int kp_pg_pipeline_sync(struct kp_pg *pg)
{
    clear_error(pg);
    if (!pg->pipe || pg->pipe_synced) {
        set_errmsg(pg, "no pipeline to sync");
        return KP_EDB;
    }
    if (!PQpipelineSync(pg->conn)) {
        record_failure(pg, NULL);
        return KP_EDB;
    }
    pg->pipe_synced = true;
    return 0;
}

int kp_pg_pipeline_end(struct kp_pg *pg)
{
    if (!pg->pipe) {
        clear_error(pg);
        set_errmsg(pg, "no pipeline to end");
        return KP_EDB;
    }
    /* What is still outstanding is collected and dropped; the first failure is kept (one a
     * wait of the caller met, when that was the last call, is still described). */
    char state[sizeof pg->sqlstate], msg[KP_PG_ERRMSG_MAX];
    bool failed = pg->pipe_failed && pg->errmsg[0], lost = pg->lost;
    if (failed) {
        memcpy(state, pg->sqlstate, sizeof state);
        memcpy(msg, pg->errmsg, sizeof msg);
    }
    while (pg->q_len) {
        size_t before = pg->q_len;
        int rc = kp_pg_wait(pg, NULL);
        if (rc && !failed) {
            failed = true;
            lost = pg->lost;
            memcpy(state, pg->sqlstate, sizeof state);
            memcpy(msg, pg->errmsg, sizeof msg);
        }
        if (!conn_up(pg) || (rc && pg->q_len == before))
            break;
    }
    clear_error(pg);
    pg->q_head = pg->q_len = 0;
    if (conn_up(pg)) {
        if (!pg->pipe_synced && !PQpipelineSync(pg->conn)) {
            record_failure(pg, NULL);
        } else {
            /* Up to the Sync's result. NULL ends each statement's results; two in a row: there
             * is nothing more to read. */
            int nulls = 0;
            while (nulls < 2 && conn_up(pg)) {
                PGresult *r = PQgetResult(pg->conn);
                if (!r) {
                    nulls++;
                    continue;
                }
                nulls = 0;
                ExecStatusType st = PQresultStatus(r);
                PQclear(r);
                if (st == PGRES_PIPELINE_SYNC)
                    break;
            }
            if (!PQexitPipelineMode(pg->conn)) { /* kp_pg_reset replaces the connection */
                record_failure(pg, NULL);
                pg->lost = true;
            }
        }
    }
    pg->pipe = pg->pipe_synced = false;
    if (failed) {
        memcpy(pg->sqlstate, state, sizeof state);
        memcpy(pg->errmsg, msg, sizeof msg);
        pg->lost = lost || !kp_pg_ok(pg);
    } else if (!pg->errmsg[0] && !kp_pg_ok(pg)) {
        set_errmsg(pg, "connection to the database is lost");
        pg->lost = true;
    }
    if (!pg->errmsg[0] && pg->pipe_failed)
        set_errmsg(pg, "a statement of the pipeline failed");
    pg->pipe_failed = false;
    return pg->errmsg[0] ? KP_EDB : 0;
}

/* The start of a send inside a pipeline (call_begin's part that applies there). */
static int pipe_send_begin(struct kp_pg *pg)
{
    clear_error(pg);
    if (pg->pipe_synced) {
        set_errmsg(pg, "the pipeline is synced (kp_pg_pipeline_end first)");
        return KP_EDB;
    }
    return check_usable(pg);
}

int kp_pg_send(struct kp_pg *pg, const char *sql, int nparams, const char *const *params)
{
    if (!pg->pipe) {
        clear_error(pg);
        set_errmsg(pg, "kp_pg_send: not in a pipeline");
        return KP_EDB;
    }
    if (pipe_send_begin(pg))
        return KP_EDB;
    return pipe_query(pg, sql, nparams, params, NULL, NULL, true);
}

int kp_pg_exec(struct kp_pg *pg, const char *sql, int nparams, const char *const *params,
               struct kp_pg_res **res)
{
    return kp_pg_exec_bin(pg, sql, nparams, params, NULL, NULL, res); /* all text */
}

int kp_pg_exec_bin(struct kp_pg *pg, const char *sql, int nparams, const char *const *params,
                   const int *lengths, const int *formats, struct kp_pg_res **res)
{
    if (res)
        *res = NULL;
    if (call_begin(pg))
        return KP_EDB;
    if (pg->begin_pending)
        return exec_with_begin(pg, sql, nparams, params, lengths, formats, false, res);
    if (pg->pipe) { /* nothing outstanding (call_begin): send, then collect */
        int rc = pipe_query(pg, sql, nparams, params, lengths, formats, false); /* wait flushes */
        return rc ? rc : kp_pg_wait(pg, res);
    }
    PGresult *r = PQexecParams(pg->conn, sql, nparams, NULL, params, lengths, formats, 0);
    return finish(pg, r, res);
}

int kp_pg_exec_prepared(struct kp_pg *pg, const char *sql, int nparams, const char *const *params,
                        const int *lengths, const int *formats, struct kp_pg_res **res)
{
    if (res)
        *res = NULL;
    if (pg->pipe && pg->q_len) { /* the wait would collect an older statement's result */
        clear_error(pg);
        set_errmsg(pg, "a statement is in flight (kp_pg_wait first)");
        return KP_EDB;
    }
    if (pg->begin_pending) { /* never inside a pipeline: kp_pg_pipeline_begin sends it */
        if (call_begin(pg))
            return KP_EDB;
        return exec_with_begin(pg, sql, nparams, params, lengths, formats, true, res);
    }
    if (kp_pg_send_prepared(pg, sql, nparams, params, lengths, formats))
        return KP_EDB;
    return kp_pg_wait(pg, res);
}

int kp_pg_send_prepared(struct kp_pg *pg, const char *sql, int nparams, const char *const *params,
                        const int *lengths, const int *formats)
{
    if (pg->pipe ? pipe_send_begin(pg) : (call_begin(pg) || begin_now(pg)))
        return KP_EDB;
    int i = 0;
    while (i < pg->n_prep && pg->prep[i] != sql)
        i++;
    int sent;
    if (i == KP_PG_PREPARED_MAX) { /* the table is full: an unnamed statement */
        sent = PQsendQueryParams(pg->conn, sql, nparams, NULL, params, lengths, formats, 0);
    } else {
        char name[16];
        snprintf(name, sizeof name, "kp%d", i);
        if (i == pg->n_prep || !pg->prep_ok[i]) {
            if (!pg->pipe) {
                if (finish(pg, PQprepare(pg->conn, name, sql, nparams, NULL), NULL))
                    return KP_EDB;
            } else if (!PQsendPrepare(pg->conn, name, sql, nparams, NULL)) {
                record_failure(pg, NULL);
                return KP_EDB;
            } else if (q_push(pg, i)) { /* collected (and checked) by kp_pg_wait */
                return KP_ENOMEM;
            }
            if (i == pg->n_prep)
                pg->prep[pg->n_prep++] = sql;
            pg->prep_ok[i] = true; /* in a pipeline: until its result says otherwise */
        }
        sent = PQsendQueryPrepared(pg->conn, name, nparams, params, lengths, formats, 0);
    }
    if (!sent) {
        record_failure(pg, NULL);
        return KP_EDB;
    }
    if (pg->pipe)
        return pipe_sent(pg, Q_STMT);
    pg->in_flight = true;
    return 0;
}

int kp_pg_copy_in(struct kp_pg *pg, const char *sql, const void *data, size_t len, long long *rows)
{
    if (rows)
        *rows = 0;
    struct kp_pg_res *r = NULL;
    if (kp_pg_copy_send(pg, sql, data, len) || kp_pg_wait(pg, &r))
        return KP_EDB;
    if (rows)
        *rows = kp_pg_res_affected(r);
    kp_pg_res_free(&r);
    return 0;
}

int kp_pg_copy_open(struct kp_pg *pg, const char *sql)
{
    if (call_begin(pg))
        return KP_EDB;
    if (pg->pipe) {
        set_errmsg(pg, "kp_pg_copy_open: no COPY in a pipeline");
        return KP_EDB;
    }
    /* A BEGIN of kp_pg_begin goes in the same query string: one round trip (libpq's PQexec
     * returns at the COPY, the last statement; a failed BEGIN would run nothing after it). */
    char *both = NULL;
    if (pg->begin_pending) {
        size_t len = strlen(sql);
        both = malloc(len + sizeof "BEGIN; ");
        if (!both) {
            set_errmsg(pg, "out of memory");
            return KP_ENOMEM;
        }
        memcpy(both, "BEGIN; ", sizeof "BEGIN; " - 1);
        memcpy(both + sizeof "BEGIN; " - 1, sql, len + 1);
        pg->begin_pending = false;
    }
    PGresult *r = PQexec(pg->conn, both ? both : sql);
    free(both);
    if (!r || PQresultStatus(r) != PGRES_COPY_IN) {
        if (finish(pg, r, NULL) == 0) /* a statement that ran but is no COPY FROM STDIN */
            set_errmsg(pg, "kp_pg_copy_open: not a COPY FROM STDIN statement");
        return KP_EDB;
    }
    PQclear(r);
    pg->copying = true;
    pg->copy_lost = false;
    return 0;
}

bool kp_pg_copy_is_open(const struct kp_pg *pg)
{
    return pg->copying;
}

int kp_pg_copy_put(struct kp_pg *pg, const void *data, size_t len)
{
    clear_error(pg);
    if (!pg->copying || pg->copy_lost) {
        set_errmsg(pg, pg->copying ? "kp_pg_copy_put: an earlier piece was not sent"
                                   : "kp_pg_copy_put: no COPY open");
        return KP_EDB;
    }
    /* In pieces: libpq's output buffer grows to the largest piece and keeps that size. */
    int sent = 1;
    for (size_t off = 0; off < len && sent == 1; off += COPY_PIECE) {
        size_t n = len - off < COPY_PIECE ? len - off : COPY_PIECE;
        sent = PQputCopyData(pg->conn, (const char *)data + off, (int)n);
    }
    /* What libpq keeps back until its buffer fills goes now: the server is to work on it. */
    if (sent != 1 || PQflush(pg->conn) != 0) {
        record_failure(pg, NULL);
        pg->copy_lost = true;
        return KP_EDB;
    }
    return 0;
}

int kp_pg_copy_close(struct kp_pg *pg)
{
    if (!pg->copying) {
        clear_error(pg);
        set_errmsg(pg, "kp_pg_copy_close: no COPY open");
        return KP_EDB;
    }
    pg->copying = false;
    if (PQputCopyEnd(pg->conn, pg->copy_lost ? "kaoping: copy data not sent" : NULL) != 1) {
        record_failure(pg, NULL);
        PGresult *r;
        while ((r = PQgetResult(pg->conn)) != NULL) /* leave the connection idle */
            PQclear(r);
        return KP_EDB;
    }
    pg->in_flight = true;
    return 0;
}

int kp_pg_copy_send(struct kp_pg *pg, const char *sql, const void *data, size_t len)
{
    if (kp_pg_copy_open(pg, sql))
        return KP_EDB;
    (void)kp_pg_copy_put(pg, data, len); /* a failure ends the COPY with an error */
    return kp_pg_copy_close(pg);
}

/* kp_pg_wait in a pipeline: the oldest outstanding statement's result, after the
 * preparation sent with it, if any. */
static int pipe_wait(struct kp_pg *pg, struct kp_pg_res **res)
{
    if (!pg->q_len) {
        set_errmsg(pg, "kp_pg_wait: no statement in flight");
        return KP_EDB;
    }
    if (pipe_flush(pg)) { /* nothing outstanding will answer */
        pg->pipe_failed = true;
        pg->q_head = pg->q_len = 0;
        return KP_EDB;
    }
    int rc = 0;
    for (;;) {
        int what;
        PGresult *r = pipe_next(pg, &what);
        ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
        if (st == PGRES_PIPELINE_ABORTED) { /* skipped: an earlier statement failed */
            PQclear(r);
            if (rc == 0) {
                set_errmsg(pg, "skipped: an earlier statement of the pipeline failed");
                pg->lost = !kp_pg_ok(pg);
            }
            rc = KP_EDB;
            if (what >= 0)
                pg->prep_ok[what] = false;
        } else if (what != Q_STMT) { /* a preparation or BEGIN: nothing to give back */
            if (finish(pg, r, NULL)) {
                if (what >= 0)
                    pg->prep_ok[what] = false;
                rc = KP_EDB;
            }
        } else if (rc == 0) {
            rc = finish(pg, r, res);
        } else {
            PQclear(r);
        }
        if (what == Q_STMT || !pg->q_len || (rc && !conn_up(pg)))
            break;
    }
    if (rc)
        pg->pipe_failed = true;
    return rc;
}

int kp_pg_wait(struct kp_pg *pg, struct kp_pg_res **res)
{
    if (res)
        *res = NULL;
    clear_error(pg);
    if (pg->pipe)
        return pipe_wait(pg, res);
    if (!pg->in_flight) {
        set_errmsg(pg, "kp_pg_wait: no statement in flight");
        return KP_EDB;
    }
    pg->in_flight = false;
    /* The statement's own result decides; libpq then gives NULL (a further result, which one
     * statement or one COPY does not have, is dropped). */
    int rc = 0;
    bool first = true;
    PGresult *r;
    while ((r = PQgetResult(pg->conn)) != NULL) {
        if (first && rc == 0)
            rc = finish(pg, r, res);
        else
            PQclear(r);
        first = false;
    }
    if (first) { /* no result at all: the connection went away */
        record_failure(pg, NULL);
        rc = KP_EDB;
    }
    return rc;
}

int kp_pg_exec_script(struct kp_pg *pg, const char *sql)
{
    if (call_begin(pg) || begin_now(pg))
        return KP_EDB;
    /* PQexec runs every statement of the string; the result is that of the last one, or the
     * first failure (which aborts the rest). */
    return finish(pg, PQexec(pg->conn, sql), NULL);
}

const char *kp_pg_sqlstate(struct kp_pg *pg)
{
    return pg ? pg->sqlstate : "";
}

const char *kp_pg_errmsg(struct kp_pg *pg)
{
    return pg ? pg->errmsg : "out of memory";
}

bool kp_pg_conn_lost(struct kp_pg *pg)
{
    return !pg || pg->lost || !kp_pg_ok(pg);
}

/* ---- results -------------------------------------------------------------------------- */

int kp_pg_res_ntuples(const struct kp_pg_res *r)
{
    return PQntuples(r->r);
}

int kp_pg_res_nfields(const struct kp_pg_res *r)
{
    return PQnfields(r->r);
}

int kp_pg_res_fnumber(const struct kp_pg_res *r, const char *name)
{
    /* PQfnumber folds unquoted names to lower case; the same rule as SQL. */
    return PQfnumber(r->r, name);
}

const char *kp_pg_res_value(const struct kp_pg_res *r, int row, int col)
{
    if (row < 0 || row >= PQntuples(r->r) || col < 0 || col >= PQnfields(r->r))
        return "";
    const char *v = PQgetvalue(r->r, row, col);
    return v ? v : "";
}

bool kp_pg_res_isnull(const struct kp_pg_res *r, int row, int col)
{
    if (row < 0 || row >= PQntuples(r->r) || col < 0 || col >= PQnfields(r->r))
        return true;
    return PQgetisnull(r->r, row, col) != 0;
}

long long kp_pg_res_affected(const struct kp_pg_res *r)
{
    const char *s = PQcmdTuples(r->r);
    return (s && *s) ? strtoll(s, NULL, 10) : 0;
}

void kp_pg_res_free(struct kp_pg_res **r)
{
    if (!r || !*r)
        return;
    PQclear((*r)->r);
    free(*r);
    *r = NULL;
}

/* ---- array literals ------------------------------------------------------------------- */
/* A one-dimensional array literal: {"a","b\"c",NULL,1.5}. Strings are always double-quoted,
 * so no element text (empty, "NULL", with commas, braces or spaces) can be misread; inside
 * the quotes only " and \ need a backslash. */

void kp_pg_array_begin(struct kp_buf *b)
{
    kp_buf_reset(b);
    kp_buf_append(b, "{", 1);
}

static void separator(struct kp_buf *b)
{
    KP_ASSERT(b->len > 0); /* kp_pg_array_begin was called */
    if (b->data[b->len - 1] != '{')
        kp_buf_append(b, ",", 1);
}

void kp_pg_array_add(struct kp_buf *b, const char *elem)
{
    separator(b);
    if (!elem) {
        kp_buf_append(b, "NULL", 4);
        return;
    }
    size_t n = strlen(elem);
    kp_buf_reserve(b, n + 2);
    kp_buf_append(b, "\"", 1);
    const char *run = elem;
    for (const char *p = elem; *p; p++) {
        if (*p == '"' || *p == '\\') {
            kp_buf_append(b, run, (size_t)(p - run));
            kp_buf_append(b, "\\", 1);
            run = p; /* the quote or backslash itself starts the next run */
        }
    }
    kp_buf_append(b, run, strlen(run));
    kp_buf_append(b, "\"", 1);
}

void kp_pg_array_add_double(struct kp_buf *b, double v)
{
    separator(b);
    if (isnan(v))
        kp_buf_append_str(b, "NaN");
    else if (isinf(v))
        kp_buf_append_str(b, v > 0 ? "Infinity" : "-Infinity");
    else
        kp_buf_printf(b, "%.17g", v);
}

void kp_pg_array_add_i64(struct kp_buf *b, long long v)
{
    separator(b);
    kp_buf_printf(b, "%lld", v);
}

void kp_pg_array_add_u64(struct kp_buf *b, unsigned long long v)
{
    separator(b);
    kp_buf_printf(b, "%llu", v);
}

void kp_pg_array_end(struct kp_buf *b)
{
    kp_buf_append(b, "}", 1);
    (void)kp_buf_cstr(b);
}

/* ---- binary arrays (array_recv: ndim, has-null flag, element type, ndim x (size, lower
 * bound 1), then each element as a 4-byte length, -1 for NULL, and its big-endian bytes) -- */

#define BARRAY_MAXDIM 6

static void set_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* n more bytes at the end of b: one reserve per element, not one append per word (this runs
 * for every cell of every row a batch writes). */
static uint8_t *grow(struct kp_buf *b, size_t n)
{
    kp_buf_reserve(b, n);
    uint8_t *p = b->data + b->len;
    b->len += n;
    return p;
}

static void put_be32(struct kp_buf *b, uint32_t v)
{
    set_be32(grow(b, 4), v);
}

/* One element of 8 bytes: its length and its big-endian value. */
static void put_elem64(struct kp_buf *b, uint64_t v)
{
    uint8_t *p = grow(b, 12);
    set_be32(p, 8);
    set_be32(p + 4, (uint32_t)(v >> 32));
    set_be32(p + 8, (uint32_t)v);
}

void kp_pg_barray_begin(struct kp_buf *b, unsigned elem_oid, int ndim)
{
    KP_ASSERT(ndim >= 1 && ndim <= BARRAY_MAXDIM);
    kp_buf_reset(b);
    put_be32(b, (uint32_t)ndim);
    put_be32(b, 0); /* has-null flag, set by the first NULL */
    put_be32(b, elem_oid);
    for (int d = 0; d < ndim; d++) {
        put_be32(b, 0); /* size, filled in by kp_pg_barray_end */
        put_be32(b, 1); /* lower bound */
    }
}

void kp_pg_barray_add_null(struct kp_buf *b)
{
    KP_ASSERT(b->len >= 12);
    set_be32(b->data + 4, 1);
    put_be32(b, UINT32_MAX); /* -1 */
}

void kp_pg_barray_add_f8(struct kp_buf *b, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    put_elem64(b, u);
}

void kp_pg_barray_add_i4(struct kp_buf *b, int v)
{
    uint8_t *p = grow(b, 8);
    set_be32(p, 4);
    set_be32(p + 4, (uint32_t)v);
}

void kp_pg_barray_add_i8(struct kp_buf *b, long long v)
{
    put_elem64(b, (uint64_t)v);
}

void kp_pg_barray_add_text(struct kp_buf *b, const char *s)
{
    if (!s) {
        kp_pg_barray_add_null(b);
        return;
    }
    size_t n = strlen(s);
    put_be32(b, (uint32_t)n);
    kp_buf_append(b, s, n);
}

void kp_pg_barray_end(struct kp_buf *b, const int *dims)
{
    KP_ASSERT(b->len >= 12);
    uint32_t ndim = ((uint32_t)b->data[0] << 24) | ((uint32_t)b->data[1] << 16) |
                    ((uint32_t)b->data[2] << 8) | b->data[3];
    KP_ASSERT(ndim >= 1 && ndim <= BARRAY_MAXDIM);
    for (uint32_t d = 0; d < ndim; d++)
        set_be32(b->data + 12 + 8 * d, (uint32_t)dims[d]);
}

/* ---- binary COPY (a signature, flags and header extension, then per row a 16-bit field
 * count and each field as array elements are: 4-byte length, -1 for NULL, then the type's
 * binary send format; a 16-bit -1 ends the data) ------------------------------------------ */

static void put_be16(struct kp_buf *b, uint16_t v)
{
    uint8_t *p = grow(b, 2);
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

void kp_pg_bcopy_begin(struct kp_buf *b)
{
    kp_buf_reset(b);
    kp_buf_append(b, "PGCOPY\n\377\r\n\0", 11);
    put_be32(b, 0); /* flags: no OIDs */
    put_be32(b, 0); /* no header extension */
}

void kp_pg_bcopy_row(struct kp_buf *b, int nfields)
{
    KP_ASSERT(nfields > 0 && nfields < 1600);
    put_be16(b, (uint16_t)nfields);
}

void kp_pg_bcopy_null(struct kp_buf *b)
{
    put_be32(b, UINT32_MAX); /* -1 */
}

void kp_pg_bcopy_text(struct kp_buf *b, const char *s)
{
    if (!s) {
        kp_pg_bcopy_null(b);
        return;
    }
    size_t n = strlen(s);
    KP_ASSERT(n < INT32_MAX);
    put_be32(b, (uint32_t)n);
    kp_buf_append(b, s, n);
}

void kp_pg_bcopy_jsonb(struct kp_buf *b, const char *json)
{
    if (!json) {
        kp_pg_bcopy_null(b);
        return;
    }
    size_t n = strlen(json);
    KP_ASSERT(n < INT32_MAX - 1);
    put_be32(b, (uint32_t)n + 1);
    kp_buf_append(b, "\1", 1); /* jsonb_recv: format version 1, then the JSON text */
    kp_buf_append(b, json, n);
}

void kp_pg_bcopy_f8(struct kp_buf *b, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    put_elem64(b, u);
}

void kp_pg_bcopy_i8(struct kp_buf *b, long long v)
{
    put_elem64(b, (uint64_t)v);
}

/* numeric_send: digit count, weight (of the first digit, in powers of 10000), sign, display
 * scale, then base-10000 digits from the most significant, trailing zero digits left out. */
void kp_pg_bcopy_numeric_u64(struct kp_buf *b, unsigned long long v)
{
    uint16_t d[5]; /* 2^64 - 1 has 20 decimal digits: 5 base-10000 digits */
    int n = 0;
    for (; v; v /= 10000)
        d[n++] = (uint16_t)(v % 10000);
    int weight = n - 1, lo = 0;
    while (lo < n && d[lo] == 0) /* d[] is least significant first */
        lo++;
    int nd = n - lo;
    put_be32(b, (uint32_t)(8 + 2 * nd));
    put_be16(b, (uint16_t)nd);
    put_be16(b, (uint16_t)(n ? weight : 0));
    put_be16(b, 0); /* positive */
    put_be16(b, 0); /* dscale */
    for (int k = n - 1; k >= lo; k--)
        put_be16(b, d[k]);
}

/* timestamptz_send: microseconds since 2000-01-01 00:00:00 UTC. */
void kp_pg_bcopy_ts_ms(struct kp_buf *b, long long ms)
{
    put_elem64(b, (uint64_t)((ms - 946684800000LL) * 1000));
}

void kp_pg_bcopy_end(struct kp_buf *b)
{
    put_be16(b, UINT16_MAX); /* -1 */
}

/* ---- migrations ----------------------------------------------------------------------- */

struct migration {
    long version;
    char *file; /* file name, e.g. "001_init.sql" */
    char *name; /* "init" */
};

static int cmp_migration(const void *a, const void *b)
{
    const struct migration *x = a, *y = b;
    return (x->version > y->version) - (x->version < y->version);
}

/* NNN_name.sql: digits, an underscore, a non-empty name, ".sql". */
static bool parse_migration_name(const char *fn, long *version, const char **name, size_t *name_len)
{
    const char *p = fn;
    if (*p < '0' || *p > '9')
        return false;
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (errno || v < 0 || v > 2147483647L || *end != '_')
        return false;
    size_t n = strlen(end + 1);
    if (n <= 4 || strcmp(end + 1 + n - 4, ".sql") != 0)
        return false;
    *version = v;
    *name = end + 1;
    *name_len = n - 4;
    return true;
}

static void free_migrations(struct migration *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(m[i].file);
        free(m[i].name);
    }
    free(m);
}

static int list_migrations(const char *dir, struct migration **out, size_t *count, char *err,
                           size_t errlen)
{
    *out = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return KP_EIO;
    }
    struct migration *m = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        long v;
        const char *name;
        size_t name_len;
        if (!parse_migration_name(de->d_name, &v, &name, &name_len))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            m = kp_xrealloc(m, cap * sizeof *m);
        }
        m[n].version = v;
        m[n].file = kp_xstrdup(de->d_name);
        m[n].name = kp_xmalloc(name_len + 1);
        memcpy(m[n].name, name, name_len);
        m[n].name[name_len] = 0;
        n++;
    }
    closedir(d);
    if (n)
        qsort(m, n, sizeof *m, cmp_migration);
    for (size_t i = 1; i < n; i++) {
        if (m[i].version == m[i - 1].version) {
            snprintf(err, errlen, "%s: %s and %s have the same version %ld", dir, m[i - 1].file,
                     m[i].file, m[i].version);
            free_migrations(m, n);
            return KP_EIO;
        }
    }
    *out = m;
    *count = n;
    return 0;
}

static int read_file(const char *path, char **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return KP_EIO;
    }
    struct kp_buf b = {0};
    char chunk[8192];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        kp_buf_append(&b, chunk, got);
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        snprintf(err, errlen, "%s: read error", path);
        kp_buf_fini(&b);
        return KP_EIO;
    }
    kp_buf_cstr(&b);
    if (strlen((const char *)b.data) != b.len) {
        snprintf(err, errlen, "%s: contains a NUL byte", path);
        kp_buf_fini(&b);
        return KP_EIO;
    }
    *out = (char *)b.data; /* ownership of the buffer's storage moves to the caller */
    return 0;
}

static void rollback_quietly(struct kp_pg *pg)
{
    if (kp_pg_ok(pg)) {
        /* Keep the error of the statement that failed, not the rollback's. */
        char state[sizeof pg->sqlstate], msg[sizeof pg->errmsg];
        bool lost = pg->lost;
        memcpy(state, pg->sqlstate, sizeof state);
        memcpy(msg, pg->errmsg, sizeof msg);
        (void)kp_pg_exec(pg, "ROLLBACK", 0, NULL, NULL);
        memcpy(pg->sqlstate, state, sizeof state);
        memcpy(pg->errmsg, msg, sizeof msg);
        pg->lost = lost || pg->lost;
    }
}

static int db_fail(struct kp_pg *pg, const char *what, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s: %s%s%s", what, pg->sqlstate[0] ? pg->sqlstate : "",
             pg->sqlstate[0] ? ": " : "", pg->errmsg);
    rollback_quietly(pg);
    return KP_EDB;
}

/* Creates kp_schema_version when missing, under the lock, so that two first runs racing on
 * an empty database do not both try to create it. */
static int ensure_version_table(struct kp_pg *pg, char *err, size_t errlen)
{
    if (kp_pg_exec(pg, "BEGIN", 0, NULL, NULL))
        return db_fail(pg, "kp_schema_version", err, errlen);
    /* CREATE only when missing: a role without CREATE on the schema (kaoping_writer, issue 6)
     * may still check an up-to-date database. */
    struct kp_pg_res *r = NULL;
    if (kp_pg_exec(pg, "SELECT pg_advisory_xact_lock(" KP_PG_MIGRATE_LOCK ")", 0, NULL, NULL) ||
        kp_pg_exec(pg, "SELECT to_regclass('kp_schema_version') IS NULL", 0, NULL, &r))
        return db_fail(pg, "kp_schema_version", err, errlen);
    bool missing = kp_pg_res_ntuples(r) == 1 && !strcmp(kp_pg_res_value(r, 0, 0), "t");
    kp_pg_res_free(&r);
    if ((missing && kp_pg_exec(pg,
                               "CREATE TABLE IF NOT EXISTS kp_schema_version ("
                               " version integer PRIMARY KEY,"
                               " name text NOT NULL,"
                               " applied_at timestamptz NOT NULL DEFAULT now())",
                               0, NULL, NULL)) ||
        kp_pg_exec(pg, "COMMIT", 0, NULL, NULL))
        return db_fail(pg, "kp_schema_version", err, errlen);
    return 0;
}

static bool version_applied(const struct kp_pg_res *r, long version)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", version);
    for (int i = 0; i < kp_pg_res_ntuples(r); i++)
        if (!strcmp(kp_pg_res_value(r, i, 0), buf))
            return true;
    return false;
}

/* Applies one migration unless a concurrent caller did it first: the version is re-checked
 * after the lock is taken, inside the same transaction that applies it. */
static int apply_one(struct kp_pg *pg, const char *dir, const struct migration *m, char *err,
                     size_t errlen)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, m->file) >= sizeof path) {
        snprintf(err, errlen, "%s/%s: path too long", dir, m->file);
        return KP_EIO;
    }
    char *sql;
    int rc = read_file(path, &sql, err, errlen);
    if (rc)
        return rc;

    char ver[32];
    snprintf(ver, sizeof ver, "%ld", m->version);
    const char *p_check[1] = {ver};
    const char *p_insert[2] = {ver, m->name};
    struct kp_pg_res *r = NULL;
    if (kp_pg_exec(pg, "BEGIN", 0, NULL, NULL) ||
        kp_pg_exec(pg, "SELECT pg_advisory_xact_lock(" KP_PG_MIGRATE_LOCK ")", 0, NULL, NULL) ||
        kp_pg_exec(pg, "SELECT 1 FROM kp_schema_version WHERE version = $1::integer", 1, p_check,
                   &r)) {
        free(sql);
        return db_fail(pg, m->file, err, errlen);
    }
    bool done = kp_pg_res_ntuples(r) > 0;
    kp_pg_res_free(&r);
    if (done) {
        free(sql);
        if (kp_pg_exec(pg, "COMMIT", 0, NULL, NULL))
            return db_fail(pg, m->file, err, errlen);
        return 0;
    }
    rc = kp_pg_exec_script(pg, sql);
    free(sql);
    if (rc ||
        kp_pg_exec(pg,
                   "INSERT INTO kp_schema_version (version, name, applied_at)"
                   " VALUES ($1::integer, $2, now())",
                   2, p_insert, NULL) ||
        kp_pg_exec(pg, "COMMIT", 0, NULL, NULL))
        return db_fail(pg, m->file, err, errlen);
    return 0;
}

int kp_pg_migrate(struct kp_pg *pg, const char *dir, char *err, size_t errlen)
{
    if (errlen)
        err[0] = 0;
    struct migration *m;
    size_t n;
    int rc = list_migrations(dir, &m, &n, err, errlen);
    if (rc)
        return rc;
    rc = ensure_version_table(pg, err, errlen);
    struct kp_pg_res *applied = NULL;
    if (!rc && kp_pg_exec(pg, "SELECT version FROM kp_schema_version", 0, NULL, &applied))
        rc = db_fail(pg, "kp_schema_version", err, errlen);
    for (size_t i = 0; !rc && i < n; i++) {
        if (version_applied(applied, m[i].version))
            continue; /* fast path; apply_one re-checks under the lock anyway */
        rc = apply_one(pg, dir, &m[i], err, errlen);
    }
    kp_pg_res_free(&applied);
    free_migrations(m, n);
    return rc;
}
