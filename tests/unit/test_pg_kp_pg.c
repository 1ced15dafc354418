/*
 * test_pg_kp_pg: the libpq wrapper against a real PostgreSQL (run by tests/harness/with-pg.sh,
 * which exports KP_TEST_DSN): parameterised statements, NULLs, SQLSTATE of failures,
 * lost-connection detection and reset, prepared statements, the array-literal builders
 * round-tripped through unnest(), and kp_pg_migrate applied twice and concurrently from two
 * threads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kp_buf.h"
#include "kp_err.h"
#include "kp_pg.h"

static const char *dsn(void)
{
    const char *d = getenv("KP_TEST_DSN");
    if (!d || !*d) {
        fprintf(stderr, "KP_TEST_DSN is not set: run under tests/harness/with-pg.sh\n");
        exit(1);
    }
    return d;
}

static struct kp_pg *connect_ok(void)
{
    struct kp_pg *pg = NULL;
    int rc = kp_pg_open(dsn(), &pg);
    if (rc)
        fprintf(stderr, "connect: %s\n", kp_pg_errmsg(pg));
    assert_int_equal(rc, 0);
    assert_true(kp_pg_ok(pg));
    return pg;
}

static void exec_ok(struct kp_pg *pg, const char *sql)
{
    int rc = kp_pg_exec(pg, sql, 0, NULL, NULL);
    if (rc)
        fprintf(stderr, "%s: %s %s\n", sql, kp_pg_sqlstate(pg), kp_pg_errmsg(pg));
    assert_int_equal(rc, 0);
}

/* Runs a query expected to return one value; returns it as a long long. */
static long long query_ll(struct kp_pg *pg, const char *sql)
{
    struct kp_pg_res *r = NULL;
    int rc = kp_pg_exec(pg, sql, 0, NULL, &r);
    if (rc)
        fprintf(stderr, "%s: %s %s\n", sql, kp_pg_sqlstate(pg), kp_pg_errmsg(pg));
    assert_int_equal(rc, 0);
    assert_int_equal(kp_pg_res_ntuples(r), 1);
    long long v = strtoll(kp_pg_res_value(r, 0, 0), NULL, 10);
    kp_pg_res_free(&r);
    return v;
}

static char *query_text(struct kp_pg *pg, const char *sql)
{
    struct kp_pg_res *r = NULL;
    assert_int_equal(kp_pg_exec(pg, sql, 0, NULL, &r), 0);
    assert_int_equal(kp_pg_res_ntuples(r), 1);
    char *v = strdup(kp_pg_res_value(r, 0, 0));
    kp_pg_res_free(&r);
    return v;
}

/* ---- statements ----------------------------------------------------------------------- */

static void test_open_bad_dsn(void **state)
{
    (void)state;
    struct kp_pg *pg = NULL;
    int rc = kp_pg_open("host=127.0.0.1 port=1 user=nobody dbname=none connect_timeout=2", &pg);
    assert_int_equal(rc, KP_EDB);
    assert_non_null(pg); /* caller owns it even on failure, to read the reason */
    assert_false(kp_pg_ok(pg));
    assert_true(strlen(kp_pg_errmsg(pg)) > 0);
    assert_true(kp_pg_conn_lost(pg));
    assert_int_equal(kp_pg_exec(pg, "SELECT 1", 0, NULL, NULL), KP_EDB);
    kp_pg_close(&pg);
    assert_null(pg);
    kp_pg_close(&pg); /* accepts NULL */
}

static void test_exec_params(void **state)
{
    (void)state;
    struct kp_pg *pg = connect_ok();
    const char *params[3] = {"2", "3", "考评 \"quoted\" \\ back"};
    struct kp_pg_res *r = NULL;
    assert_int_equal(kp_pg_exec(pg,
                                "SELECT $1::int + $2::int AS sum, $3::text AS txt, "
                                "length($3) AS len",
                                3, params, &r),
                     0);
    assert_int_equal(kp_pg_res_ntuples(r), 1);
    assert_int_equal(kp_pg_res_nfields(r), 3);
    assert_int_equal(kp_pg_res_fnumber(r, "sum"), 0);
    assert_int_equal(kp_pg_res_fnumber(r, "txt"), 1);
    assert_int_equal(kp_pg_res_fnumber(r, "nope"), -1);
    assert_string_equal(kp_pg_res_value(r, 0, 0), "5");
    assert_string_equal(kp_pg_res_value(r, 0, 1), params[2]);
    assert_string_equal(kp_pg_res_value(r, 0, 2), "18"); /* characters, not bytes */
    assert_false(kp_pg_res_isnull(r, 0, 0));
    /* Out-of-range access is safe. */
    assert_string_equal(kp_pg_res_value(r, 5, 0), "");
    assert_true(kp_pg_res_isnull(r, 0, 9));
    kp_pg_res_free(&r);
    assert_null(r);
    kp_pg_res_free(&r);

    /* Affected rows and a script of several statements. */
    assert_int_equal(kp_pg_exec_script(pg, "CREATE TEMP TABLE t_aff (a int, b text);"
                                           "INSERT INTO t_aff VALUES (1, 'x'), (2, 'y');"
                                           "INSERT INTO t_aff VALUES (3, 'z')"),
                     0);
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM t_aff"), 3);
    const char *p1[1] = {"2"};
    assert_int_equal(kp_pg_exec(pg, "UPDATE t_aff SET b = 'w' WHERE a >= $1::int", 1, p1, &r), 0);
    assert_int_equal(kp_pg_res_affected(r), 2);
    kp_pg_res_free(&r);
    /* A statement without a result holder. */
    assert_int_equal(kp_pg_exec(pg, "DELETE FROM t_aff", 0, NULL, NULL), 0);
    assert_string_equal(kp_pg_sqlstate(pg), "");
    kp_pg_close(&pg);
}

static void test_nulls(void **state)
{
    (void)state;
    struct kp_pg *pg = connect_ok();
    const char *params[2] = {NULL, "x"};
    struct kp_pg_res *r = NULL;
    assert_int_equal(kp_pg_exec(pg,
                                "SELECT $1::text AS a, $1::text IS NULL AS a_null, "
                                "$2::text AS b, NULL::int AS c",
                                2, params, &r),
                     0);
    assert_true(kp_pg_res_isnull(r, 0, 0));
    assert_string_equal(kp_pg_res_value(r, 0, 0), ""); /* never NULL */
    assert_string_equal(kp_pg_res_value(r, 0, 1), "t");
    assert_false(kp_pg_res_isnull(r, 0, 2));
    assert_string_equal(kp_pg_res_value(r, 0, 2), "x");
    assert_true(kp_pg_res_isnull(r, 0, 3));
    kp_pg_res_free(&r);
    kp_pg_close(&pg);
}

static void test_sqlstate(void **state)
{
    (void)state;
    struct kp_pg *pg = connect_ok();
    struct kp_pg_res *r = (struct kp_pg_res *)(uintptr_t)1; /* must be reset to NULL */
    assert_int_equal(kp_pg_exec(pg, "SELECT 1/0", 0, NULL, &r), KP_EDB);
    assert_null(r);
    assert_string_equal(kp_pg_sqlstate(pg), "22012");
    assert_non_null(strstr(kp_pg_errmsg(pg), "division by zero"));
    assert_false(kp_pg_conn_lost(pg));

    assert_int_equal(kp_pg_exec(pg, "SELEC 1", 0, NULL, NULL), KP_EDB);
    assert_string_equal(kp_pg_sqlstate(pg), "42601");

    exec_ok(pg, "CREATE TEMP TABLE t_uniq (k int PRIMARY KEY)");
    exec_ok(pg, "INSERT INTO t_uniq VALUES (1)");
    assert_int_equal(kp_pg_exec(pg, "INSERT INTO t_uniq VALUES (1)", 0, NULL, NULL), KP_EDB);
    assert_string_equal(kp_pg_sqlstate(pg), "23505");

    /* Inside a failed transaction: 25P02 until ROLLBACK. */
    exec_ok(pg, "BEGIN");
    assert_int_equal(kp_pg_exec(pg, "SELECT 1/0", 0, NULL, NULL), KP_EDB);
    assert_int_equal(kp_pg_exec(pg, "SELECT 1", 0, NULL, NULL), KP_EDB);
    assert_string_equal(kp_pg_sqlstate(pg), "25P02");
    exec_ok(pg, "ROLLBACK");

    /* A script stops at its first failure. */
    assert_int_equal(kp_pg_exec_script(pg, "SELECT 1; SELECT 1/0; SELECT 2"), KP_EDB);
    assert_string_equal(kp_pg_sqlstate(pg), "22012");

    /* Success clears the last error. */
    assert_int_equal(query_ll(pg, "SELECT 7"), 7);
    assert_string_equal(kp_pg_sqlstate(pg), "");
    assert_string_equal(kp_pg_errmsg(pg), "");

    /* Connection defaults: a name in pg_stat_activity (the DSN may set its own). */
    struct kp_pg_res *r2 = NULL;
    assert_int_equal(kp_pg_exec(pg, "SHOW application_name", 0, NULL, &r2), 0);
    assert_string_equal(kp_pg_res_value(r2, 0, 0), "kaoping");
    kp_pg_res_free(&r2);
    kp_pg_close(&pg);
    char d2[1024];
    snprintf(d2, sizeof d2, "%s application_name=mine", dsn());
    assert_int_equal(kp_pg_open(d2, &pg), 0);
    assert_int_equal(kp_pg_exec(pg, "SHOW application_name", 0, NULL, &r2), 0);
    assert_string_equal(kp_pg_res_value(r2, 0, 0), "mine");
    kp_pg_res_free(&r2);
    kp_pg_close(&pg);
}

