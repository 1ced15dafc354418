/*
 * test_pg_adp_sql: the `sql` source (adapters/sql/src_sql.c) through the adapter's pump into
 * a real spool, against a real PostgreSQL (KP_TEST_DSN from tests/harness/with-pg.sh).
 * Watermark paging with many rows sharing one timestamp and a small batch size loses and
 * duplicates nothing; the upper bound (database clock - lag) holds back recent rows; two
 * transactions committing out of order around the watermark lose nothing when lag exceeds
 * the commit skew (and do lose a row with lag 0: the control that shows the test bites); the
 * cursor stored in the spool survives reopening and a crash between poll and store; invalid
 * rows are still sent and come out refused per observation; the overlap window re-reads a
 * late row; a missing column stops start-up with its name; a database that is down is an
 * error of one poll (issue 2; ARCHITECTURE.md guarantee 1).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "adp_pump.h"
#include "kp_buf.h"
#include "kp_err.h"
#include "kp_log.h"
#include "kp_msg.h"
#include "kp_pg.h"
#include "kp_spool.h"
#include "sql/src_sql.h"

static const char *dsn;

#define QUERY                                                                                      \
    "SELECT ts AS wm_ts, id AS wm_id, unit AS u, ind AS i, period AS p, val, 'r' || id AS ref, "   \
    "rev FROM src_fact WHERE (ts, id) > ($1::timestamptz, $2::bigint) "                            \
    "AND ts <= $3::timestamptz ORDER BY ts, id LIMIT $4"

struct fx {
    char dir[64], path[128];
    struct kp_pg *db; /* the test's own connection: the "department system" */
    struct kp_spool *sp;
    struct adp_pump *pump;
    struct src_sql_config cfg;
    uint32_t max_obs;
};

static void exec_ok(struct kp_pg *pg, const char *sql)
{
    if (kp_pg_exec(pg, sql, 0, NULL, NULL) != 0)
        fail_msg("%s: %s", sql, kp_pg_errmsg(pg));
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/kp_pg_adp_sql.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/spool.db", f->dir);
    if (kp_pg_open(dsn, &f->db) != 0) {
        fprintf(stderr, "cannot connect to %s: %s\n", dsn, kp_pg_errmsg(f->db));
        return -1;
    }
    exec_ok(f->db, "DROP TABLE IF EXISTS src_fact");
    exec_ok(f->db, "CREATE TABLE src_fact (id bigserial PRIMARY KEY, "
                   "ts timestamptz NOT NULL DEFAULT clock_timestamp(), unit text, ind text, "
                   "period text, val float8, rev bigint NOT NULL DEFAULT 0)");
    f->cfg.dsn = (char *)dsn;
    f->cfg.query = QUERY;
    f->cfg.lag_ms = 0;
    f->cfg.overlap_ms = 0;
    f->max_obs = 7;
    *state = f;
    return 0;
}