static void test_conn_lost_and_reset(void **state)
{
    (void)state;
    struct kp_pg *pg = connect_ok();
    /* The server ends our own session: 57P01, and the connection is gone. */
    assert_int_equal(kp_pg_exec(pg, "SELECT pg_terminate_backend(pg_backend_pid())", 0, NULL, NULL),
                     KP_EDB);
    assert_true(kp_pg_conn_lost(pg));
    assert_false(kp_pg_ok(pg));
    assert_int_equal(kp_pg_exec(pg, "SELECT 1", 0, NULL, NULL), KP_EDB);
    assert_true(kp_pg_conn_lost(pg));
    assert_int_equal(kp_pg_reset(pg), 0);
    assert_true(kp_pg_ok(pg));
    assert_false(kp_pg_conn_lost(pg));
    assert_int_equal(query_ll(pg, "SELECT 41 + 1"), 42);

    /* Terminated from another session, noticed on the next statement. */
    struct kp_pg *other = connect_ok();
    long long pid = query_ll(pg, "SELECT pg_backend_pid()");
    char pidbuf[32];
    snprintf(pidbuf, sizeof pidbuf, "%lld", pid);
    const char *p[1] = {pidbuf};
    assert_int_equal(kp_pg_exec(other, "SELECT pg_terminate_backend($1::int)", 1, p, NULL), 0);
    nanosleep(&(struct timespec){0, 200 * 1000 * 1000}, NULL);
    assert_int_equal(kp_pg_exec(pg, "SELECT 1", 0, NULL, NULL), KP_EDB);
    assert_true(kp_pg_conn_lost(pg));
    assert_int_equal(kp_pg_reset(pg), 0);
    assert_int_equal(query_ll(pg, "SELECT 1"), 1);
    kp_pg_close(&other);
    kp_pg_close(&pg);
}

/* kp_pg_exec_prepared: the first run prepares the statement (pg_prepared_statements shows it,
 * once however often it runs), a failed run leaves it usable, a new session prepares it again,
 * and statements beyond the table's size still run (unprepared). */
static const char SQL_PREP_ADD[] = "SELECT $1::int + $2::int";
static const char SQL_PREP_BIN[] = "SELECT array_length($1::float8[], 1), ($1::float8[])[2]";
static const char SQL_PREP_DIV[] = "SELECT 10 / $1::int";

static long long prepared_count(struct kp_pg *pg)
{
    return query_ll(pg, "SELECT count(*) FROM pg_prepared_statements");
}

/* Runs a prepared statement of nparams parameters p; returns its one value. */
static long long prep_value(struct kp_pg *pg, const char *sql, int nparams, const char *const *p)
{
    struct kp_pg_res *r = NULL;
    int rc = kp_pg_exec_prepared(pg, sql, nparams, p, NULL, NULL, &r);
    if (rc)
        fprintf(stderr, "prepared: %s %s\n", kp_pg_sqlstate(pg), kp_pg_errmsg(pg));
    assert_int_equal(rc, 0);
    long long v = strtoll(kp_pg_res_value(r, 0, 0), NULL, 10);
    kp_pg_res_free(&r);
    return v;
}

static long long prep_add(struct kp_pg *pg, const char *sql, const char *a, const char *b)
{
    const char *p[2] = {a, b};
    return prep_value(pg, sql, 2, p);
}

static void test_prepared(void **state)
{
    (void)state;
    struct kp_pg *pg = connect_ok();
    assert_int_equal(prepared_count(pg), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(prep_add(pg, SQL_PREP_ADD, "40", i == 0 ? "2" : "3"), i == 0 ? 42 : 43);
    assert_int_equal(prepared_count(pg), 1);
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM pg_prepared_statements WHERE name = 'kp0'"
                                  " AND statement = 'SELECT $1::int + $2::int'"),
                     1);

    /* Binary parameters, as the scorer's cell writes send them. */
    struct kp_buf b = {0};
    kp_pg_barray_begin(&b, KP_PG_FLOAT8, 1);
    kp_pg_barray_add_f8(&b, 1.5);
    kp_pg_barray_add_f8(&b, -2.25);
    kp_pg_barray_add_f8(&b, 8);
    kp_pg_barray_end(&b, (int[]){3});
    const char *pb[1] = {(const char *)b.data};
    int len[1] = {(int)b.len}, fmt[1] = {1};
    struct kp_pg_res *r = NULL;
    assert_int_equal(kp_pg_exec_prepared(pg, SQL_PREP_BIN, 1, pb, len, fmt, &r), 0);
    assert_string_equal(kp_pg_res_value(r, 0, 0), "3");
    assert_string_equal(kp_pg_res_value(r, 0, 1), "-2.25");
    kp_pg_res_free(&r);
    kp_buf_fini(&b);
    assert_int_equal(prepared_count(pg), 2);

    /* A run that fails (22012) reports it; the statement stays prepared and runs again. */
    const char *zero[1] = {"0"}, *five[1] = {"5"};
    assert_int_equal(kp_pg_exec_prepared(pg, SQL_PREP_DIV, 1, zero, NULL, NULL, NULL), KP_EDB);
    assert_string_equal(kp_pg_sqlstate(pg), "22012");
    assert_int_equal(kp_pg_exec_prepared(pg, SQL_PREP_DIV, 1, five, NULL, NULL, &r), 0);
    assert_string_equal(kp_pg_res_value(r, 0, 0), "2");
    kp_pg_res_free(&r);
    assert_int_equal(prepared_count(pg), 3);

    /* A statement that does not parse is not recorded as prepared: it fails each time. */
    static const char bad[] = "SELEC 1";
    for (int i = 0; i < 2; i++) {
        assert_int_equal(kp_pg_exec_prepared(pg, bad, 0, NULL, NULL, NULL, NULL), KP_EDB);
        assert_string_equal(kp_pg_sqlstate(pg), "42601");
    }
    assert_int_equal(prepared_count(pg), 3);

    /* A new session has none: the next run prepares again. */
    assert_int_equal(kp_pg_exec(pg, "SELECT pg_terminate_backend(pg_backend_pid())", 0, NULL, NULL),
                     KP_EDB);
    assert_int_equal(kp_pg_reset(pg), 0);
    assert_int_equal(prepared_count(pg), 0);
    assert_int_equal(prep_add(pg, SQL_PREP_ADD, "1", "1"), 2);
    assert_int_equal(prepared_count(pg), 1);

    /* More statements than the table holds: the rest run unprepared. */
    static char many[KP_PG_PREPARED_MAX + 2][48];
    for (int i = 0; i < KP_PG_PREPARED_MAX + 2; i++) {
        snprintf(many[i], sizeof many[i], "SELECT $1::int + $2::int + %d", i);
        assert_int_equal(prep_add(pg, many[i], "1", "2"), 3 + i);
    }
    assert_int_equal(prepared_count(pg), KP_PG_PREPARED_MAX);
    assert_int_equal(prep_add(pg, many[KP_PG_PREPARED_MAX + 1], "0", "0"), KP_PG_PREPARED_MAX + 1);
    kp_pg_close(&pg);
}

/* The two halves (kp_pg_send_prepared / kp_pg_copy_send, then kp_pg_wait): one statement in
 * flight, every other call refused meanwhile, its result or failure at the wait. */
static void copy_ints(struct kp_buf *b, long long k0, int n)
{
    kp_pg_bcopy_begin(b);
    for (int i = 0; i < n; i++) {
        kp_pg_bcopy_row(b, 1);
        kp_pg_bcopy_i8(b, k0 + i);
    }
    kp_pg_bcopy_end(b);
}

static void test_in_flight(void **state)
{
    (void)state;
    static const char SQL_SLOW[] = "SELECT $1::int * 2 FROM pg_sleep(0.05)";
    static const char SQL_DIV[] = "SELECT 10 / $1::int";
    static const char SQL_COPY[] = "COPY kp_flight_t (k) FROM STDIN (FORMAT binary)";
    struct kp_pg *pg = connect_ok();
    exec_ok(pg, "DROP TABLE IF EXISTS kp_flight_t");
    exec_ok(pg, "CREATE TABLE kp_flight_t (k int8 PRIMARY KEY)");
    const char *p21[1] = {"21"}, *zero[1] = {"0"};
    struct kp_pg_res *r = NULL;
    struct kp_buf b = {0};
    copy_ints(&b, 1, 3);

    assert_int_equal(kp_pg_send_prepared(pg, SQL_SLOW, 1, p21, NULL, NULL), 0);
    /* Meanwhile every other call fails, and leaves the statement in flight. */
    assert_int_equal(kp_pg_exec(pg, "SELECT 1", 0, NULL, NULL), KP_EDB);
    assert_non_null(strstr(kp_pg_errmsg(pg), "in flight"));
    assert_int_equal(kp_pg_send_prepared(pg, SQL_DIV, 1, p21, NULL, NULL), KP_EDB);
    assert_int_equal(kp_pg_copy_send(pg, SQL_COPY, b.data, b.len), KP_EDB);
    assert_int_equal(kp_pg_exec_prepared(pg, SQL_DIV, 1, p21, NULL, NULL, NULL), KP_EDB);
    assert_int_equal(kp_pg_wait(pg, &r), 0);
    assert_string_equal(kp_pg_res_value(r, 0, 0), "42");
    kp_pg_res_free(&r);
    assert_int_equal(kp_pg_wait(pg, &r), KP_EDB); /* nothing in flight now */
    assert_null(r);
    assert_true(kp_pg_ok(pg));

    /* A COPY: its rows counted at the wait; a refused row (23505) reported there, the
     * connection usable after it. */
    assert_int_equal(kp_pg_copy_send(pg, SQL_COPY, b.data, b.len), 0);
    assert_int_equal(kp_pg_wait(pg, &r), 0);
    assert_int_equal(kp_pg_res_affected(r), 3);
    kp_pg_res_free(&r);
    copy_ints(&b, 3, 2); /* 3 is stored already */
    assert_int_equal(kp_pg_copy_send(pg, SQL_COPY, b.data, b.len), 0);
    assert_int_equal(kp_pg_wait(pg, &r), KP_EDB);
    assert_string_equal(kp_pg_sqlstate(pg), "23505");
    assert_null(r);
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM kp_flight_t"), 3);

    /* A statement that fails when it runs (22012) fails at the wait, not at the send. */
    assert_int_equal(kp_pg_send_prepared(pg, SQL_DIV, 1, zero, NULL, NULL), 0);
    assert_int_equal(kp_pg_wait(pg, NULL), KP_EDB);
    assert_string_equal(kp_pg_sqlstate(pg), "22012");
    assert_int_equal(query_ll(pg, "SELECT 7"), 7);

    /* A new session forgets what was in flight in the old one. */
    assert_int_equal(kp_pg_send_prepared(pg, SQL_SLOW, 1, p21, NULL, NULL), 0);
    assert_int_equal(kp_pg_reset(pg), 0);
    assert_int_equal(kp_pg_wait(pg, NULL), KP_EDB);
    assert_int_equal(query_ll(pg, "SELECT 8"), 8);

    exec_ok(pg, "DROP TABLE kp_flight_t");
    kp_buf_fini(&b);
    kp_pg_close(&pg);
}

/* Rows k0 .. k0 + n - 1 of kp_copy_stream_t as binary COPY data without the header, with the
 * trailer when `last`. */
static void int_rows(struct kp_buf *b, long long k0, int n, bool last)
{
    kp_buf_reset(b);
    for (int i = 0; i < n; i++) {
        kp_pg_bcopy_row(b, 1);
        kp_pg_bcopy_i8(b, k0 + i);
    }
    if (last)
        kp_pg_bcopy_end(b);
}

/* A COPY in pieces (kp_pg_copy_open, _put, _close, then kp_pg_wait): the rows of every piece
 * counted at the wait, every other call refused while it is open, a BEGIN of kp_pg_begin sent
 * with it, a refused row reported at the wait with the connection usable after it. */
static void test_copy_stream(void **state)
{
    (void)state;
    static const char SQL_COPY[] = "COPY kp_copy_stream_t (k) FROM STDIN (FORMAT binary)";
    struct kp_pg *pg = connect_ok();
    exec_ok(pg, "DROP TABLE IF EXISTS kp_copy_stream_t");
    exec_ok(pg, "CREATE TABLE kp_copy_stream_t (k int8 PRIMARY KEY)");
    struct kp_buf h = {0}, b = {0};
    kp_pg_bcopy_begin(&h); /* the header alone */
    struct kp_pg_res *r = NULL;

    /* Three pieces: the header, rows 1-3, rows 4-5 and the trailer. */
    assert_false(kp_pg_copy_is_open(pg));
    assert_int_equal(kp_pg_copy_open(pg, SQL_COPY), 0);
    assert_true(kp_pg_copy_is_open(pg));
    assert_int_equal(kp_pg_copy_put(pg, h.data, h.len), 0);
    int_rows(&b, 1, 3, false);
    assert_int_equal(kp_pg_copy_put(pg, b.data, b.len), 0);
    /* Meanwhile every other call fails, and leaves the COPY open. */
    assert_int_equal(kp_pg_exec(pg, "SELECT 1", 0, NULL, NULL), KP_EDB);
    assert_non_null(strstr(kp_pg_errmsg(pg), "COPY is open"));
    assert_int_equal(kp_pg_copy_open(pg, SQL_COPY), KP_EDB);
    assert_int_equal(kp_pg_pipeline_begin(pg), KP_EDB);
    assert_int_equal(kp_pg_begin(pg), KP_EDB);
    assert_int_equal(kp_pg_wait(pg, NULL), KP_EDB);
    assert_true(kp_pg_copy_is_open(pg));
    int_rows(&b, 4, 2, true);
    assert_int_equal(kp_pg_copy_put(pg, b.data, b.len), 0);
    assert_int_equal(kp_pg_copy_close(pg), 0);
    assert_false(kp_pg_copy_is_open(pg));
    assert_int_equal(kp_pg_wait(pg, &r), 0);
    assert_int_equal(kp_pg_res_affected(r), 5);
    kp_pg_res_free(&r);
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM kp_copy_stream_t"), 5);

    /* After kp_pg_begin the COPY runs in the transaction BEGIN opened: a ROLLBACK takes its
     * rows away again. */
    assert_int_equal(kp_pg_begin(pg), 0);
    assert_int_equal(kp_pg_copy_open(pg, SQL_COPY), 0);
    assert_int_equal(kp_pg_copy_put(pg, h.data, h.len), 0);
    int_rows(&b, 6, 2, true);
    assert_int_equal(kp_pg_copy_put(pg, b.data, b.len), 0);
    assert_int_equal(kp_pg_copy_close(pg), 0);
    assert_int_equal(kp_pg_wait(pg, NULL), 0);
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM kp_copy_stream_t"), 7);
    exec_ok(pg, "ROLLBACK");
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM kp_copy_stream_t"), 5);

    /* A stored row in the first piece: the later pieces still go (the server drops them), and
     * the wait reports 23505; nothing of that COPY is stored. */
    assert_int_equal(kp_pg_copy_open(pg, SQL_COPY), 0);
    assert_int_equal(kp_pg_copy_put(pg, h.data, h.len), 0);
    int_rows(&b, 5, 1, false);
    assert_int_equal(kp_pg_copy_put(pg, b.data, b.len), 0);
    int_rows(&b, 8, 1, true);
    assert_int_equal(kp_pg_copy_put(pg, b.data, b.len), 0);
    assert_int_equal(kp_pg_copy_close(pg), 0);
    assert_int_equal(kp_pg_wait(pg, NULL), KP_EDB);
    assert_string_equal(kp_pg_sqlstate(pg), "23505");
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM kp_copy_stream_t"), 5);

    /* No COPY open: a put or a close fails. */
    assert_int_equal(kp_pg_copy_put(pg, b.data, b.len), KP_EDB);
    assert_int_equal(kp_pg_copy_close(pg), KP_EDB);
    assert_true(kp_pg_ok(pg));

    exec_ok(pg, "DROP TABLE kp_copy_stream_t");
    kp_buf_fini(&h);
    kp_buf_fini(&b);
    kp_pg_close(&pg);
}

/* A pipeline: statements queued without waiting, their results in order at the waits, the
 * calls that would take a result out of order refused; a failure skips the rest up to the
 * end, and a statement whose preparation was skipped is prepared again at its next use; a
 * session lost inside a pipeline is replaced by kp_pg_reset. */