static void close_pump(struct fx *f)
{
    adp_pump_close(&f->pump);
    kp_spool_close(&f->sp);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    close_pump(f);
    kp_pg_close(&f->db);
    const char *suffix[] = {"", "-wal", "-shm"};
    for (size_t k = 0; k < 3; k++) {
        char p[160];
        snprintf(p, sizeof p, "%s%s", f->path, suffix[k]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static int open_pump_rc(struct fx *f, char *err, size_t errlen)
{
    if (!f->sp && kp_spool_open(f->path, 1u << 26, &f->sp) != 0)
        fail_msg("spool open");
    struct adp_pump_opts o = {"stats-1", "anshan-2015", "stats", f->max_obs};
    return adp_pump_open(&adp_source_sql, &f->cfg, f->sp, &o, NULL, &f->pump, err, errlen);
}

static void open_pump(struct fx *f)
{
    char err[512];
    int rc = open_pump_rc(f, err, sizeof err);
    if (rc != 0)
        fail_msg("pump open: %s: %s", kp_err_name(rc), err);
}

/* Pumps until the source has nothing more now; returns the records stored. */
static int drain(struct fx *f)
{
    int total = 0;
    for (int guard = 0; guard < 100000; guard++) {
        char err[512];
        int n = adp_pump_step(f->pump, err, sizeof err);
        if (n < 0)
            fail_msg("pump step: %s: %s", kp_err_name(n), err);
        total += n;
        if (!adp_pump_more(f->pump))
            return total;
    }
    fail_msg("drain does not end");
    return -1;
}

/* Every observation in the spool, decoded. */
struct seen {
    char (*refs)[32];
    enum kp_reason *reasons;
    size_t n, cap;
    size_t batches;
    size_t max_batch;
};

static int seen_fn(const struct kp_spool_item *it, void *arg)
{
    struct seen *s = arg;
    struct kp_msg_limits lim = {KP_DEFAULT_MAX_BYTES, KP_DEFAULT_MAX_OBS};
    struct kp_batch *b = NULL;
    bool has_seq;
    uint64_t seq;
    char msg[KP_MSG_TEXT_MAX];
    enum kp_reason r =
        kp_batch_decode(it->payload, it->len, &lim, &b, &has_seq, &seq, msg, sizeof msg);
    if (r != KP_R_OK)
        fail_msg("batch %" PRIu64 " does not decode: %s %s", it->seq, kp_reason_str(r), msg);
    assert_int_equal(b->seq, it->seq);
    assert_string_equal(b->aid, "stats-1");
    assert_string_equal(b->scheme, "anshan-2015");
    assert_string_equal(b->src, "stats");
    assert_int_equal(b->n_obs, it->n_obs);
    s->batches++;
    if (b->n_obs > s->max_batch)
        s->max_batch = b->n_obs;
    for (size_t k = 0; k < b->n_obs; k++) {
        if (s->n == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 256;
            s->refs = realloc(s->refs, s->cap * sizeof *s->refs);
            s->reasons = realloc(s->reasons, s->cap * sizeof *s->reasons);
            assert_non_null(s->refs);
            assert_non_null(s->reasons);
        }
        snprintf(s->refs[s->n], sizeof s->refs[s->n], "%.31s", b->obs[k].ref);
        s->reasons[s->n] = b->obs[k].reason;
        s->n++;
    }
    kp_batch_destroy(&b);
    return 0;
}

static void collect(struct fx *f, struct seen *s)
{
    memset(s, 0, sizeof *s);
    int rc = kp_spool_scan(f->sp, 0, SIZE_MAX, seen_fn, s);
    assert_true(rc >= 0);
}

static void seen_fini(struct seen *s)
{
    free(s->refs);
    free(s->reasons);
}

static bool has_ref(const struct seen *s, const char *ref)
{
    for (size_t k = 0; k < s->n; k++)
        if (strcmp(s->refs[k], ref) == 0)
            return true;
    return false;
}

/* Every id of src_fact in [lo, hi] appears exactly once. */
static void assert_exactly_once(const struct seen *s, long lo, long hi)
{
    size_t span = (size_t)(hi - lo + 1);
    int *count = calloc(span, sizeof *count);
    assert_non_null(count);
    for (size_t k = 0; k < s->n; k++) {
        long id = strtol(s->refs[k] + 1, NULL, 10);
        assert_true(id >= lo && id <= hi);
        count[id - lo]++;
    }
    for (size_t k = 0; k < span; k++)
        if (count[k] != 1)
            fail_msg("row %ld seen %d times", lo + (long)k, count[k]);
    free(count);
}

static long max_id(struct fx *f)
{
    struct kp_pg_res *r = NULL;
    if (kp_pg_exec(f->db, "SELECT coalesce(max(id), 0) FROM src_fact", 0, NULL, &r) != 0)
        fail_msg("max id: %s", kp_pg_errmsg(f->db));
    long v = strtol(kp_pg_res_value(r, 0, 0), NULL, 10);
    kp_pg_res_free(&r);
    return v;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_paging_shared_timestamps(void **state)
{
    struct fx *f = *state;
    /* 400 rows at one instant, 300 at another, 300 spread out: all an hour ago */
    exec_ok(f->db, "INSERT INTO src_fact (ts, unit, ind, period, val) "
                   "SELECT now() - interval '1 hour', 'U' || (g % 10), 'I1', '2024-Q1', g "
                   "FROM generate_series(1, 400) g");
    exec_ok(f->db, "INSERT INTO src_fact (ts, unit, ind, period, val) "
                   "SELECT now() - interval '50 minutes', 'U' || (g % 10), 'I2', '2024-03', g "
                   "FROM generate_series(1, 300) g");
    exec_ok(f->db, "INSERT INTO src_fact (ts, unit, ind, period, val) "
                   "SELECT now() - interval '40 minutes' + g * interval '1 ms', 'U1', 'I3', "
                   "'2024', g * 0.5 FROM generate_series(1, 300) g");
    /* ids interleaved against time: later ids at the shared earlier instant */
    exec_ok(f->db, "INSERT INTO src_fact (ts, unit, ind, period, val) "
                   "SELECT now() - interval '1 hour', 'U2', 'I1', '2024-Q2', g "
                   "FROM generate_series(1, 13) g");
    open_pump(f);
    int n = drain(f);
    assert_int_equal(n, 1013);
    struct seen s;
    collect(f, &s);
    assert_int_equal(s.n, 1013);
    assert_true(s.max_batch <= 7);
    assert_int_equal(s.batches, (1013 + 6) / 7);
    assert_exactly_once(&s, 1, max_id(f));
    for (size_t k = 0; k < s.n; k++)
        assert_int_equal(s.reasons[k], KP_R_OK);
    seen_fini(&s);

    /* rows added later at an already passed instant with higher ids are found too, because
     * the watermark is the (ts, id) tuple: add them at the newest instant read */
    exec_ok(f->db, "INSERT INTO src_fact (ts, unit, ind, period, val) "
                   "SELECT (SELECT max(ts) FROM src_fact), 'U3', 'I1', '2024-Q3', g "
                   "FROM generate_series(1, 9) g");
    assert_int_equal(drain(f), 9);
    collect(f, &s);
    assert_exactly_once(&s, 1, max_id(f));
    seen_fini(&s);
    assert_int_equal(drain(f), 0);

    /* the cursor is the exact tuple of the last row */
    char cur[128];
    assert_int_equal(kp_spool_cursor(f->sp, cur, sizeof cur), 0);
    char want[32];
    snprintf(want, sizeof want, "|%ld", max_id(f));
    assert_non_null(strstr(cur, want));
}

static void test_upper_bound_lag(void **state)
{
    struct fx *f = *state;
    f->cfg.lag_ms = 1500;
    exec_ok(f->db, "INSERT INTO src_fact (ts, unit, ind, period, val) VALUES "
                   "(clock_timestamp() - interval '10 seconds', 'U1', 'I1', '2024', 1)");
    exec_ok(f->db, "INSERT INTO src_fact (ts, unit, ind, period, val) VALUES "
                   "(clock_timestamp(), 'U1', 'I1', '2024', 2)");
    exec_ok(f->db, "INSERT INTO src_fact (ts, unit, ind, period, val) VALUES "
                   "(clock_timestamp() + interval '1 hour', 'U1', 'I1', '2024', 3)");
    open_pump(f);
    assert_int_equal(drain(f), 1); /* only the row older than clock - lag */
    struct seen s;
    collect(f, &s);
    assert_true(has_ref(&s, "r1"));
    seen_fini(&s);
    sleep_ms(1700);
    assert_int_equal(drain(f), 1); /* the second one has aged past the lag */
    collect(f, &s);
    assert_true(has_ref(&s, "r2"));
    assert_false(has_ref(&s, "r3")); /* the future row waits for the database clock */
    seen_fini(&s);
}

/* T1 takes its timestamp first but commits last; T2 commits in between. */
static void skew_scenario(struct fx *f, struct seen *out)
{
    struct kp_pg *t1 = NULL, *t2 = NULL;
    assert_int_equal(kp_pg_open(dsn, &t1), 0);
    assert_int_equal(kp_pg_open(dsn, &t2), 0);
    open_pump(f);
    exec_ok(t1, "BEGIN");
    exec_ok(t1, "INSERT INTO src_fact (unit, ind, period, val) VALUES ('U1', 'I1', '2024', 1)");
    sleep_ms(50);
    exec_ok(t2, "INSERT INTO src_fact (unit, ind, period, val) VALUES ('U2', 'I1', '2024', 2)");
    drain(f); /* a poll while T1 is still open */
    sleep_ms(300);
    exec_ok(t1, "COMMIT"); /* commit skew ~350 ms */
    sleep_ms((long)f->cfg.lag_ms + 200);
    drain(f);
    collect(f, out);
    kp_pg_close(&t1);
    kp_pg_close(&t2);
}

static void test_commit_skew_within_lag(void **state)
{
    struct fx *f = *state;
    f->cfg.lag_ms = 1000; /* > the ~350 ms commit skew */
    struct seen s;
    skew_scenario(f, &s);
    assert_int_equal(s.n, 2);
    assert_exactly_once(&s, 1, 2);
    seen_fini(&s);
}

static void test_commit_skew_control_lag0(void **state)
{
    struct fx *f = *state;
    f->cfg.lag_ms = 0; /* no lag: the late committer falls behind the watermark */
    struct seen s;
    skew_scenario(f, &s);
    assert_int_equal(s.n, 1);
    assert_true(has_ref(&s, "r2"));
    assert_false(has_ref(&s, "r1"));
    seen_fini(&s);
}

static void test_overlap_rereads_late_row(void **state)
{
    struct fx *f = *state;
    f->cfg.lag_ms = 0;
    f->cfg.overlap_ms = 60000;
    exec_ok(f->db, "INSERT INTO src_fact (ts, unit, ind, period, val) "
                   "SELECT clock_timestamp() - interval '10 seconds', 'U1', 'I1', '2024', g "
                   "FROM generate_series(1, 10) g");
    open_pump(f);
    drain(f);
    char cur_before[128];
    assert_int_equal(kp_spool_cursor(f->sp, cur_before, sizeof cur_before), 0);
    /* a row that commits late with a timestamp behind the watermark */
    exec_ok(f->db, "INSERT INTO src_fact (ts, unit, ind, period, val) VALUES "
                   "(clock_timestamp() - interval '20 seconds', 'U9', 'I1', '2024', 99)");
    drain(f); /* next cycle: main pass finds nothing new, rescan finds the late row */
    struct seen s;
    collect(f, &s);
    assert_true(has_ref(&s, "r11"));
    seen_fini(&s);
    char cur_after[128];
    assert_int_equal(kp_spool_cursor(f->sp, cur_after, sizeof cur_after), 0);
    assert_string_equal(cur_before, cur_after); /* a re-read never moves the watermark */
}

static void test_cursor_survives_reopen_and_crash(void **state)
{
    struct fx *f = *state;
    f->max_obs = 5;
    exec_ok(f->db, "INSERT INTO src_fact (ts, unit, ind, period, val) "
                   "SELECT now() - interval '1 hour', 'U1', 'I1', '2024', g "
                   "FROM generate_series(1, 12) g");
    open_pump(f);
    char err[256];
    assert_int_equal(adp_pump_step(f->pump, err, sizeof err), 5);
    /* a "crash" after a poll and before its store: the rows were read, not stored */
    assert_int_equal(adp_pump_poll(f->pump, err, sizeof err), 5);
    close_pump(f);

    open_pump(f);
    assert_int_equal(kp_spool_next_seq(f->sp), 2);
    assert_int_equal(drain(f), 7);
    struct seen s;
    collect(f, &s);
    assert_int_equal(s.n, 12);
    assert_exactly_once(&s, 1, 12);
    seen_fini(&s);
    close_pump(f);
    open_pump(f);
    assert_int_equal(drain(f), 0);
}

static void test_spool_full_rereads(void **state)
{
    struct fx *f = *state;
    f->max_obs = 50;
    exec_ok(f->db, "INSERT INTO src_fact (ts, unit, ind, period, val) "
                   "SELECT now() - interval '1 hour', 'U1', 'I1', '2024', g "
                   "FROM generate_series(1, 200) g");
    assert_int_equal(kp_spool_open(f->path, 3000, &f->sp), 0); /* one batch of 50 fits */
    open_pump(f);
    char err[256];
    assert_true(adp_pump_step(f->pump, err, sizeof err) == 50);
    assert_int_equal(adp_pump_step(f->pump, err, sizeof err), KP_EFULL);
    assert_int_equal(adp_pump_step(f->pump, err, sizeof err), KP_EFULL);
    /* the ack of batch 1 frees space: pulling resumes where it stopped */
    assert_int_equal(kp_spool_ack(f->sp, 1), 0);
    assert_int_equal(adp_pump_step(f->pump, err, sizeof err), 50);
    for (uint64_t seq = 2; seq <= 3; seq++) {
        assert_int_equal(kp_spool_ack(f->sp, seq), 0);
        assert_int_equal(adp_pump_step(f->pump, err, sizeof err), 50);
    }
    assert_int_equal(adp_pump_step(f->pump, err, sizeof err), 0);
    /* all 200 were stored once: 4 batches, seqs 1..4, the last one still waiting */
    assert_int_equal(kp_spool_next_seq(f->sp), 5);
    struct seen s;
    collect(f, &s);
    assert_int_equal(s.n, 50);
    assert_exactly_once(&s, 151, 200);
    seen_fini(&s);
}

static void test_invalid_rows_still_sent(void **state)
{
    struct fx *f = *state;
    exec_ok(f->db, "INSERT INTO src_fact (ts, unit, ind, period, val) VALUES "
                   "(now() - interval '1 hour', 'U1', 'I1', '2024-Q1', 1.5),"
                   "(now() - interval '1 hour', 'bad unit!', 'I1', '2024-Q1', 2),"
                   "(now() - interval '1 hour', 'U1', 'I1', '2024-13', 3),"
                   "(now() - interval '1 hour', 'U1', 'I1', '2024-Q1', 'NaN'),"
                   "(now() - interval '1 hour', NULL, 'I1', '2024-Q1', 5),"
                   "(now() - interval '1 hour', 'U1', 'I1', '2024-Q1', NULL),"
                   "(now() - interval '1 hour', 'U2', 'I2', '2024-02-30', 7)");
    open_pump(f);
    assert_int_equal(drain(f), 7);
    struct seen s;
    collect(f, &s);
    assert_int_equal(s.n, 7);
    assert_exactly_once(&s, 1, 7);
    /* the good one is fine, every bad one carries its own refusal */
    for (size_t k = 0; k < s.n; k++) {
        long id = strtol(s.refs[k] + 1, NULL, 10);
        if (id == 1)
            assert_int_equal(s.reasons[k], KP_R_OK);
        else
            assert_int_not_equal(s.reasons[k], KP_R_OK);
        if (id == 3 || id == 7)
            assert_int_equal(s.reasons[k], KP_R_bad_period);
        if (id == 4)
            assert_int_equal(s.reasons[k], KP_R_not_finite);
    }
    seen_fini(&s);
}

static void test_missing_column_named(void **state)
{
    struct fx *f = *state;
    f->cfg.query = "SELECT ts AS wm_ts, id AS wm_id, unit AS u, ind AS i, period AS p, val, "
                   "'r' || id AS ref FROM src_fact WHERE (ts, id) > ($1::timestamptz, "
                   "$2::bigint) AND ts <= $3::timestamptz ORDER BY ts, id LIMIT $4";
    char err[512];
    assert_int_equal(open_pump_rc(f, err, sizeof err), KP_ECONFIG);
    assert_non_null(strstr(err, "\"rev\""));
    assert_null(f->pump);

    f->cfg.query = "SELECT 1 FROM src_fact WHERE $1 = $2";
    assert_int_equal(open_pump_rc(f, err, sizeof err), KP_ECONFIG);
    assert_non_null(strstr(err, "$3"));

    f->cfg.query = "SELECT nonsense FROM src_fact WHERE $1::text || $2::text || $3::text || "
                   "$4::text = ''";
    assert_int_equal(open_pump_rc(f, err, sizeof err), KP_ECONFIG);
    assert_non_null(strstr(err, "42703")); /* undefined_column */
}

static void test_database_down(void **state)
{
    struct fx *f = *state;
    f->cfg.dsn = "host=127.0.0.1 port=1 dbname=nothing connect_timeout=2";
    open_pump(f); /* unreachable at start is not a start-up error */
    char err[512];
    int rc = adp_pump_step(f->pump, err, sizeof err);
    assert_int_equal(rc, KP_EDB);
    assert_non_null(strstr(err, "connect"));
    assert_int_equal(adp_pump_step(f->pump, err, sizeof err), KP_EDB); /* and again */
    assert_int_equal(kp_spool_next_seq(f->sp), 1);
}

/* kill -9 of a pulling adapter at random moments, again and again: after each restart the
 * pull goes on from the cursor stored with the last batch, and in the end every row is in
 * the spool exactly once (issue 2: "a kill -9 never loses or duplicates rows"). */
static void test_kill9_exactly_once(void **state)
{
    struct fx *f = *state;
    exec_ok(f->db, "INSERT INTO src_fact (ts, unit, ind, period, val) "
                   "SELECT now() - interval '1 hour' + (g / 5) * interval '1 ms', 'U1', 'I1', "
                   "'2024', g FROM generate_series(1, 3000) g");
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    int kills = 0;
    bool done = false;
    for (int round = 0; round < 200 && !done; round++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            /* the adapter: its own spool handle and database connection */
            open_pump(f);
            for (;;) {
                char err[256];
                int n = adp_pump_step(f->pump, err, sizeof err);
                if (n < 0)
                    _exit(3);
                if (n == 0 && !adp_pump_more(f->pump))
                    _exit(0);
            }
        }
        sleep_ms(20 + rand() % 150);
        int status = 0;
        if (kill(pid, SIGKILL) == 0)
            kills++;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (WIFEXITED(status)) {
            assert_int_equal(WEXITSTATUS(status), 0);
            done = true;
        }
    }
    assert_true(done);
    assert_true(kills >= 1);
    open_pump(f);
    assert_int_equal(drain(f), 0);
    struct seen s;
    collect(f, &s);
    assert_int_equal(s.n, 3000);
    assert_exactly_once(&s, 1, 3000);
    seen_fini(&s);
    print_message("kill -9 test: %d kills, %zu batches\n", kills, s.batches);
}

/* Runs a tests/harness/pg.sh function on the test's cluster. */
static int pg_ctl(const char *fn)
{
    const char *dir = getenv("KP_PG_DIR"), *port = getenv("KP_PG_PORT");
    if (!dir || !port)
        return -1;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "bash -c '. \"%s/tests/harness/pg.sh\" && %s \"%s\" %s' >/dev/null",
             KP_SOURCE_DIR, fn, dir, strcmp(fn, "kp_pg_start") == 0 ? port : "");
    return system(cmd);
}

/* The department database goes away mid-run and comes back: polls fail meanwhile, then the
 * pull goes on from the watermark with nothing lost or doubled. */
static void test_database_restart(void **state)
{
    struct fx *f = *state;
    if (!getenv("KP_PG_DIR")) {
        skip();
        return;
    }
    exec_ok(f->db, "INSERT INTO src_fact (ts, unit, ind, period, val) "
                   "SELECT now() - interval '1 hour', 'U1', 'I1', '2024', g "
                   "FROM generate_series(1, 20) g");
    open_pump(f);
    char err[512];
    assert_int_equal(adp_pump_step(f->pump, err, sizeof err), 7);
    kp_pg_close(&f->db);
    assert_int_equal(pg_ctl("kp_pg_stop"), 0);
    assert_true(adp_pump_step(f->pump, err, sizeof err) < 0);
    assert_true(adp_pump_step(f->pump, err, sizeof err) < 0);
    assert_int_equal(pg_ctl("kp_pg_start"), 0);
    assert_int_equal(kp_pg_open(dsn, &f->db), 0);
    assert_int_equal(drain(f), 13);
    struct seen s;
    collect(f, &s);
    assert_exactly_once(&s, 1, 20);
    seen_fini(&s);
}

int main(void)
{
    dsn = getenv("KP_TEST_DSN");
    if (!dsn || !*dsn) {
        fprintf(stderr, "KP_TEST_DSN is not set: run under tests/harness/with-pg.sh\n");
        return 1;
    }
    kp_log_init("adapter", "test", KP_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_paging_shared_timestamps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upper_bound_lag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_skew_within_lag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_skew_control_lag0, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlap_rereads_late_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cursor_survives_reopen_and_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_exactly_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_full_rereads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_rows_still_sent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_column_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_database_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_database_restart, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