static void test_pipeline(void **state)
{
    (void)state;
    static const char SQL_MUL[] = "SELECT $1::int * 3";
    static const char SQL_DIV[] = "SELECT 10 / $1::int";
    static const char SQL_ADD[] = "SELECT $1::int + 100";
    static const char SQL_INS[] = "INSERT INTO kp_pipe_t (k) VALUES ($1::int)";
    static const char SQL_COPY[] = "COPY kp_pipe_t (k) FROM STDIN (FORMAT binary)";
    struct kp_pg *pg = connect_ok();
    exec_ok(pg, "DROP TABLE IF EXISTS kp_pipe_t");
    exec_ok(pg, "CREATE TABLE kp_pipe_t (k int PRIMARY KEY)");
    long long prepared0 = prepared_count(pg);
    const char *p1[1] = {"1"}, *p2[1] = {"2"}, *p5[1] = {"5"}, *zero[1] = {"0"};
    struct kp_pg_res *r = NULL;
    struct kp_buf b = {0};
    copy_ints(&b, 1, 1);

    /* Committed: three runs of a statement prepared inside, an unprepared insert, COMMIT. */
    exec_ok(pg, "BEGIN");
    assert_false(kp_pg_in_pipeline(pg));
    assert_int_equal(kp_pg_pipeline_begin(pg), 0);
    assert_true(kp_pg_in_pipeline(pg));
    assert_int_equal(kp_pg_pipeline_begin(pg), KP_EDB); /* not twice */
    assert_int_equal(kp_pg_send_prepared(pg, SQL_MUL, 1, p1, NULL, NULL), 0);
    assert_int_equal(kp_pg_send_prepared(pg, SQL_MUL, 1, p2, NULL, NULL), 0);
    assert_int_equal(kp_pg_send(pg, SQL_INS, 1, p5), 0);
    assert_int_equal(kp_pg_send_prepared(pg, SQL_MUL, 1, p5, NULL, NULL), 0);
    /* What would take a result out of order, or cannot be in a pipeline, is refused. */
    assert_int_equal(kp_pg_exec(pg, "SELECT 1", 0, NULL, NULL), KP_EDB);
    assert_non_null(strstr(kp_pg_errmsg(pg), "in flight"));
    assert_int_equal(kp_pg_exec_prepared(pg, SQL_MUL, 1, p1, NULL, NULL, NULL), KP_EDB);
    assert_int_equal(kp_pg_copy_send(pg, SQL_COPY, b.data, b.len), KP_EDB);
    assert_int_equal(kp_pg_wait(pg, &r), 0);
    assert_string_equal(kp_pg_res_value(r, 0, 0), "3");
    kp_pg_res_free(&r);
    assert_int_equal(kp_pg_wait(pg, &r), 0);
    assert_string_equal(kp_pg_res_value(r, 0, 0), "6");
    kp_pg_res_free(&r);
    assert_int_equal(kp_pg_wait(pg, &r), 0);
    assert_int_equal(kp_pg_res_affected(r), 1);
    kp_pg_res_free(&r);
    assert_int_equal(kp_pg_wait(pg, &r), 0);
    assert_string_equal(kp_pg_res_value(r, 0, 0), "15");
    kp_pg_res_free(&r);
    /* Nothing outstanding: a statement runs (send, then wait) inside the pipeline. */
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM kp_pipe_t"), 1);
    assert_int_equal(kp_pg_send(pg, "COMMIT", 0, NULL), 0);
    assert_int_equal(kp_pg_pipeline_sync(pg), 0);
    assert_int_equal(kp_pg_send(pg, "SELECT 1", 0, NULL), KP_EDB); /* synced: no more */
    assert_int_equal(kp_pg_wait(pg, NULL), 0);
    assert_int_equal(kp_pg_wait(pg, NULL), KP_EDB); /* nothing outstanding */
    assert_int_equal(kp_pg_pipeline_end(pg), 0);
    assert_false(kp_pg_in_pipeline(pg));
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM kp_pipe_t WHERE k = 5"), 1);
    assert_int_equal(prepared_count(pg), prepared0 + 1); /* SQL_MUL, once */

    /* A failure (22012) at its wait; what follows it is skipped, COMMIT too; the end reports
     * it; the transaction rolls back. SQL_ADD's preparation was skipped with it. */
    exec_ok(pg, "BEGIN");
    assert_int_equal(kp_pg_pipeline_begin(pg), 0);
    const char *p7[1] = {"7"};
    assert_int_equal(kp_pg_send(pg, SQL_INS, 1, p7), 0);
    assert_int_equal(kp_pg_send_prepared(pg, SQL_DIV, 1, zero, NULL, NULL), 0);
    assert_int_equal(kp_pg_send_prepared(pg, SQL_ADD, 1, p1, NULL, NULL), 0);
    assert_int_equal(kp_pg_send(pg, "COMMIT", 0, NULL), 0);
    assert_int_equal(kp_pg_pipeline_sync(pg), 0);
    assert_int_equal(kp_pg_wait(pg, NULL), 0);
    assert_int_equal(kp_pg_wait(pg, NULL), KP_EDB);
    assert_string_equal(kp_pg_sqlstate(pg), "22012");
    assert_false(kp_pg_conn_lost(pg));
    assert_int_equal(kp_pg_wait(pg, &r), KP_EDB);
    assert_null(r);
    assert_non_null(strstr(kp_pg_errmsg(pg), "skipped"));
    assert_int_equal(kp_pg_pipeline_end(pg), KP_EDB); /* COMMIT collected and dropped here */
    assert_non_null(strstr(kp_pg_errmsg(pg), "skipped"));
    assert_false(kp_pg_conn_lost(pg));
    exec_ok(pg, "ROLLBACK");
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM kp_pipe_t"), 1); /* 7 is not stored */
    /* SQL_ADD is prepared again at its next use (it does not exist on the server). */
    assert_int_equal(prep_value(pg, SQL_ADD, 1, (const char *[]){"5"}), 105);
    assert_int_equal(prepared_count(pg), prepared0 + 3);

    /* Ended with results outstanding and no sync of its own: collected, the session usable. */
    assert_int_equal(kp_pg_pipeline_begin(pg), 0);
    assert_int_equal(kp_pg_send_prepared(pg, SQL_MUL, 1, p2, NULL, NULL), 0);
    assert_int_equal(kp_pg_send(pg, SQL_INS, 1, p7), 0);
    assert_int_equal(kp_pg_pipeline_end(pg), 0);
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM kp_pipe_t WHERE k = 7"), 1);

    /* A failure whose SQLSTATE says the session ends (57P01) while the server keeps it: what
     * follows is still collected, and the session left usable, or not ok so that the caller
     * resets it, as a daemon does; never ok but unable to run a statement. */
    assert_int_equal(kp_pg_pipeline_begin(pg), 0);
    assert_int_equal(kp_pg_send(pg,
                                "DO $$ BEGIN RAISE EXCEPTION 'kp test' USING ERRCODE = '57P01'; "
                                "END $$",
                                0, NULL),
                     0);
    assert_int_equal(kp_pg_send_prepared(pg, SQL_MUL, 1, p1, NULL, NULL), 0);
    assert_int_equal(kp_pg_send(pg, "SELECT 2", 0, NULL), 0);
    assert_int_equal(kp_pg_pipeline_sync(pg), 0);
    assert_int_equal(kp_pg_wait(pg, NULL), KP_EDB);
    assert_string_equal(kp_pg_sqlstate(pg), "57P01");
    assert_int_equal(kp_pg_pipeline_end(pg), KP_EDB);
    if (!kp_pg_ok(pg))
        assert_int_equal(kp_pg_reset(pg), 0);
    assert_int_equal(query_ll(pg, "SELECT 10"), 10);

    /* The session lost inside a pipeline: the waits fail, reset gives a new one. */
    assert_int_equal(kp_pg_pipeline_begin(pg), 0);
    assert_int_equal(kp_pg_send(pg, "SELECT pg_terminate_backend(pg_backend_pid())", 0, NULL), 0);
    assert_int_equal(kp_pg_send_prepared(pg, SQL_MUL, 1, p1, NULL, NULL), 0);
    assert_int_equal(kp_pg_wait(pg, NULL), KP_EDB);
    assert_true(kp_pg_conn_lost(pg));
    assert_int_equal(kp_pg_pipeline_end(pg), KP_EDB);
    assert_true(kp_pg_conn_lost(pg));
    assert_false(kp_pg_in_pipeline(pg));
    assert_false(kp_pg_ok(pg)); /* what makes a daemon reset it */
    assert_int_equal(kp_pg_exec(pg, "SELECT 1", 0, NULL, NULL), KP_EDB);
    assert_int_equal(kp_pg_reset(pg), 0);
    assert_true(kp_pg_ok(pg));
    assert_int_equal(query_ll(pg, "SELECT 9"), 9);
    assert_int_equal(prep_value(pg, SQL_ADD, 1, (const char *[]){"1"}), 101);

    exec_ok(pg, "DROP TABLE kp_pipe_t");
    kp_buf_fini(&b);
    kp_pg_close(&pg);
}

/* kp_pg_begin: the transaction begins with whichever call runs next (a statement, a prepared
 * one, a COPY, a pipeline), so ROLLBACK takes back what that call wrote, and COMMIT keeps it. */
static void test_begin_deferred(void **state)
{
    (void)state;
    static const char SQL_INS[] = "INSERT INTO kp_begin_t (k) VALUES ($1::int)";
    static const char SQL_COPY[] = "COPY kp_begin_t (k) FROM STDIN (FORMAT binary)";
    struct kp_pg *pg = connect_ok();
    exec_ok(pg, "DROP TABLE IF EXISTS kp_begin_t");
    exec_ok(pg, "CREATE TABLE kp_begin_t (k int8 PRIMARY KEY)");
    const char *p1[1] = {"1"}, *p2[1] = {"2"}, *p3[1] = {"3"};
    struct kp_buf b = {0};

    assert_int_equal(kp_pg_begin(pg), 0);
    assert_int_equal(kp_pg_begin(pg), KP_EDB); /* not twice */
    assert_int_equal(kp_pg_exec(pg, SQL_INS, 1, p1, NULL), 0);
    exec_ok(pg, "ROLLBACK");
    assert_int_equal(kp_pg_begin(pg), 0);
    assert_int_equal(kp_pg_exec_prepared(pg, SQL_INS, 1, p2, NULL, NULL, NULL), 0);
    exec_ok(pg, "ROLLBACK");
    assert_int_equal(kp_pg_begin(pg), 0);
    copy_ints(&b, 10, 3);
    assert_int_equal(kp_pg_copy_send(pg, SQL_COPY, b.data, b.len), 0);
    assert_int_equal(kp_pg_wait(pg, NULL), 0);
    exec_ok(pg, "ROLLBACK");
    assert_int_equal(kp_pg_begin(pg), 0);
    assert_int_equal(kp_pg_pipeline_begin(pg), 0);
    assert_int_equal(kp_pg_send(pg, SQL_INS, 1, p3), 0);
    assert_int_equal(kp_pg_send(pg, "ROLLBACK", 0, NULL), 0);
    assert_int_equal(kp_pg_wait(pg, NULL), 0); /* the INSERT's: BEGIN's was checked on the way */
    assert_int_equal(kp_pg_wait(pg, NULL), 0);
    assert_int_equal(kp_pg_pipeline_end(pg), 0);
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM kp_begin_t"), 0);

    /* COMMIT keeps what the first statement wrote; a failing first statement fails the call. */
    assert_int_equal(kp_pg_begin(pg), 0);
    assert_int_equal(kp_pg_exec_prepared(pg, SQL_INS, 1, p1, NULL, NULL, NULL), 0);
    exec_ok(pg, "COMMIT");
    assert_int_equal(kp_pg_begin(pg), 0);
    assert_int_equal(kp_pg_exec(pg, SQL_INS, 1, p1, NULL), KP_EDB);
    assert_string_equal(kp_pg_sqlstate(pg), "23505");
    assert_false(kp_pg_in_pipeline(pg));
    exec_ok(pg, "ROLLBACK");
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM kp_begin_t"), 1);

    exec_ok(pg, "DROP TABLE kp_begin_t");
    kp_buf_fini(&b);
    kp_pg_close(&pg);
}

/* Doubles come back as text that parses to the same double, even when the database's
 * default would round them (extra_float_digits = 0). */
static void test_float_text_exact(void **state)
{
    (void)state;
    struct kp_pg *admin = connect_ok();
    exec_ok(admin, "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET extra_float_digits = 0', "
                   "current_database()); END $$");
    struct kp_pg *pg = connect_ok();
    struct kp_pg_res *r = NULL;
    assert_int_equal(
        kp_pg_exec(pg, "SELECT 0.1::float8 + 0.2::float8, 1.0::float8 / 3", 0, NULL, &r), 0);
    double a = strtod(kp_pg_res_value(r, 0, 0), NULL), b = strtod(kp_pg_res_value(r, 0, 1), NULL);
    double want_a = 0.1 + 0.2, want_b = 1.0 / 3;
    assert_memory_equal(&a, &want_a, sizeof a);
    assert_memory_equal(&b, &want_b, sizeof b);
    kp_pg_res_free(&r);
    /* and after a reconnection */
    assert_int_equal(kp_pg_reset(pg), 0);
    assert_int_equal(kp_pg_exec(pg, "SHOW extra_float_digits", 0, NULL, &r), 0);
    assert_string_equal(kp_pg_res_value(r, 0, 0), "3");
    kp_pg_res_free(&r);
    exec_ok(admin, "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I RESET extra_float_digits', "
                   "current_database()); END $$");
    kp_pg_close(&pg);
    kp_pg_close(&admin);
}

/* ---- array builders ------------------------------------------------------------------- */

static void test_array_text_roundtrip(void **state)
{
    (void)state;
    static const char *const elems[] = {
        "plain",
        "",
        "NULL", /* the text NULL, not SQL NULL */
        NULL,
        "with \"double\" quotes",
        "back\\slash and \\\" both",
        "trailing backslash \\",
        "comma, separated",
        "{braces}",
        "} { , \"",
        "  leading and trailing spaces  ",
        "tab\tnewline\nreturn\r",
        "海城市经济开发区",
        "单引号 ' 和 \"双引号\"",
        "\\",
        "\"",
        "'",
        "a,b}{c\\\"d",
    };
    size_t n = sizeof elems / sizeof elems[0];
    struct kp_buf b = {0};
    kp_pg_array_begin(&b);
    for (size_t i = 0; i < n; i++)
        kp_pg_array_add(&b, elems[i]);
    kp_pg_array_end(&b);

    struct kp_pg *pg = connect_ok();
    const char *params[1] = {kp_buf_cstr(&b)};
    struct kp_pg_res *r = NULL;
    int rc = kp_pg_exec(pg,
                        "SELECT ord, e IS NULL, e FROM unnest($1::text[]) WITH ORDINALITY "
                        "AS t(e, ord) ORDER BY ord",
                        1, params, &r);
    if (rc)
        fprintf(stderr, "%s: %s\n", params[0], kp_pg_errmsg(pg));
    assert_int_equal(rc, 0);
    assert_int_equal(kp_pg_res_ntuples(r), (int)n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(strtol(kp_pg_res_value(r, (int)i, 0), NULL, 10), (long)i + 1);
        if (elems[i] == NULL) {
            assert_string_equal(kp_pg_res_value(r, (int)i, 1), "t");
            assert_true(kp_pg_res_isnull(r, (int)i, 2));
        } else {
            assert_string_equal(kp_pg_res_value(r, (int)i, 1), "f");
            assert_string_equal(kp_pg_res_value(r, (int)i, 2), elems[i]);
        }
    }
    kp_pg_res_free(&r);

    /* Begin resets: an empty array is "{}" and unnests to no rows. */
    kp_pg_array_begin(&b);
    kp_pg_array_end(&b);
    assert_string_equal(kp_buf_cstr(&b), "{}");
    params[0] = kp_buf_cstr(&b);
    assert_int_equal(kp_pg_exec(pg, "SELECT count(*) FROM unnest($1::text[])", 1, params, &r), 0);
    assert_string_equal(kp_pg_res_value(r, 0, 0), "0");
    kp_pg_res_free(&r);
    kp_pg_close(&pg);
    kp_buf_fini(&b);
}

/* ---- COPY ------------------------------------------------------------------------------ */

/* Every kind of field through kp_pg_bcopy_* and a binary COPY FROM STDIN comes back as
 * written: text with what a text COPY would misread (tabs, newlines, backslashes, "\\N"), SQL
 * NULL, doubles to the bit (NaN, infinities, -0), int8 to its limits, numeric(20,0) over the
 * whole uint64 range with zero base-10000 digits anywhere, timestamps to the millisecond over
 * the years 1 to 9999 and before the epoch, jsonb. A unique violation fails with 23505 and
 * leaves the connection usable; a statement that is not a COPY fails; so does bad data. */
static void test_copy_roundtrip(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "plain", "", "\\N", "NULL", NULL, "tab\there", "new\nline", "cr\rhere", "back\\slash",
        "trailing \\", "\\.", "海城市经济开发区",
    };
    static const double dbl[] = {0.1 + 0.2, 1.0 / 3, -0.0, 1e-300, 5e-324, 1.7976931348623157e308,
                                 -123456.789, 0, 58.73, 1e22, NAN, INFINITY, -INFINITY};
    static const long long ms[] = {0, 1, -1, 999, -999, 1764000000123LL, -62135596800000LL,
                                   253402300799999LL, 951782400000LL /* 2000-02-29 */};
    static const unsigned long long num[] = {0,
                                             1,
                                             9999,
                                             10000,
                                             10001,
                                             100000000,
                                             1000000010000ULL,
                                             12345678901234567890ULL,
                                             10000000000000000000ULL,
                                             UINT64_MAX,
                                             1764000000000000001ULL};
    size_t nt = sizeof texts / sizeof texts[0], nd = sizeof dbl / sizeof dbl[0],
           nm = sizeof ms / sizeof ms[0], nn = sizeof num / sizeof num[0];
    size_t n = nt;
    if (nd > n)
        n = nd;
    if (nm > n)
        n = nm;
    if (nn > n)
        n = nn;
    struct kp_pg *pg = connect_ok();
    exec_ok(pg, "DROP TABLE IF EXISTS kp_copy_t");
    exec_ok(pg, "CREATE TABLE kp_copy_t (k int8 PRIMARY KEY, t text, d float8, i int8, "
                "u numeric(20,0), at timestamptz, j jsonb)");
    struct kp_buf b = {0};
    kp_pg_bcopy_begin(&b);
    for (size_t i = 0; i < n; i++) {
        kp_pg_bcopy_row(&b, 7);
        kp_pg_bcopy_i8(&b, (long long)i);
        kp_pg_bcopy_text(&b, texts[i % nt]);
        kp_pg_bcopy_f8(&b, dbl[i % nd]);
        kp_pg_bcopy_i8(&b, i % 2 ? INT64_MIN : INT64_MAX);
        kp_pg_bcopy_numeric_u64(&b, num[i % nn]);
        kp_pg_bcopy_ts_ms(&b, ms[i % nm]);
        kp_pg_bcopy_jsonb(&b, i == 0 ? "{\"q\": \"tab\\there, back\\\\slash, 测试\"}" : NULL);
    }
    kp_pg_bcopy_end(&b);
    long long rows = -1;
    int rc = kp_pg_copy_in(pg, "COPY kp_copy_t (k, t, d, i, u, at, j) FROM STDIN (FORMAT binary)",
                           b.data, b.len, &rows);
    if (rc)
        fprintf(stderr, "copy: %s\n", kp_pg_errmsg(pg));
    assert_int_equal(rc, 0);
    assert_int_equal(rows, (long long)n);

    struct kp_pg_res *r = NULL;
    assert_int_equal(kp_pg_exec(pg,
                                "SELECT k, t IS NULL, t, d, i, u, "
                                "(extract(epoch FROM at) * 1000)::int8, j->>'q', j IS NULL "
                                "FROM kp_copy_t ORDER BY k",
                                0, NULL, &r),
                     0);
    assert_int_equal(kp_pg_res_ntuples(r), (int)n);
    char want[64];
    for (size_t i = 0; i < n; i++) {
        int row = (int)i;
        const char *t = texts[i % nt];
        assert_string_equal(kp_pg_res_value(r, row, 1), t ? "f" : "t");
        if (t)
            assert_string_equal(kp_pg_res_value(r, row, 2), t);
        double d = strtod(kp_pg_res_value(r, row, 3), NULL), wd = dbl[i % nd];
        if (isnan(wd))
            assert_true(isnan(d));
        else
            assert_memory_equal(&d, &wd, sizeof d); /* -0.0 too */
        snprintf(want, sizeof want, "%lld", i % 2 ? (long long)INT64_MIN : (long long)INT64_MAX);
        assert_string_equal(kp_pg_res_value(r, row, 4), want);
        snprintf(want, sizeof want, "%llu", num[i % nn]);
        assert_string_equal(kp_pg_res_value(r, row, 5), want);
        snprintf(want, sizeof want, "%lld", ms[i % nm]);
        assert_string_equal(kp_pg_res_value(r, row, 6), want);
        assert_string_equal(kp_pg_res_value(r, row, 8), i == 0 ? "f" : "t");
    }
    assert_string_equal(kp_pg_res_value(r, 0, 7), "tab\there, back\\slash, 测试");
    kp_pg_res_free(&r);
    /* the years' ends as PostgreSQL prints them */
    assert_int_equal(kp_pg_exec(pg,
                                "SELECT to_char(min(at) AT TIME ZONE 'UTC', "
                                "'YYYY-MM-DD HH24:MI:SS.MS'), to_char(max(at) AT TIME ZONE "
                                "'UTC', 'YYYY-MM-DD HH24:MI:SS.MS') FROM kp_copy_t",
                                0, NULL, &r),
                     0);
    assert_string_equal(kp_pg_res_value(r, 0, 0), "0001-01-01 00:00:00.000");
    assert_string_equal(kp_pg_res_value(r, 0, 1), "9999-12-31 23:59:59.999");
    kp_pg_res_free(&r);

    /* A key stored already: 23505, nothing of the COPY stored, the connection usable. */
    kp_pg_bcopy_begin(&b);
    kp_pg_bcopy_row(&b, 2);
    kp_pg_bcopy_i8(&b, 1000);
    kp_pg_bcopy_text(&b, "new");
    kp_pg_bcopy_row(&b, 2);
    kp_pg_bcopy_i8(&b, 0);
    kp_pg_bcopy_text(&b, "again");
    kp_pg_bcopy_end(&b);
    static const char COPY2[] = "COPY kp_copy_t (k, t) FROM STDIN (FORMAT binary)";
    assert_int_equal(kp_pg_copy_in(pg, COPY2, b.data, b.len, &rows), KP_EDB);
    assert_string_equal(kp_pg_sqlstate(pg), "23505");
    assert_false(kp_pg_conn_lost(pg));
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM kp_copy_t"), (long long)n);
    /* Not a COPY, or a table that is not there: refused. */
    assert_int_equal(kp_pg_copy_in(pg, "SELECT 1", b.data, b.len, &rows), KP_EDB);
    assert_int_equal(kp_pg_copy_in(pg, "COPY nowhere FROM STDIN (FORMAT binary)", b.data, b.len,
                                   &rows),
                     KP_EDB);
    assert_string_equal(kp_pg_sqlstate(pg), "42P01");
    /* Rows of the wrong width, and data cut short: refused, nothing stored, still usable. */
    assert_int_equal(kp_pg_copy_in(pg, "COPY kp_copy_t (k) FROM STDIN (FORMAT binary)", b.data,
                                   b.len, &rows),
                     KP_EDB);
    assert_string_equal(kp_pg_sqlstate(pg), "22P04");
    assert_int_equal(kp_pg_copy_in(pg, COPY2, b.data, b.len - 5, &rows), KP_EDB);
    assert_string_equal(kp_pg_sqlstate(pg), "22P04");
    assert_false(kp_pg_conn_lost(pg));
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM kp_copy_t"), (long long)n);
    exec_ok(pg, "DROP TABLE kp_copy_t");
    kp_pg_close(&pg);
    kp_buf_fini(&b);
}

static void test_array_numbers_roundtrip(void **state)
{
    (void)state;
    static const double dv[] = {0.0,
                                -0.0,
                                1.5,
                                0.1,
                                1.0 / 3.0,
                                -2.5e-300,
                                1.7976931348623157e308,
                                4.9e-324,
                                58.73,
                                123456789.123456789};
    static const long long iv[] = {0, 1, -1, 1700000000123LL, INT64_MAX, INT64_MIN};
    static const unsigned long long uv[] = {0, 1, 18446744073709551615ULL, 9007199254740993ULL};
    size_t nd = sizeof dv / sizeof dv[0], ni = sizeof iv / sizeof iv[0],
           nu = sizeof uv / sizeof uv[0];
    struct kp_buf bd = {0}, bi = {0}, bu = {0};
    kp_pg_array_begin(&bd);
    for (size_t i = 0; i < nd; i++)
        kp_pg_array_add_double(&bd, dv[i]);
    kp_pg_array_add_double(&bd, NAN);
    kp_pg_array_add_double(&bd, INFINITY);
    kp_pg_array_add_double(&bd, -INFINITY);
    kp_pg_array_end(&bd);
    kp_pg_array_begin(&bi);
    for (size_t i = 0; i < ni; i++)
        kp_pg_array_add_i64(&bi, iv[i]);
    kp_pg_array_end(&bi);
    kp_pg_array_begin(&bu);
    for (size_t i = 0; i < nu; i++)
        kp_pg_array_add_u64(&bu, uv[i]);
    kp_pg_array_end(&bu);

    struct kp_pg *pg = connect_ok();
    /* Doubles: the text PostgreSQL prints back parses to the very same double. */
    const char *p1[1] = {kp_buf_cstr(&bd)};
    struct kp_pg_res *r = NULL;
    assert_int_equal(kp_pg_exec(pg,
                                "SELECT v::text FROM unnest($1::float8[]) WITH ORDINALITY "
                                "AS t(v, ord) ORDER BY ord",
                                1, p1, &r),
                     0);
    assert_int_equal(kp_pg_res_ntuples(r), (int)nd + 3);
    for (size_t i = 0; i < nd; i++) {
        double got = strtod(kp_pg_res_value(r, (int)i, 0), NULL);
        assert_memory_equal(&got, &dv[i], sizeof got);
    }
    assert_string_equal(kp_pg_res_value(r, (int)nd, 0), "NaN");
    assert_string_equal(kp_pg_res_value(r, (int)nd + 1, 0), "Infinity");
    assert_string_equal(kp_pg_res_value(r, (int)nd + 2, 0), "-Infinity");
    kp_pg_res_free(&r);

    const char *p2[1] = {kp_buf_cstr(&bi)};
    assert_int_equal(kp_pg_exec(pg,
                                "SELECT v FROM unnest($1::int8[]) WITH ORDINALITY AS t(v, ord) "
                                "ORDER BY ord",
                                1, p2, &r),
                     0);
    assert_int_equal(kp_pg_res_ntuples(r), (int)ni);
    for (size_t i = 0; i < ni; i++)
        assert_true(strtoll(kp_pg_res_value(r, (int)i, 0), NULL, 10) == iv[i]);
    kp_pg_res_free(&r);

    const char *p3[1] = {kp_buf_cstr(&bu)};
    assert_int_equal(kp_pg_exec(pg,
                                "SELECT v FROM unnest($1::numeric(20,0)[]) WITH ORDINALITY "
                                "AS t(v, ord) ORDER BY ord",
                                1, p3, &r),
                     0);
    assert_int_equal(kp_pg_res_ntuples(r), (int)nu);
    for (size_t i = 0; i < nu; i++)
        assert_true(strtoull(kp_pg_res_value(r, (int)i, 0), NULL, 10) == uv[i]);
    kp_pg_res_free(&r);

    /* Several arrays unnested side by side, as the scorer's bulk statements do. */
    struct kp_buf bt = {0};
    kp_pg_array_begin(&bt);
    kp_pg_array_add(&bt, "一");
    kp_pg_array_add(&bt, NULL);
    kp_pg_array_add(&bt, "three,3");
    kp_pg_array_end(&bt);
    kp_pg_array_begin(&bi);
    kp_pg_array_add_i64(&bi, 10);
    kp_pg_array_add_i64(&bi, 20);
    kp_pg_array_add_i64(&bi, 30);
    kp_pg_array_end(&bi);
    const char *p4[2] = {kp_buf_cstr(&bt), kp_buf_cstr(&bi)};
    assert_int_equal(kp_pg_exec(pg,
                                "SELECT coalesce(a, '<null>') || ':' || b FROM "
                                "unnest($1::text[], $2::int8[]) AS t(a, b)",
                                2, p4, &r),
                     0);
    assert_int_equal(kp_pg_res_ntuples(r), 3);
    assert_string_equal(kp_pg_res_value(r, 0, 0), "一:10");
    assert_string_equal(kp_pg_res_value(r, 1, 0), "<null>:20");
    assert_string_equal(kp_pg_res_value(r, 2, 0), "three,3:30");
    kp_pg_res_free(&r);

    kp_pg_close(&pg);
    kp_buf_fini(&bd);
    kp_buf_fini(&bi);
    kp_buf_fini(&bu);
    kp_buf_fini(&bt);
}

/* ---- migrations ----------------------------------------------------------------------- */

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void make_dir(char *tmpl)
{
    assert_non_null(mkdtemp(tmpl));
}

static void remove_dir(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* A connection working in its own schema, so that each test has its own
 * kp_schema_version. */
static struct kp_pg *connect_schema(const char *schema)
{
    struct kp_pg *pg = connect_ok();
    char sql[200];
    snprintf(sql, sizeof sql, "CREATE SCHEMA IF NOT EXISTS %s", schema);
    /* Two threads may race on CREATE SCHEMA IF NOT EXISTS; the test creates it first. */
    exec_ok(pg, sql);
    snprintf(sql, sizeof sql, "SET search_path TO %s", schema);
    exec_ok(pg, sql);
    return pg;
}

static void test_migrate_twice(void **state)
{
    (void)state;
    char dir[] = "/tmp/kp-mig-XXXXXX";
    make_dir(dir);
    /* Not idempotent on purpose: applying any of them twice would fail or add rows. */
    write_file(dir, "001_first.sql",
               "CREATE TABLE mig_a (id int PRIMARY KEY, note text);\n"
               "INSERT INTO mig_a VALUES (1, '第一');\n");
    write_file(dir, "002_second.sql",
               "CREATE TABLE mig_b (k text PRIMARY KEY);\n"
               "INSERT INTO mig_a VALUES (2, 'two; with a semicolon');\n");
    write_file(dir, "010_tenth.sql", "ALTER TABLE mig_b ADD COLUMN v int;\n");
    write_file(dir, "README", "not a migration");
    write_file(dir, "3_nounderscore.txt", "SELECT 1/0;");
    write_file(dir, "004_bad.sql.bak", "SELECT 1/0;");

    struct kp_pg *pg = connect_schema("mig_twice");
    char err[512];
    int rc = kp_pg_migrate(pg, dir, err, sizeof err);
    if (rc)
        fprintf(stderr, "migrate: %s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM kp_schema_version"), 3);
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM mig_a"), 2);
    struct kp_pg_res *r = NULL;
    assert_int_equal(
        kp_pg_exec(pg, "SELECT version, name FROM kp_schema_version ORDER BY 1", 0, NULL, &r), 0);
    assert_string_equal(kp_pg_res_value(r, 0, 0), "1");
    assert_string_equal(kp_pg_res_value(r, 0, 1), "first");
    assert_string_equal(kp_pg_res_value(r, 2, 0), "10");
    assert_string_equal(kp_pg_res_value(r, 2, 1), "tenth");
    kp_pg_res_free(&r);
    long long stamp = query_ll(pg, "SELECT extract(epoch FROM max(applied_at)) * 1000000 FROM "
                                   "kp_schema_version");

    /* Second run: nothing to do, nothing changes. */
    rc = kp_pg_migrate(pg, dir, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM kp_schema_version"), 3);
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM mig_a"), 2);
    assert_true(query_ll(pg, "SELECT extract(epoch FROM max(applied_at)) * 1000000 FROM "
                             "kp_schema_version") == stamp);

    /* A new migration is picked up; a failing one is rolled back and named in err. */
    write_file(dir, "011_more.sql", "INSERT INTO mig_b VALUES ('x', 1);");
    write_file(dir, "012_broken.sql",
               "INSERT INTO mig_b VALUES ('y', 2);\nSELECT no_such_column FROM mig_b;");
    rc = kp_pg_migrate(pg, dir, err, sizeof err);
    assert_int_equal(rc, KP_EDB);
    assert_non_null(strstr(err, "012_broken.sql"));
    assert_non_null(strstr(err, "42703"));
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM kp_schema_version"), 4);
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM mig_b"), 1); /* 'y' rolled back */
    assert_true(kp_pg_ok(pg));                                       /* no transaction left open */
    assert_int_equal(query_ll(pg, "SELECT 1"), 1);

    /* Missing dir; duplicate versions. */
    assert_int_equal(kp_pg_migrate(pg, "/nonexistent/kp-migrations", err, sizeof err), KP_EIO);
    assert_non_null(strstr(err, "/nonexistent/kp-migrations"));
    write_file(dir, "012_fixed.sql", "SELECT 1;");
    assert_int_equal(kp_pg_migrate(pg, dir, err, sizeof err), KP_EIO);
    assert_non_null(strstr(err, "same version"));

    kp_pg_close(&pg);
    remove_dir(dir);
}

struct mig_thread {
    const char *dir;
    int rc;
    char err[512];
};

static void *mig_worker(void *arg)
{
    struct mig_thread *t = arg;
    struct kp_pg *pg = NULL;
    if (kp_pg_open(dsn(), &pg) || kp_pg_exec(pg, "SET search_path TO mig_conc", 0, NULL, NULL)) {
        snprintf(t->err, sizeof t->err, "connect: %s", kp_pg_errmsg(pg));
        t->rc = -100;
    } else {
        t->rc = kp_pg_migrate(pg, t->dir, t->err, sizeof t->err);
    }
    kp_pg_close(&pg);
    return NULL;
}

static void test_migrate_concurrent(void **state)
{
    (void)state;
    char dir[] = "/tmp/kp-mig-XXXXXX";
    make_dir(dir);
    /* The sleep holds the lock long enough that both threads are inside kp_pg_migrate at
     * once; CREATE TABLE without IF NOT EXISTS fails if the migration ran twice. */
    write_file(dir, "001_slow.sql",
               "CREATE TABLE hits (n serial PRIMARY KEY, at timestamptz DEFAULT now());\n"
               "SELECT pg_sleep(0.5);\n"
               "INSERT INTO hits DEFAULT VALUES;\n");
    write_file(dir, "002_also.sql", "INSERT INTO hits DEFAULT VALUES; SELECT pg_sleep(0.2);");
    struct kp_pg *pg = connect_schema("mig_conc");

    struct mig_thread t[3] = {{.dir = dir}, {.dir = dir}, {.dir = dir}};
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&th[i], NULL, mig_worker, &t[i]), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        if (t[i].rc)
            fprintf(stderr, "thread %d: %s\n", i, t[i].err);
        assert_int_equal(t[i].rc, 0);
    }
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM kp_schema_version"), 2);
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM hits"), 2);
    kp_pg_close(&pg);
    remove_dir(dir);
}

/* The project's own migrations apply cleanly, twice. */
static void test_migrate_project_schema(void **state)
{
    (void)state;
    struct kp_pg *pg = connect_schema("proj");
    char err[512];
    int rc = kp_pg_migrate(pg, KP_SOURCE_DIR "/schemas/migrations", err, sizeof err);
    if (rc)
        fprintf(stderr, "migrate: %s\n", err);
    assert_int_equal(rc, 0);
    long long n = query_ll(pg, "SELECT count(*) FROM kp_schema_version");
    assert_true(n >= 1);
    assert_int_equal(kp_pg_migrate(pg, KP_SOURCE_DIR "/schemas/migrations", err, sizeof err), 0);
    assert_true(query_ll(pg, "SELECT count(*) FROM kp_schema_version") == n);
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM kp_unit_score"), 0);

    /* Migration 010: a vacuum leaves the cell log's emptied pages in place (no ACCESS
     * EXCLUSIVE lock to truncate them under the scorer). A table like it without the option,
     * filled and emptied the same way, shrinks: vacuumed until it does (an autovacuum's
     * snapshot may keep the dead rows for a moment), then the cell log is vacuumed. */
    exec_ok(pg, "CREATE TABLE log_truncated (LIKE indicator_cell_log)");
    static const char FILL[] =
        "INSERT INTO %s (scheme, period, bucket, seq, layout, units, u, cell, value, score, "
        "n_obs, updated_us) SELECT 's', '2024', g %% 4, g, 1, '{U1}', '{1}', '{0}', '{1}', '{1}', "
        "'{1}', 0 FROM generate_series(1, 2000) g";
    char sql[300];
    snprintf(sql, sizeof sql, FILL, "log_truncated");
    exec_ok(pg, sql);
    snprintf(sql, sizeof sql, FILL, "indicator_cell_log");
    exec_ok(pg, sql);
    long long pages = query_ll(pg, "SELECT pg_relation_size('indicator_cell_log') / 8192");
    assert_true(pages >= 10);
    assert_int_equal(query_ll(pg, "SELECT pg_relation_size('log_truncated') / 8192"), pages);
    exec_ok(pg, "DELETE FROM log_truncated");
    exec_ok(pg, "DELETE FROM indicator_cell_log");
    for (int i = 0; i < 100; i++) {
        exec_ok(pg, "VACUUM log_truncated");
        if (query_ll(pg, "SELECT pg_relation_size('log_truncated')") == 0)
            break;
        nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
    }
    assert_int_equal(query_ll(pg, "SELECT pg_relation_size('log_truncated')"), 0);
    exec_ok(pg, "VACUUM indicator_cell_log");
    assert_int_equal(query_ll(pg, "SELECT pg_relation_size('indicator_cell_log') / 8192"), pages);
    exec_ok(pg, "DROP TABLE log_truncated");

    /* Migration 011: every column of the cell log has a statistics target of 10 (ANALYZE
     * samples 300 x the largest target: 3,000 rows and pages instead of 30,000), and autovacuum
     * analyzes it after 200,000 changed rows. 50 periods equally common: a table of the default
     * target keeps all 50 as common values, the cell log at most 10. */
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM pg_attribute WHERE attrelid = "
                                  "'indicator_cell_log'::regclass AND attnum > 0 AND NOT "
                                  "attisdropped AND attstattarget <> 10"),
                     0);
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM pg_class WHERE oid = "
                                  "'indicator_cell_log'::regclass AND "
                                  "'autovacuum_analyze_threshold=200000' = ANY (reloptions)"),
                     1);
    exec_ok(pg, "CREATE TABLE log_periods (period text NOT NULL)");
    exec_ok(pg, "INSERT INTO log_periods SELECT 'p' || g % 50 FROM generate_series(1, 5000) g");
    exec_ok(pg, "INSERT INTO indicator_cell_log (scheme, period, bucket, seq, layout, units, u, "
                "cell, value, score, n_obs, updated_us) SELECT 's', 'p' || g % 50, g % 4, g, 1, "
                "'{U1}', '{1}', '{0}', '{1}', '{1}', '{1}', 0 FROM generate_series(1, 5000) g");
    exec_ok(pg, "ANALYZE log_periods");
    exec_ok(pg, "ANALYZE indicator_cell_log");
    static const char MCV[] =
        "SELECT coalesce(array_length(most_common_vals::text::text[], 1), 0) FROM pg_stats "
        "WHERE schemaname = current_schema() AND tablename = '%s' AND attname = 'period'";
    snprintf(sql, sizeof sql, MCV, "log_periods");
    assert_int_equal(query_ll(pg, sql), 50);
    snprintf(sql, sizeof sql, MCV, "indicator_cell_log");
    assert_true(query_ll(pg, sql) <= 10);
    exec_ok(pg, "DELETE FROM indicator_cell_log");

    /* Migration 012: every column of observation has a target of 10 too: the same 50 periods
     * leave it at most 10 common values, and 5,000 distinct values a histogram of 11 bounds (101
     * at the default target). indicator_cells collects no statistics of its arrays (target 0)
     * and keeps them for its key columns. */
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM pg_attribute WHERE attrelid = "
                                  "'observation'::regclass AND attnum > 0 AND NOT "
                                  "attisdropped AND attstattarget <> 10"),
                     0);
    exec_ok(pg, "INSERT INTO observation (scheme, src, ref, rev, unit, indicator, period, value, "
                "w, observed_at, adapter, seq) SELECT 's', 'src', 'r' || g, 1, 'U1', 'I1', "
                "'p' || g % 50, g, 1, now(), 'a', 1 FROM generate_series(1, 5000) g");
    exec_ok(pg, "ANALYZE observation");
    snprintf(sql, sizeof sql, MCV, "observation");
    assert_true(query_ll(pg, sql) <= 10);
    assert_int_equal(query_ll(pg, "SELECT coalesce(array_length(histogram_bounds::text::text[], "
                                  "1), 0) FROM pg_stats WHERE schemaname = current_schema() AND "
                                  "tablename = 'observation' AND attname = 'value'"),
                     11);
    exec_ok(pg, "DELETE FROM observation");
    exec_ok(pg, "INSERT INTO indicator_cells (scheme, period, unit, base, layout, value, score, "
                "n_obs, updated_us) SELECT 's', 'p' || g % 50, 'U' || g, 0, 1, '{1,2}', '{1,2}', "
                "'{1,1}', '{5,6}' FROM generate_series(1, 1000) g");
    exec_ok(pg, "ANALYZE indicator_cells");
    char *with_stats = query_text(pg, "SELECT string_agg(attname, ',' ORDER BY attname) FROM "
                                      "pg_stats WHERE schemaname = current_schema() AND "
                                      "tablename = 'indicator_cells'");
    assert_string_equal(with_stats, "base,layout,period,scheme,unit");
    free(with_stats);
    exec_ok(pg, "DELETE FROM indicator_cells");
    exec_ok(pg, "DROP TABLE log_periods");
    kp_pg_close(&pg);
}

/* Migration 009 moves migration 007's log rows (one per unit) into the log by bucket, one to
 * one in bucket -1: kp_indicator_score shows the same rows before and after, updated_at
 * included, and the log's seq goes on after them. */
static void test_migrate_cell_log_buckets(void **state)
{
    (void)state;
    char dir[] = "/tmp/kp-mig-XXXXXX";
    make_dir(dir);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "cp %s/schemas/migrations/00[1-8]_*.sql '%s'", KP_SOURCE_DIR, dir);
    assert_int_equal(system(cmd), 0);
    struct kp_pg *pg = connect_schema("mig_log009");
    char err[512];
    int rc = kp_pg_migrate(pg, dir, err, sizeof err);
    if (rc)
        fprintf(stderr, "migrate: %s\n", err);
    assert_int_equal(rc, 0);
    exec_ok(pg, "INSERT INTO kp_scheme (scheme, name) VALUES ('s', 'S')");
    exec_ok(pg, "INSERT INTO kp_indicator (scheme, indicator, name, is_leaf) VALUES "
                "('s', 'a', 'A', true), ('s', 'b', 'B', true), ('s', 'c', 'C', true)");
    exec_ok(pg, "INSERT INTO indicator_layout (layout, scheme, codes) VALUES (7, 's', '{a,b,c}')");
    /* U1's part: a = 1, b = 2; its log: b = 20, then b gone and c = 30; U2: only a log row */
    exec_ok(pg, "INSERT INTO indicator_cells (scheme, period, unit, base, layout, value, score, "
                "n_obs, updated_us) VALUES ('s', '2024', 'U1', 0, 7, '{1,2,NaN}', '{1,2,0}', "
                "'{1,1,0}', '{1000000,2000000,0}')");
    exec_ok(pg, "INSERT INTO indicator_cell_log (scheme, period, unit, layout, cell, value, score, "
                "n_obs, updated_us) VALUES "
                "('s', '2024', 'U1', 7, '{1}', '{20}', '{20}', '{2}', 3000000), "
                "('s', '2024', 'U1', 7, '{1,2}', '{NaN,30}', '{0,30}', '{0,1}', 4000000), "
                "('s', '2024', 'U2', 7, '{0}', '{5}', '{5}', '{1}', 5000000)");
    static const char VIEW[] =
        "SELECT string_agg(concat_ws('|', scheme, period, unit, indicator, value, score, n_obs, "
        "updated_at), ';' ORDER BY unit, indicator) FROM kp_indicator_score";
    char *before = query_text(pg, VIEW);
    assert_string_equal(before, "s|2024|U1|a|1|1|1|1970-01-01 00:00:01+00;"
                                "s|2024|U1|c|30|30|1|1970-01-01 00:00:04+00;"
                                "s|2024|U2|a|5|5|1|1970-01-01 00:00:05+00");
    long long max_seq = query_ll(pg, "SELECT max(seq) FROM indicator_cell_log");

    snprintf(cmd, sizeof cmd, "cp %s/schemas/migrations/009_*.sql '%s'", KP_SOURCE_DIR, dir);
    assert_int_equal(system(cmd), 0);
    rc = kp_pg_migrate(pg, dir, err, sizeof err);
    if (rc)
        fprintf(stderr, "migrate: %s\n", err);
    assert_int_equal(rc, 0);
    char *after = query_text(pg, VIEW);
    assert_string_equal(before, after);
    assert_int_equal(query_ll(pg, "SELECT count(*) FROM indicator_cell_log WHERE bucket = -1 AND "
                                  "cardinality(units) = 1 AND u = array_fill(1, "
                                  "ARRAY[cardinality(cell)])"),
                     3);
    assert_true(query_ll(pg, "SELECT nextval('indicator_cell_log_seq_seq')") > max_seq);
    free(before);
    free(after);
    kp_pg_close(&pg);
    remove_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_bad_dsn),
        cmocka_unit_test(test_exec_params),
        cmocka_unit_test(test_nulls),
        cmocka_unit_test(test_sqlstate),
        cmocka_unit_test(test_conn_lost_and_reset),
        cmocka_unit_test(test_prepared),
        cmocka_unit_test(test_in_flight),
        cmocka_unit_test(test_copy_stream),
        cmocka_unit_test(test_pipeline),
        cmocka_unit_test(test_begin_deferred),
        cmocka_unit_test(test_float_text_exact),
        cmocka_unit_test(test_array_text_roundtrip),
        cmocka_unit_test(test_array_numbers_roundtrip),
        cmocka_unit_test(test_copy_roundtrip),
        cmocka_unit_test(test_migrate_twice),
        cmocka_unit_test(test_migrate_concurrent),
        cmocka_unit_test(test_migrate_project_schema),
        cmocka_unit_test(test_migrate_cell_log_buckets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
