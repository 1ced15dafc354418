/*
 * test_pg_scorer: the scorer daemon in-process against a real PostgreSQL (tests/harness/
 * with-pg.sh exports KP_TEST_DSN, KP_PG_DIR, KP_PG_PORT) and real ZeroMQ sockets, with a tiny
 * scheme written to a temp dir: two groups, a direct and an efficacy leaf.
 *
 *  - sockets: a ROUTER playing the broker receives the scorer's reg, sends batches in the
 *    INTERNAL.md envelope and checks the replies; rows in batch/observation/rejection and
 *    the exact kp_indicator_score/kp_unit_score values; a retransmit is dup:true with the original
 *    counts and adds nothing; a higher revision replaces the score, a lower one does not;
 *    batch-level refusals are nacked; /metrics and /readyz answer.
 *  - restart: a new scorer replays the stored observations; its engine equals the database
 *    row for row, no score row is rewritten, and later batches build on the replayed state.
 *  - outages: the scorer's connection is killed, the whole server is stopped and restarted,
 *    the connection dies during COMMIT, and the server is down when the scorer starts:
 *    batches are nacked retry:true meanwhile, the scorer resumes by itself, and after an
 *    uncertain COMMIT it rebuilds its engines.
 *  - failover: two scorers for one scheme; the second is a standby (advisory lock) whose
 *    engine follows the database; it takes over when the active one's session ends, and the
 *    scorer that lost its session never writes again while the other holds the lock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <curl/curl.h>
#include <inttypes.h>
#include <math.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include <zmq.h>

#include "kp_buf.h"
#include "kp_config.h"
#include "kp_err.h"
#include "kp_log.h"
#include "kp_metrics.h"
#include "kp_msg.h"
#include "kp_pg.h"
#include "kp_zsock.h"
#include "score_engine.h"
#include "scr.h"
#include "scr_internal.h"

#define SCHEME "kp-test"
#define EPS    1e-9

static char g_dir[64];
static char g_scheme_path[128];
static char g_migrations[512];
static char *g_schemes[2] = {g_scheme_path, NULL};

/* Two groups; g1 = U1, U2; g2 = U3. Leaves take yearly periods only. */
#define SCHEME_HEAD                                                                                \
    "scheme: kp-test\n"                                                                            \
    "name: 测试方案\n"                                                                         \
    "groups:\n"                                                                                    \
    "  - code: g1\n"                                                                               \
    "    name: 第一组\n"                                                                        \
    "    units:\n"                                                                                 \
    "      - {code: U1, name: 单位一}\n"                                                        \
    "      - {code: U2, name: 单位二}\n"                                                        \
    "  - code: g2\n"                                                                               \
    "    name: 第二组\n"                                                                        \
    "    units:\n"                                                                                 \
    "      - {code: U3, name: 单位三}\n"                                                        \
    "indicators:\n"
#define LEAF_DIRECT_A                                                                              \
    "  - {code: direct_a, name: 直接评分, weight: 40, method: direct, periods: [year],\n"      \
    "     min: 0, max: 100}\n"
#define LEAF_EFF_B                                                                                 \
    "  - {code: eff_b, name: 功效系数, weight: 60, method: efficacy, good: 12, bad: 6,\n"      \
    "     clamp: none, periods: [year], min: -100, max: 1000}\n"

static const char SCHEME_YAML[] = SCHEME_HEAD LEAF_DIRECT_A LEAF_EFF_B;

static double eff(double x)
{
    return (x - 6) / (12 - 6) * 40 + 60;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static const char *dsn(void)
{
    const char *d = getenv("KP_TEST_DSN");
    if (!d || !*d) {
        fprintf(stderr, "KP_TEST_DSN is not set: run under tests/harness/with-pg.sh\n");
        exit(1);
    }
    return d;
}

static struct scr_config make_config(const char *broker)
{
    struct scr_config c = {
        .instance = "t",
        .log_level = "warn",
        .broker = (char *)broker,
        .db_dsn = (char *)dsn(),
        .db_dsn_file = "",
        .schemes = g_schemes,
        .migrations = g_migrations,
        .admin = "127.0.0.1:0",
        .hb_ms = 100,
        .max_bytes = 4 * 1024 * 1024,
        .max_obs = 10000,
        .db_retry_max_ms = 400,
        .insecure = true, /* plain TCP to the test's bare ROUTER (CURVE: test_col_zap) */
    };
    return c;
}

/* ---- database helpers ----------------------------------------------------------------- */

static struct kp_pg *g_pg;

static struct kp_pg_res *q(const char *sql, int np, const char *const *p)
{
    struct kp_pg_res *r = NULL;
    int rc = kp_pg_exec(g_pg, sql, np, p, &r);
    if (rc && kp_pg_conn_lost(g_pg) && kp_pg_reset(g_pg) == 0)
        rc = kp_pg_exec(g_pg, sql, np, p, &r);
    if (rc)
        fprintf(stderr, "%s: %s\n", sql, kp_pg_errmsg(g_pg));
    assert_int_equal(rc, 0);
    return r;
}

/* Runs a statement for its effect. */
static void q_do(const char *sql)
{
    struct kp_pg_res *r = q(sql, 0, NULL);
    kp_pg_res_free(&r);
}

static long long q_ll(const char *sql)
{
    struct kp_pg_res *r = q(sql, 0, NULL);
    assert_int_equal(kp_pg_res_ntuples(r), 1);
    long long v = strtoll(kp_pg_res_value(r, 0, 0), NULL, 10);
    kp_pg_res_free(&r);
    return v;
}

/* One text value of a one-row query with up to three text parameters; "<none>" when no row,
 * "<null>" for NULL. Caller frees. */
static char *q_str(const char *sql, const char *a, const char *b, const char *c)
{
    const char *p[3] = {a, b, c};
    int np = c ? 3 : b ? 2 : a ? 1 : 0;
    struct kp_pg_res *r = q(sql, np, p);
    char *v = strdup(kp_pg_res_ntuples(r) == 0   ? "<none>"
                     : kp_pg_res_isnull(r, 0, 0) ? "<null>"
                                                 : kp_pg_res_value(r, 0, 0));
    kp_pg_res_free(&r);
    return v;
}

static void assert_near(double got, double want)
{
    if (!(fabs(got - want) < EPS)) {
        fprintf(stderr, "got %.17g want %.17g\n", got, want);
        fail();
    }
}

struct cell_row {
    bool found;
    double value, score;
    long n_obs;
    bool value_null;
};

static struct cell_row db_cell(const char *period, const char *unit, const char *ind)
{
    const char *p[4] = {SCHEME, period, unit, ind};
    struct kp_pg_res *r = q("SELECT value, score, n_obs FROM kp_indicator_score WHERE scheme = $1 "
                            "AND period = $2 AND unit = $3 AND indicator = $4",
                            4, p);
    struct cell_row c = {0};
    if (kp_pg_res_ntuples(r) == 1) {
        c.found = true;
        c.value_null = kp_pg_res_isnull(r, 0, 0);
        c.value = strtod(kp_pg_res_value(r, 0, 0), NULL);
        c.score = strtod(kp_pg_res_value(r, 0, 1), NULL);
        c.n_obs = strtol(kp_pg_res_value(r, 0, 2), NULL, 10);
    }
    kp_pg_res_free(&r);
    return c;
}

struct total_row {
    bool found;
    double total, coverage;
    long rank;
    char grade[16];
    bool vetoed;
};

static struct total_row db_total(const char *period, const char *unit)
{
    const char *p[3] = {SCHEME, period, unit};
    struct kp_pg_res *r = q("SELECT total, coverage, rank, grade, vetoed FROM kp_unit_score "
                            "WHERE scheme = $1 AND period = $2 AND unit = $3",
                            3, p);
    struct total_row t = {0};
    if (kp_pg_res_ntuples(r) == 1) {
        t.found = true;
        t.total = strtod(kp_pg_res_value(r, 0, 0), NULL);
        t.coverage = strtod(kp_pg_res_value(r, 0, 1), NULL);
        t.rank = strtol(kp_pg_res_value(r, 0, 2), NULL, 10);
        snprintf(t.grade, sizeof t.grade, "%s", kp_pg_res_value(r, 0, 3));
        t.vetoed = !strcmp(kp_pg_res_value(r, 0, 4), "t");
    }
    kp_pg_res_free(&r);
    return t;
}

static void assert_cell_in(const char *period, const char *unit, const char *ind, double value,
                           double score, long n_obs)
{
    struct cell_row c = db_cell(period, unit, ind);
    if (!c.found)
        fprintf(stderr, "no kp_indicator_score row for %s %s\n", unit, ind);
    assert_true(c.found);
    assert_false(c.value_null);
    assert_near(c.value, value);
    assert_near(c.score, score);
    assert_int_equal(c.n_obs, n_obs);
}

static void assert_cell(const char *unit, const char *ind, double value, double score, long n_obs)
{
    assert_cell_in("2024", unit, ind, value, score, n_obs);
}

static void assert_total_in(const char *period, const char *unit, double total, double coverage,
                            long rank)
{
    struct total_row t = db_total(period, unit);
    if (!t.found)
        fprintf(stderr, "no kp_unit_score row for %s\n", unit);
    assert_true(t.found);
    assert_near(t.total, total);
    assert_near(t.coverage, coverage);
    assert_int_equal(t.rank, rank);
    assert_string_equal(t.grade, "");
    assert_false(t.vetoed);
}

static void assert_total(const char *unit, double total, double coverage, long rank)
{
    assert_total_in("2024", unit, total, coverage, rank);
}

/* A dump of the scheme's score rows, updated_at included: equal dumps mean nothing was
 * rewritten. Caller frees. */
static char *dump_scores(void)
{
    return q_str("SELECT coalesce(string_agg(x, E'\\n' ORDER BY x), '') FROM ("
                 " SELECT concat_ws('|', 'i', period, unit, indicator, value, score, n_obs,"
                 " updated_at) AS x FROM kp_indicator_score WHERE scheme = $1"
                 " UNION ALL"
                 " SELECT concat_ws('|', 'u', period, unit, total, coverage, rank, grade, vetoed,"
                 " updated_at) FROM kp_unit_score WHERE scheme = $1) t",
                 SCHEME, NULL, NULL);
}

/* ---- batches -------------------------------------------------------------------------- */

struct ob {
    const char *u, *i, *p;
    double val;
    const char *ref;
    uint64_t rev;
};

#define SENT_MS 1718000000000LL

/* When set, each observation k of encode_batch is at SENT_MS + g_at[k]. */
static const int64_t *g_at;

/* x of the first observation of every batch built here: {"note": "测试", "n": 3}. */
static const uint8_t X_MAP[] = {0x82, 0xa4, 'n',  'o',  't',  'e',  0xa6, 0xe6,
                                0xb5, 0x8b, 0xe8, 0xaf, 0x95, 0xa1, 'n',  0x03};

static void encode_batch(struct kp_buf *out, const char *aid, uint64_t seq, const struct ob *obs,
                         size_t n)
{
    struct kp_batch b = {.seq = seq, .sent = SENT_MS, .n_obs = n};
    snprintf(b.aid, sizeof b.aid, "%s", aid);
    snprintf(b.scheme, sizeof b.scheme, "%s", SCHEME);
    snprintf(b.src, sizeof b.src, "stats");
    b.obs = calloc(n, sizeof *b.obs);
    for (size_t k = 0; k < n; k++) {
        struct kp_obs *o = &b.obs[k];
        snprintf(o->u, sizeof o->u, "%s", obs[k].u);
        snprintf(o->i, sizeof o->i, "%s", obs[k].i);
        snprintf(o->p, sizeof o->p, "%s", obs[k].p);
        snprintf(o->ref, sizeof o->ref, "%s", obs[k].ref);
        o->val = obs[k].val;
        o->rev = obs[k].rev;
        o->w = 1;
        o->at = g_at ? SENT_MS + g_at[k] : k == 0 ? SENT_MS + 456 : SENT_MS;
        if (k == 0) {
            o->x = X_MAP;
            o->x_len = sizeof X_MAP;
        }
    }
    kp_buf_reset(out);
    int rc = kp_batch_encode(out, &b);
    assert_int_equal(rc, 0);
    free(b.obs);
}

/* The first batch: four good observations and four the scheme refuses. */
static const struct ob BATCH1[] = {
    {"U1", "direct_a", "2024", 80, "r1", 0},    {"U1", "eff_b", "2024", 5.81, "r2", 0},
    {"U2", "direct_a", "2024", 90, "r3", 0},    {"U3", "eff_b", "2024", 12, "r4", 0},
    {"U9", "direct_a", "2024", 50, "r5", 0},    /* unknown_unit */
    {"U1", "nope", "2024", 50, "r6", 0},        /* unknown_indicator */
    {"U1", "direct_a", "2024", 150, "r7", 0},   /* out_of_range (max 100) */
    {"U1", "direct_a", "2024-05", 50, "r8", 0}, /* bad_period (years only) */
};
#define N_BATCH1 (sizeof BATCH1 / sizeof BATCH1[0])

static void check_batch1_rej(const struct kp_ack *a)
{
    assert_int_equal(a->n_rej, 4);
    static const uint32_t ns[] = {4, 5, 6, 7};
    static const enum kp_reason codes[] = {KP_R_unknown_unit, KP_R_unknown_indicator,
                                           KP_R_out_of_range, KP_R_bad_period};
    for (size_t k = 0; k < 4; k++) {
        assert_int_equal(a->rej[k].n, ns[k]);
        if (a->rej[k].code != codes[k])
            fprintf(stderr, "rej %zu: %s, want %s\n", k, kp_reason_str(a->rej[k].code),
                    kp_reason_str(codes[k]));
        assert_int_equal(a->rej[k].code, codes[k]);
        assert_non_null(a->rej[k].msg);
        assert_true(strlen(a->rej[k].msg) > 0);
    }
}

/* A batch built with msgpack-c directly: observation 1 has a unit code the codec refuses
 * (bad_field), observation 2 a NaN value (not_finite). */
static void encode_raw_batch(struct kp_buf *out, const char *aid, uint64_t seq)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
#define KEY(s) (msgpack_pack_str(&pk, strlen(s)), msgpack_pack_str_body(&pk, s, strlen(s)))
#define STR(s) KEY(s)
    msgpack_pack_map(&pk, 8);
    KEY("t"), STR("batch");
    KEY("v"), msgpack_pack_uint8(&pk, 1);
    KEY("aid"), STR(aid);
    KEY("scheme"), STR(SCHEME);
    KEY("src"), STR("stats");
    KEY("seq"), msgpack_pack_uint64(&pk, seq);
    KEY("sent"), msgpack_pack_int64(&pk, SENT_MS);
    KEY("obs"), msgpack_pack_array(&pk, 3);
    const char *units[3] = {"U3", "bad unit!", "U3"};
    const char *refs[3] = {"raw-1", "raw-2", "raw-3"};
    const char *inds[3] = {"direct_a", "direct_a", "direct_a"};
    double vals[3] = {70, 60, NAN};
    for (int k = 0; k < 3; k++) {
        msgpack_pack_map(&pk, 5);
        KEY("u"), STR(units[k]);
        KEY("i"), STR(inds[k]);
        KEY("p"), STR("2024");
        KEY("val"), msgpack_pack_double(&pk, vals[k]);
        KEY("ref"), STR(refs[k]);
    }
#undef KEY
#undef STR
    kp_buf_reset(out);
    kp_buf_append(out, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- the broker's side of the sockets ------------------------------------------------- */

struct broker {
    void *ctx, *router;
    char endpoint[128];
    char sid[KP_CODE_MAX + 1];
    int regs;
};

static void broker_open(struct broker *b)
{
    memset(b, 0, sizeof *b);
    b->ctx = zmq_ctx_new();
    b->router = zmq_socket(b->ctx, ZMQ_ROUTER);
    int one = 1, zero = 0;
    zmq_setsockopt(b->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(b->router, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_bind(b->router, "tcp://127.0.0.1:*"), 0);
    size_t len = sizeof b->endpoint;
    assert_int_equal(zmq_getsockopt(b->router, ZMQ_LAST_ENDPOINT, b->endpoint, &len), 0);
}

static void broker_close(struct broker *b)
{
    zmq_close(b->router);
    zmq_ctx_term(b->ctx);
}

#define MAXF 8
struct msg {
    size_t n;
    size_t len[MAXF];
    char data[MAXF][8192];
};

/* Receives one multipart message within timeout_ms; returns false on timeout. */
static bool broker_recv(struct broker *b, struct msg *m, int timeout_ms)
{
    zmq_pollitem_t it = {b->router, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return false;
    m->n = 0;
    int more = 1;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        assert_true(zmq_msg_recv(&part, b->router, 0) >= 0);
        if (m->n < MAXF) {
            size_t l = zmq_msg_size(&part);
            assert_true(l < sizeof m->data[0]);
            memcpy(m->data[m->n], zmq_msg_data(&part), l);
            m->data[m->n][l] = 0;
            m->len[m->n++] = l;
        }
        more = zmq_msg_more(&part);
        zmq_msg_close(&part);
    }
    return true;
}

/* Waits for the scorer's registration and learns its routing id. */
static void broker_wait_reg(struct broker *b)
{
    struct msg m;
    for (int i = 0; i < 50; i++) {
        if (!broker_recv(b, &m, 100))
            continue;
        if (m.n == 3 && !strcmp(m.data[1], "reg")) {
            bool is_hb = true;
            struct kp_reg reg;
            assert_int_equal(kp_reg_decode(m.data[2], m.len[2], &is_hb, &reg), KP_R_OK);
            assert_false(is_hb);
            assert_string_equal(reg.sid, m.data[0]); /* sid = routing id (INTERNAL.md) */
            assert_int_equal(reg.n_schemes, 1);
            assert_string_equal(reg.schemes[0], SCHEME);
            snprintf(b->sid, sizeof b->sid, "%s", reg.sid);
            b->regs++;
            return;
        }
    }
    fail_msg("no reg from the scorer");
}

/* Sends ["bat", cid, rid, aid, seq, payload] to the scorer and returns the reply payload
 * (skipping the registrations that keep coming). */
static void broker_roundtrip(struct broker *b, const char *aid, uint64_t seq,
                             const struct kp_buf *payload, struct msg *reply)
{
    char seqtxt[24];
    snprintf(seqtxt, sizeof seqtxt, "%" PRIu64, seq);
    const char *cid = "collector-1", *rid = "adapter-rid";
    assert_true(zmq_send(b->router, b->sid, strlen(b->sid), ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(b->router, "bat", 3, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(b->router, cid, strlen(cid), ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(b->router, rid, strlen(rid), ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(b->router, aid, strlen(aid), ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(b->router, seqtxt, strlen(seqtxt), ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(b->router, payload->data, payload->len, 0) >= 0);
    for (int i = 0; i < 100; i++) {
        if (!broker_recv(b, reply, 100))
            continue;
        if (reply->n == 3 && !strcmp(reply->data[1], "reg"))
            continue;
        /* [sid, "rep", cid, rid, payload] */
        assert_int_equal(reply->n, 5);
        assert_string_equal(reply->data[0], b->sid);
        assert_string_equal(reply->data[1], "rep");
        assert_string_equal(reply->data[2], cid);
        assert_string_equal(reply->data[3], rid);
        return;
    }
    fail_msg("no reply from the scorer");
}

static void decode_ack(const struct msg *m, struct kp_ack *a)
{
    enum kp_msg_type t;
    assert_int_equal(kp_msg_peek(m->data[4], m->len[4], 1 << 20, &t), KP_R_OK);
    if (t == KP_MSG_NACK) {
        struct kp_nack n;
        assert_int_equal(kp_nack_decode(m->data[4], m->len[4], &n), KP_R_OK);
        fprintf(stderr, "nack %s: %s\n", kp_reason_str(n.code), n.msg);
    }
    assert_int_equal(t, KP_MSG_ACK);
    assert_int_equal(kp_ack_decode(m->data[4], m->len[4], a), KP_R_OK);
}

static void decode_nack(const void *p, size_t len, struct kp_nack *n)
{
    enum kp_msg_type t;
    assert_int_equal(kp_msg_peek(p, len, 1 << 20, &t), KP_R_OK);
    assert_int_equal(t, KP_MSG_NACK);
    assert_int_equal(kp_nack_decode(p, len, n), KP_R_OK);
}

/* ---- the scorer's loop in a thread ---------------------------------------------------- */

struct loop_thread {
    uv_loop_t loop;
    uv_async_t stop;
    struct scr *scr;
    pthread_t th;
    int admin_port; /* read before the thread starts */
};

static void on_stop_async(uv_async_t *a)
{
    struct loop_thread *lt = a->data;
    scr_stop(&lt->scr);
    uv_close((uv_handle_t *)a, NULL);
}

static void *loop_main(void *arg)
{
    struct loop_thread *lt = arg;
    uv_run(&lt->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* A scorer with cfg, its loop running in a thread of its own. */
static void loop_thread_start(struct loop_thread *lt, const struct scr_config *cfg)
{
    assert_int_equal(uv_loop_init(&lt->loop), 0);
    assert_int_equal(scr_start(&lt->loop, cfg, &lt->scr), 0);
    assert_true(scr_ready(lt->scr));
    lt->admin_port = scr_admin_port(lt->scr);
    assert_int_equal(uv_async_init(&lt->loop, &lt->stop, on_stop_async), 0);
    lt->stop.data = lt;
    assert_int_equal(pthread_create(&lt->th, NULL, loop_main, lt), 0);
}

/* Stops it on the loop's thread; the loop then ends by itself (every handle closed). */
static void loop_thread_stop(struct loop_thread *lt)
{
    assert_int_equal(uv_async_send(&lt->stop), 0);
    assert_int_equal(pthread_join(lt->th, NULL), 0);
    assert_int_equal(uv_loop_close(&lt->loop), 0);
}

/* ---- admin over HTTP ------------------------------------------------------------------ */

static size_t curl_sink(char *p, size_t size, size_t n, void *arg)
{
    kp_buf_append(arg, p, size * n);
    return size * n;
}

static long http_get(int port, const char *path, struct kp_buf *body)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    kp_buf_reset(body);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curl_sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 5L);
    long code = 0;
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    kp_buf_cstr(body);
    return code;
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_sockets_end_to_end(void **state)
{
    (void)state;
    struct broker b;
    broker_open(&b);
    struct scr_config cfg = make_config(b.endpoint);
    struct loop_thread lt;
    /* Part rows whole, no log: test_restart_replays damages them. (Set before the loop's
     * thread starts, restored after it ends.) */
    size_t log_before = scr__cells_log_max;
    scr__cells_log_max = 0;
    loop_thread_start(&lt, &cfg);
    int admin_port = lt.admin_port;
    assert_true(admin_port > 0);

    broker_wait_reg(&b);
    /* Scheme reference rows. */
    assert_int_equal(q_ll("SELECT count(*) FROM kp_unit WHERE scheme = 'kp-test'"), 3);
    assert_int_equal(q_ll("SELECT count(*) FROM kp_group WHERE scheme = 'kp-test'"), 2);
    assert_int_equal(q_ll("SELECT count(*) FROM kp_indicator WHERE scheme = 'kp-test' AND "
                          "is_leaf AND parent IS NULL"),
                     2);
    char *v =
        q_str("SELECT name FROM kp_unit WHERE scheme = $1 AND unit = 'U3'", SCHEME, NULL, NULL);
    assert_string_equal(v, "单位三");
    free(v);

    struct kp_buf payload = {0}, body = {0};
    struct msg m;
    struct kp_ack a;

    /* 1. The first batch. */
    encode_batch(&payload, "ad1", 1, BATCH1, N_BATCH1);
    broker_roundtrip(&b, "ad1", 1, &payload, &m);
    decode_ack(&m, &a);
    assert_true(a.seq == 1);
    assert_true(a.stored == 4);
    assert_false(a.dup);
    check_batch1_rej(&a);
    kp_ack_fini(&a);

    assert_int_equal(q_ll("SELECT count(*) FROM observation WHERE scheme = 'kp-test'"), 4);
    assert_int_equal(q_ll("SELECT count(*) FROM rejection WHERE scheme = 'kp-test'"), 4);
    assert_int_equal(q_ll("SELECT count(*) FROM batch WHERE adapter = 'ad1'"), 1);
    assert_int_equal(q_ll("SELECT n_obs * 1000 + stored * 10 + jsonb_array_length(rej) "
                          "FROM batch WHERE adapter = 'ad1' AND seq = 1"),
                     8 * 1000 + 4 * 10 + 4);
    v = q_str("SELECT string_agg(n || ':' || code || ':' || coalesce(ref, '-'), ',' ORDER BY n) "
              "FROM rejection WHERE adapter = $1",
              "ad1", NULL, NULL);
    assert_string_equal(v, "4:unknown_unit:r5,5:unknown_indicator:r6,6:out_of_range:r7,"
                           "7:bad_period:r8");
    free(v);
    /* Provenance and extras of a stored observation (ARCHITECTURE.md guarantee 6). */
    v = q_str("SELECT concat_ws('|', src, ref, rev, unit, indicator, period, value, w, "
              "x->>'note', x->>'n', (extract(epoch FROM observed_at) * 1000)::int8, adapter, seq) "
              "FROM observation WHERE scheme = $1 AND ref = 'r1'",
              SCHEME, NULL, NULL);
    assert_string_equal(v, "stats|r1|0|U1|direct_a|2024|80|1|测试|3|1718000000456|ad1|1");
    free(v);
    v = q_str("SELECT x IS NULL FROM observation WHERE scheme = $1 AND ref = 'r2'", SCHEME, NULL,
              NULL);
    assert_string_equal(v, "t");
    free(v);

    /* Exact scores. U1: direct 80 (w40) + efficacy 5.81 → 58.733… (w60). */
    assert_cell("U1", "direct_a", 80, 80, 1);
    assert_cell("U1", "eff_b", 5.81, eff(5.81), 1);
    assert_cell("U2", "direct_a", 90, 90, 1);
    assert_cell("U3", "eff_b", 12, 100, 1);
    assert_int_equal(q_ll("SELECT count(*) FROM kp_indicator_score WHERE scheme = 'kp-test'"), 4);
    double u1 = (40 * 80 + 60 * eff(5.81)) / 100;
    assert_total("U1", u1, 1.0, 2); /* g1: U2 90 > U1 67.24 */
    assert_total("U2", 90, 0.4, 1);
    assert_total("U3", 100, 0.6, 1); /* alone in g2 */
    assert_int_equal(q_ll("SELECT count(*) FROM kp_unit_score WHERE scheme = 'kp-test'"), 3);
    /* one row for the period (migration 008), its units in the scheme's order */
    v = q_str("SELECT array_to_string(unit, ',') FROM unit_scores WHERE scheme = $1", SCHEME, NULL,
              NULL);
    assert_string_equal(v, "U1,U2,U3");
    free(v);
    /* The read model sees them with names. */
    v = q_str("SELECT unit_name || ':' || grp FROM kp_unit_score WHERE scheme = $1 AND "
              "unit = 'U1'",
              SCHEME, NULL, NULL);
    assert_string_equal(v, "单位一:g1");
    free(v);

    /* 2. A retransmit: dup:true with the original counts, nothing new. */
    char *before = dump_scores();
    broker_roundtrip(&b, "ad1", 1, &payload, &m);
    decode_ack(&m, &a);
    assert_true(a.seq == 1);
    assert_true(a.dup);
    assert_true(a.stored == 4);
    check_batch1_rej(&a);
    kp_ack_fini(&a);
    assert_int_equal(q_ll("SELECT count(*) FROM observation WHERE scheme = 'kp-test'"), 4);
    assert_int_equal(q_ll("SELECT count(*) FROM rejection WHERE scheme = 'kp-test'"), 4);
    assert_int_equal(q_ll("SELECT count(*) FROM batch WHERE adapter = 'ad1'"), 1);
    char *after = dump_scores();
    assert_string_equal(before, after);
    free(before);
    free(after);

    /* 3. A higher revision replaces the score; a lower one afterwards changes nothing. */
    static const struct ob REV1[] = {{"U1", "direct_a", "2024", 70, "r1", 1}};
    encode_batch(&payload, "ad1", 2, REV1, 1);
    broker_roundtrip(&b, "ad1", 2, &payload, &m);
    decode_ack(&m, &a);
    assert_false(a.dup);
    assert_true(a.stored == 1);
    assert_int_equal(a.n_rej, 0);
    kp_ack_fini(&a);
    assert_cell("U1", "direct_a", 70, 70, 1);
    u1 = (40 * 70 + 60 * eff(5.81)) / 100;
    assert_total("U1", u1, 1.0, 2);
    assert_int_equal(q_ll("SELECT count(*) FROM observation WHERE scheme = 'kp-test' AND "
                          "ref = 'r1'"),
                     2); /* every revision is kept */

    static const struct ob REV0[] = {{"U1", "direct_a", "2024", 10, "r1", 0},
                                     {"U2", "direct_a", "2024", 60, "r3b", 0}};
    encode_batch(&payload, "ad1", 3, REV0, 2);
    broker_roundtrip(&b, "ad1", 3, &payload, &m);
    decode_ack(&m, &a);
    assert_true(a.stored == 2);
    kp_ack_fini(&a);
    assert_cell("U1", "direct_a", 70, 70, 1); /* rev 0 < rev 1 */
    v = q_str("SELECT value FROM observation WHERE scheme = $1 AND ref = 'r1' AND rev = 0", SCHEME,
              NULL, NULL);
    assert_string_equal(v, "80"); /* (src, ref, rev) stored once: the first one stays */
    free(v);
    /* The COPY of this batch met the stored r1 rev 0 and went through ON CONFLICT: the new
     * record is stored, the old one not again (4 + 1 + 1). */
    assert_int_equal(q_ll("SELECT count(*) FROM observation WHERE scheme = 'kp-test'"), 6);
    assert_int_equal(q_ll("SELECT count(*) FROM observation WHERE scheme = 'kp-test' AND "
                          "ref = 'r3b' AND seq = 3"),
                     1);
    /* U2's direct_a now has two records (r3 = 90, r3b = 60): a value leaf keeps the latest
     * (at, src, ref) record, r3b. */
    struct cell_row c = db_cell("2024", "U2", "direct_a");
    assert_true(c.found);
    assert_int_equal(c.n_obs, 2);
    assert_near(c.score, 60);
    assert_total("U2", 60, 0.4, 2);
    assert_total("U1", u1, 1.0, 1); /* ranks moved with it */

    /* 4. Codec-level refusals inside a batch: rows and rej entries from the decoder. */
    encode_raw_batch(&payload, "ad1", 4);
    broker_roundtrip(&b, "ad1", 4, &payload, &m);
    decode_ack(&m, &a);
    assert_true(a.stored == 1);
    assert_int_equal(a.n_rej, 2);
    assert_int_equal(a.rej[0].n, 1);
    assert_int_equal(a.rej[0].code, KP_R_bad_field);
    assert_int_equal(a.rej[1].n, 2);
    assert_int_equal(a.rej[1].code, KP_R_not_finite);
    kp_ack_fini(&a);
    v = q_str("SELECT string_agg(n || ':' || code || ':' || coalesce(ref, '-'), ',' ORDER BY n) "
              "FROM rejection WHERE adapter = $1 AND seq = 4",
              "ad1", NULL, NULL);
    assert_string_equal(v, "1:bad_field:raw-2,2:not_finite:raw-3");
    free(v);
    assert_cell("U3", "direct_a", 70, 70, 1);
    assert_total("U3", (40 * 70 + 60 * 100) / 100.0, 1.0, 1);

    /* 5. Batch-level refusals: nacks, nothing stored. */
    long long n_batches = q_ll("SELECT count(*) FROM batch");
    struct kp_nack n;
    encode_batch(&payload, "ad1", 5, REV1, 1);
    broker_roundtrip(&b, "someone-else", 5, &payload, &m); /* envelope aid differs */
    decode_nack(m.data[4], m.len[4], &n);
    assert_int_equal(n.code, KP_R_bad_aid);
    assert_false(n.retry);
    assert_true(n.has_seq && n.seq == 5);
    kp_buf_reset(&payload);
    kp_buf_append(&payload, "\x81\xa1t", 3); /* truncated msgpack */
    broker_roundtrip(&b, "ad1", 6, &payload, &m);
    decode_nack(m.data[4], m.len[4], &n);
    assert_int_equal(n.code, KP_R_bad_msgpack);
    assert_false(n.retry);
    assert_false(n.has_seq);
    assert_int_equal(q_ll("SELECT count(*) FROM batch"), n_batches);

    /* 6. Admin endpoint. */
    assert_int_equal(http_get(admin_port, "/readyz", &body), 200);
    assert_int_equal(http_get(admin_port, "/metrics", &body), 200);
    const char *text = (const char *)body.data;
    assert_non_null(strstr(text, "kaoping_scorer_batches_total{outcome=\"committed\"} 4"));
    assert_non_null(strstr(text, "kaoping_scorer_batches_total{outcome=\"dup\"} 1"));
    assert_non_null(strstr(text, "kaoping_scorer_batches_total{outcome=\"nacked\"} 2"));
    assert_non_null(strstr(text, "kaoping_scorer_observations_stored_total 8"));
    assert_non_null(strstr(text, "kaoping_scorer_rejections_total{code=\"unknown_unit\"} 1"));
    assert_non_null(strstr(text, "kaoping_scorer_rejections_total{code=\"not_finite\"} 1"));
    assert_non_null(strstr(text, "kaoping_scorer_commit_seconds"));
    assert_non_null(strstr(text, "kaoping_scorer_batch_size"));
    assert_non_null(strstr(text, "kaoping_scorer_pg_errors_total 0"));

    loop_thread_stop(&lt);
    scr__cells_log_max = log_before;
    kp_buf_fini(&payload);
    kp_buf_fini(&body);
    broker_close(&b);
}

/* ---- a group closes at SCR_GROUP_BYTES --------------------------------------------------- */

/* Sends a bat frame without waiting for its reply. */
static void broker_send_bat(struct broker *b, const char *aid, uint64_t seq,
                            const struct kp_buf *payload)
{
    char seqtxt[24];
    snprintf(seqtxt, sizeof seqtxt, "%" PRIu64, seq);
    assert_true(zmq_send(b->router, b->sid, strlen(b->sid), ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(b->router, "bat", 3, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(b->router, "collector-1", 11, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(b->router, "adapter-rid", 11, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(b->router, aid, strlen(aid), ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(b->router, seqtxt, strlen(seqtxt), ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(b->router, payload->data, payload->len, 0) >= 0);
}

/* Three frames of ~0.6 MB wait in the scorer's socket while a lock holds its first batch; the
 * next loop turn takes all three, and the group closes once its frames reach 1 MiB: the first
 * two share a transaction (one now(), batch.received_at), the third has its own. Without the
 * byte bound the three would share one. */
static void test_group_bytes(void **state)
{
    (void)state;
    enum { N_BIG = 8000 };
    struct ob *big = calloc(N_BIG, sizeof *big);
    char(*refs)[64] = calloc(N_BIG, sizeof *refs);
    struct kp_buf pay[4] = {{0}};
    static const struct ob SMALL[] = {{"U1", "direct_a", "2025", 10, "gb-small", 0}};
    encode_batch(&pay[0], "adb", 1, SMALL, 1);
    for (uint64_t seq = 2; seq <= 4; seq++) {
        for (size_t k = 0; k < N_BIG; k++) {
            snprintf(refs[k], sizeof refs[k], "group-bytes-%" PRIu64 "-%06zu-padding-padding-pad",
                     seq, k);
            big[k] = (struct ob){"U2", "direct_a", "2025", (double)(k % 100), refs[k], 0};
        }
        encode_batch(&pay[seq - 1], "adb", seq, big, N_BIG);
        /* two reach SCR_GROUP_BYTES, one does not */
        assert_true(pay[seq - 1].len > SCR_GROUP_BYTES / 2 && pay[seq - 1].len < SCR_GROUP_BYTES);
    }

    struct broker b;
    broker_open(&b);
    struct scr_config cfg = make_config(b.endpoint);
    struct loop_thread lt;
    loop_thread_start(&lt, &cfg);
    broker_wait_reg(&b);

    struct kp_pg *lock = NULL;
    assert_int_equal(kp_pg_open(dsn(), &lock), 0);
    assert_int_equal(kp_pg_exec(lock, "BEGIN", 0, NULL, NULL), 0);
    assert_int_equal(
        kp_pg_exec(lock, "LOCK TABLE batch IN SHARE ROW EXCLUSIVE MODE", 0, NULL, NULL), 0);
    broker_send_bat(&b, "adb", 1, &pay[0]); /* the scorer waits for the lock in its INSERT */
    sleep_ms(300);
    for (int k = 1; k < 4; k++)
        broker_send_bat(&b, "adb", (uint64_t)k + 1, &pay[k]);
    sleep_ms(700); /* all three in the scorer's socket */
    assert_int_equal(kp_pg_exec(lock, "COMMIT", 0, NULL, NULL), 0);
    kp_pg_close(&lock);

    int replies = 0;
    struct msg m;
    for (int i = 0; i < 300 && replies < 4; i++) {
        if (!broker_recv(&b, &m, 100))
            continue;
        if (m.n == 5 && !strcmp(m.data[1], "rep")) {
            struct kp_ack a;
            assert_int_equal(kp_ack_decode(m.data[4], m.len[4], &a), KP_R_OK);
            assert_false(a.dup);
            assert_true(a.stored == (a.seq == 1 ? 1 : N_BIG));
            kp_ack_fini(&a);
            replies++;
        }
    }
    assert_int_equal(replies, 4);
    assert_int_equal(q_ll("SELECT count(*) FROM batch WHERE adapter = 'adb'"), 4);
    assert_int_equal(q_ll("SELECT count(*) FROM observation WHERE adapter = 'adb'"), 1 + 3 * N_BIG);
    /* {2, 3} in one transaction, {4} in another */
    assert_int_equal(q_ll("SELECT count(DISTINCT received_at) FROM batch WHERE adapter = 'adb' "
                          "AND seq IN (2, 3)"),
                     1);
    assert_int_equal(q_ll("SELECT count(DISTINCT received_at) FROM batch WHERE adapter = 'adb' "
                          "AND seq IN (2, 3, 4)"),
                     2);
    /* {2, 3}'s 16,000 rows by one COPY; its megabytes of COPY data given back after the group
     * (the replies are sent after that, from the scorer's thread) */
    assert_int_equal(q_ll("SELECT count(DISTINCT cmin::text) FROM observation WHERE adapter = "
                          "'adb' AND seq IN (2, 3)"),
                     1);
    assert_true(lt.scr->copy.cap <= 256 * 1024);
    /* A small batch after the big ones: the queue's copies of the big frames are given back
     * (they held ~2 MB; given back before the reply is sent) */
    bool big_held = false;
    for (size_t k = 0; k < SCR_GROUP_MAX; k++)
        big_held |= lt.scr->pend[k].payload.cap > SCR_GROUP_BYTES / 2;
    assert_true(big_held); /* before it: {2, 3}'s and {4}'s frames */
    static const struct ob LAST[] = {{"U1", "direct_a", "2025", 20, "gb-last", 0}};
    struct kp_buf last = {0};
    encode_batch(&last, "adb", 5, LAST, 1);
    broker_send_bat(&b, "adb", 5, &last);
    kp_buf_fini(&last);
    bool got = false;
    for (int i = 0; i < 100 && !got; i++)
        got = broker_recv(&b, &m, 100) && m.n == 5 && !strcmp(m.data[1], "rep");
    assert_true(got);
    assert_int_equal(q_ll("SELECT count(*) FROM batch WHERE adapter = 'adb'"), 5);
    for (size_t k = 0; k < SCR_GROUP_MAX; k++)
        assert_true(lt.scr->pend[k].payload.cap <= 16 * 1024);

    loop_thread_stop(&lt);
    for (int k = 0; k < 4; k++)
        kp_buf_fini(&pay[k]);
    free(big);
    free(refs);
    broker_close(&b);
}

/* ---- restart -------------------------------------------------------------------------- */

/* Every cell and total of the engine has its row in the database, with the same values. */
struct cmp {
    const struct score_engine *e;
    size_t cells, totals;
};

static const struct score_scheme *g_sc;

static void cmp_cell_db(const struct score_cell_change *c, void *arg)
{
    struct cmp *k = arg;
    if (c->node == 0)
        return; /* the root's cell: its total is in unit_scores */
    k->cells++;
    struct cell_row r = db_cell(c->period, score_scheme_unit_code(g_sc, c->unit),
                                score_scheme_node_code(g_sc, c->node));
    assert_true(r.found);
    assert_true(r.score == c->score); /* bit for bit: the database holds the engine's doubles */
    assert_true(r.n_obs == (long)c->n_obs);
    if (isnan(c->value))
        assert_true(r.value_null);
    else
        assert_true(r.value == c->value);
}

static void cmp_total_db(const struct score_total_change *t, void *arg)
{
    struct cmp *k = arg;
    k->totals++;
    struct total_row r = db_total(t->period, score_scheme_unit_code(g_sc, t->unit));
    assert_true(r.found);
    assert_true(r.total == t->total);
    assert_true(r.coverage == t->coverage);
    assert_int_equal(r.rank, t->rank);
    assert_string_equal(r.grade, t->grade ? t->grade : "");
    assert_int_equal(r.vetoed, t->vetoed);
}

static void assert_engine_equals_db(struct scr *s)
{
    const struct score_engine *e = scr_engine(s, SCHEME);
    assert_non_null(e);
    struct score_scheme *sc = NULL;
    char err[256];
    assert_int_equal(score_scheme_load(g_scheme_path, &sc, err, sizeof err), 0);
    g_sc = sc;
    struct cmp k = {.e = e};
    score_engine_foreach_cell(e, cmp_cell_db, &k);
    score_engine_foreach_total(e, cmp_total_db, &k);
    assert_true((long long)k.cells ==
                q_ll("SELECT count(*) FROM kp_indicator_score WHERE scheme = 'kp-test'"));
    assert_true((long long)k.totals ==
                q_ll("SELECT count(*) FROM kp_unit_score WHERE scheme = 'kp-test'"));
    score_scheme_destroy(&sc);
}

/* A scorer with cfg on a fresh loop, run by the caller (not in a thread), ready. */
static struct scr *start_ready(uv_loop_t *loop, const struct scr_config *cfg)
{
    struct scr *s = NULL;
    assert_int_equal(uv_loop_init(loop), 0);
    assert_int_equal(scr_start(loop, cfg, &s), 0);
    assert_true(scr_ready(s));
    return s;
}

static void stop_and_close(uv_loop_t *loop, struct scr **s)
{
    scr_stop(s);
    assert_null(*s);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

static enum scr_outcome process(struct scr *s, const char *aid, const struct kp_buf *payload,
                                struct kp_buf *reply)
{
    return scr_process(s, aid, strlen(aid), payload->data, payload->len, reply);
}

static void test_restart_replays(void **state)
{
    (void)state;
    char *before = dump_scores();
    long long n_obs = q_ll("SELECT count(*) FROM observation WHERE scheme = 'kp-test'");
    assert_int_equal(n_obs, 7); /* 4 + 1 + 1 (r1 rev 0 was there) + 1 */

    /* Nothing listens on the broker endpoint: this scorer is driven directly. */
    struct scr_config cfg = make_config("tcp://127.0.0.1:1");
    uv_loop_t loop;
    struct scr *s = start_ready(&loop, &cfg);
    struct scr_stats st;
    scr_get_stats(s, &st);
    assert_true(st.replayed == (uint64_t)n_obs);
    assert_true(st.replay_rows_synced == 0); /* the database already equals the engine */
    char *after = dump_scores();
    assert_string_equal(before, after); /* not even updated_at moved */
    free(before);
    free(after);
    assert_engine_equals_db(s);

    /* A retransmit of a batch committed before the restart. */
    struct kp_buf payload = {0}, reply = {0};
    struct kp_ack a;
    encode_batch(&payload, "ad1", 1, BATCH1, N_BATCH1);
    assert_int_equal(process(s, "ad1", &payload, &reply), SCR_DUP);
    assert_int_equal(kp_ack_decode(reply.data, reply.len, &a), KP_R_OK);
    assert_true(a.dup && a.stored == 4);
    check_batch1_rej(&a);
    kp_ack_fini(&a);

    /* New data builds on the replayed state: U1's total needs both replayed leaves. */
    static const struct ob MORE[] = {{"U1", "eff_b", "2024", 9, "r2", 1}};
    encode_batch(&payload, "ad1", 7, MORE, 1);
    assert_int_equal(process(s, "ad1", &payload, &reply), SCR_COMMITTED);
    assert_int_equal(kp_ack_decode(reply.data, reply.len, &a), KP_R_OK);
    assert_false(a.dup);
    assert_true(a.stored == 1);
    kp_ack_fini(&a);
    assert_cell("U1", "eff_b", 9, eff(9), 1);
    assert_total("U1", (40 * 70 + 60 * eff(9)) / 100, 1.0, 1);
    assert_total("U2", 60, 0.4, 2);
    assert_engine_equals_db(s);
    stop_and_close(&loop, &s);

    /* Restart once more: still equal, still nothing to rewrite. */
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(scr_start(&loop, &cfg, &s), 0);
    scr_get_stats(s, &st);
    assert_true(st.replayed == (uint64_t)n_obs + 1);
    assert_true(st.replay_rows_synced == 0);
    assert_engine_equals_db(s);

    /* A score row damaged behind the scorer's back is repaired by the next replay. */
    assert_int_equal(kp_pg_exec(g_pg,
                                "UPDATE unit_scores SET total[array_position(unit, 'U3')] = 0 "
                                "WHERE scheme = 'kp-test' AND 'U3' = ANY (unit)",
                                0, NULL, NULL),
                     0);
    /* a cell row of a period the engine has no data for (migration 005's layout) */
    assert_int_equal(
        kp_pg_exec(g_pg,
                   "INSERT INTO indicator_cells (scheme, period, unit, base, layout, value, score, "
                   "n_obs, updated_us) SELECT l.scheme, '2023', 'U1', 0, l.layout, "
                   "ARRAY(SELECT NULL::float8 FROM unnest(l.codes)), "
                   "ARRAY(SELECT CASE WHEN c = 'eff_b' THEN 1 END::float8 FROM unnest(l.codes) c), "
                   "ARRAY(SELECT CASE WHEN c = 'eff_b' THEN 1 ELSE 0 END FROM unnest(l.codes) c), "
                   "ARRAY(SELECT CASE WHEN c = 'eff_b' THEN 0 END::int8 FROM unnest(l.codes) c) "
                   "FROM indicator_layout l WHERE l.scheme = 'kp-test' "
                   "ORDER BY l.layout DESC LIMIT 1",
                   0, NULL, NULL),
        0);
    /* a row of the scorer's with the same cells in a part of another size (a scorer built with
     * another SCR_CELLS_PART wrote it): rewritten in this scorer's size */
    assert_int_equal(
        kp_pg_exec(
            g_pg,
            "UPDATE indicator_cells SET value = ARRAY(SELECT unnest(value)) || 'NaN'::float8, "
            "score = ARRAY(SELECT unnest(score)) || 0::float8, "
            "n_obs = ARRAY(SELECT unnest(n_obs)) || 0, "
            "updated_us = ARRAY(SELECT unnest(updated_us)) || 0::int8 "
            "WHERE scheme = 'kp-test' AND period = '2024' AND unit = 'U2'",
            0, NULL, NULL),
        0);
    static const char SIZES[] = "SELECT count(DISTINCT cardinality(n_obs)) FROM indicator_cells "
                                "WHERE scheme = 'kp-test' AND period = '2024'";
    assert_int_equal(q_ll(SIZES), 2);
    /* U1 and U2 share a log bucket (scr__cells_log_units 2): its one log row of 2024, with a
     * cell of U1's, goes with the fold that rewriting U2's part makes of the bucket */
    static const char LOG_2024[] = "SELECT count(*) FROM indicator_cell_log WHERE scheme = "
                                   "'kp-test' AND period = '2024'";
    assert_int_equal(q_ll(LOG_2024), 1);
    assert_int_equal(q_ll("SELECT count(*) FROM indicator_cell_log WHERE scheme = 'kp-test' "
                          "AND period = '2024' AND units = '{U1}'"),
                     1);
    stop_and_close(&loop, &s);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(scr_start(&loop, &cfg, &s), 0);
    scr_get_stats(s, &st);
    /* unit_scores of 2024, the 2023 part deleted, U2's part in this size; and the fold: U1's
     * logged part written whole, the log row deleted */
    assert_true(st.replay_rows_synced == 5);
    assert_int_equal(q_ll(SIZES), 1);
    assert_int_equal(q_ll(LOG_2024), 0);
    assert_total("U3", (40 * 70 + 60 * 100) / 100.0, 1.0, 1);
    assert_false(db_cell("2023", "U1", "eff_b").found);
    assert_engine_equals_db(s);
    stop_and_close(&loop, &s);
    kp_buf_fini(&payload);
    kp_buf_fini(&reply);
}

/* The scheme file changes its node order between runs (migration 005: indicator_cells rows are
 * arrays in the order of an indicator_layout). The new scorer rewrites every row in its own
 * layout, and the read model does not move, updated_at included; batches then write the new
 * layout, and going back to the old file rewrites them again. */
static void write_scheme(const char *yaml)
{
    FILE *f = fopen(g_scheme_path, "w");
    assert_non_null(f);
    fputs(yaml, f);
    fclose(f);
}

static void test_scheme_reorder(void **state)
{
    (void)state;
    /* The same scheme with its two leaves in the other order. */
    static const char REORDERED[] = SCHEME_HEAD LEAF_EFF_B LEAF_DIRECT_A;
    struct kp_buf payload = {0}, reply = {0};
    struct scr_config cfg = make_config("tcp://127.0.0.1:1");
    uv_loop_t loop;
    struct scr *s = start_ready(&loop, &cfg);
    /* a log row in the old layout: U3's first cell of 2019 */
    static const struct ob OLD[] = {{"U3", "direct_a", "2019", 60, "r8", 1}};
    encode_batch(&payload, "ad8", 1, OLD, 1);
    assert_int_equal(process(s, "ad8", &payload, &reply), SCR_COMMITTED);
    stop_and_close(&loop, &s);
    char *before = dump_scores();
    long long rows = q_ll("SELECT count(*) FROM indicator_cells WHERE scheme = 'kp-test'");
    assert_true(rows > 0);
    /* log rows in the old layout too (migration 007): the new scorer folds them */
    static const char OLD_LOG[] = "SELECT count(*) FROM indicator_cell_log g JOIN "
                                  "indicator_layout l ON l.layout = g.layout WHERE "
                                  "g.scheme = 'kp-test' AND l.codes <> '{eff_b,direct_a}'";
    assert_int_equal(q_ll(OLD_LOG), 1);
    write_scheme(REORDERED);

    s = start_ready(&loop, &cfg);
    struct scr_stats st;
    scr_get_stats(s, &st);
    /* every row, in the new layout (with small parts, a cell moving to another part also
     * deletes its old row: SCR_CELLS_PART builds) */
    assert_true(st.replay_rows_synced >= (uint64_t)rows);
    char *after = dump_scores();
    assert_string_equal(before, after); /* the same cells, updated_at included */
    free(before);
    free(after);
    char *codes = q_str("SELECT string_agg(DISTINCT l.codes::text, ' ') FROM indicator_cells c "
                        "JOIN indicator_layout l ON l.layout = c.layout WHERE c.scheme = $1",
                        SCHEME, NULL, NULL);
    assert_string_equal(codes, "{eff_b,direct_a}");
    free(codes);
    assert_int_equal(q_ll(OLD_LOG), 0);
    assert_engine_equals_db(s);

    /* A batch in the new layout (2023: the later tests' 2024 cells stay as they are). */
    static const struct ob MORE[] = {{"U2", "eff_b", "2023", 10, "r9", 1},
                                     {"U2", "direct_a", "2023", 70, "r9a", 1}};
    encode_batch(&payload, "ad9", 1, MORE, 2);
    assert_int_equal(process(s, "ad9", &payload, &reply), SCR_COMMITTED);
    struct cell_row c = db_cell("2023", "U2", "eff_b");
    assert_true(c.found && c.value == 10 && c.n_obs == 1);
    assert_near(c.score, eff(10));
    c = db_cell("2023", "U2", "direct_a");
    assert_true(c.found && c.value == 70 && c.n_obs == 1);
    assert_engine_equals_db(s);
    stop_and_close(&loop, &s);

    /* Back to the original file: rewritten once more, nothing moves. */
    before = dump_scores();
    write_scheme(SCHEME_YAML);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(scr_start(&loop, &cfg, &s), 0);
    scr_get_stats(s, &st);
    assert_true(st.replay_rows_synced >=
                (uint64_t)q_ll("SELECT count(*) FROM indicator_cells WHERE scheme = 'kp-test'"));
    after = dump_scores();
    assert_string_equal(before, after);
    free(before);
    free(after);
    assert_engine_equals_db(s);
    stop_and_close(&loop, &s);
    kp_buf_fini(&payload);
    kp_buf_fini(&reply);
}

/* ---- outages -------------------------------------------------------------------------- */

/* Runs the loop (timers: reconnection) until the scorer is ready or timeout_ms passes. */
static bool wait_ready(uv_loop_t *loop, struct scr *s, int timeout_ms)
{
    for (int t = 0; t < timeout_ms; t += 20) {
        uv_run(loop, UV_RUN_NOWAIT);
        if (scr_ready(s))
            return true;
        sleep_ms(20);
    }
    return false;
}

static int harness(const char *fn)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "bash -c '. \"%s/tests/harness/pg.sh\" && %s \"$KP_PG_DIR\" \"$KP_PG_PORT\"'",
             KP_SOURCE_DIR, fn);
    return system(cmd);
}

static void test_db_outages(void **state)
{
    (void)state;
    struct scr_config cfg = make_config("tcp://127.0.0.1:1");
    uv_loop_t loop;
    struct scr *s = start_ready(&loop, &cfg);
    struct kp_buf payload = {0}, reply = {0};
    struct kp_ack a;
    struct kp_nack n;

    /* 1. The server ends the scorer's session. */
    long long killed = q_ll("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                            "AND backend_type = 'client backend'");
    assert_true(killed >= 1);
    sleep_ms(100);
    static const struct ob OB8[] = {{"U3", "direct_a", "2024", 75, "raw-1", 1}};
    encode_batch(&payload, "ad2", 8, OB8, 1);
    assert_int_equal(process(s, "ad2", &payload, &reply), SCR_NACKED);
    decode_nack(reply.data, reply.len, &n);
    assert_int_equal(n.code, KP_R_scorer_unavailable);
    assert_true(n.retry);
    assert_true(n.has_seq && n.seq == 8);
    assert_false(scr_ready(s));
    assert_true(wait_ready(&loop, s, 5000));
    assert_int_equal(process(s, "ad2", &payload, &reply), SCR_COMMITTED); /* the retransmit */
    assert_int_equal(kp_ack_decode(reply.data, reply.len, &a), KP_R_OK);
    assert_true(a.stored == 1 && !a.dup);
    kp_ack_fini(&a);
    assert_cell("U3", "direct_a", 75, 75, 1);

    /* 2. The whole server goes away and comes back. */
    if (!getenv("KP_PG_DIR") || !getenv("KP_PG_PORT")) {
        fprintf(stderr, "KP_PG_DIR not set: skipping the server restart\n");
    } else {
        assert_int_equal(harness("kp_pg_stop"), 0);
        static const struct ob OB9[] = {{"U3", "direct_a", "2024", 65, "raw-1", 2}};
        encode_batch(&payload, "ad2", 9, OB9, 1);
        assert_int_equal(process(s, "ad2", &payload, &reply), SCR_NACKED);
        decode_nack(reply.data, reply.len, &n);
        assert_int_equal(n.code, KP_R_scorer_unavailable);
        assert_false(wait_ready(&loop, s, 600)); /* a few failed attempts with backoff */
        assert_int_equal(process(s, "ad2", &payload, &reply), SCR_NACKED);
        assert_int_equal(harness("kp_pg_start"), 0);
        assert_true(wait_ready(&loop, s, 10000));
        assert_int_equal(process(s, "ad2", &payload, &reply), SCR_COMMITTED);
        assert_int_equal(kp_ack_decode(reply.data, reply.len, &a), KP_R_OK);
        assert_true(a.stored == 1 && !a.dup);
        kp_ack_fini(&a);
        assert_cell("U3", "direct_a", 65, 65, 1);
        /* And again: a retransmit after the outage is a dup. */
        assert_int_equal(process(s, "ad2", &payload, &reply), SCR_DUP);
    }
    /* 3. The connection dies during COMMIT: its outcome is unknown to the scorer, which
     * rebuilds its engines from the database once reconnected. A deferred trigger makes the
     * server end the session while committing (the transaction is then not committed). */
    assert_int_equal(
        kp_pg_exec_script(g_pg, "CREATE SEQUENCE kp_test_kill_seq;"
                                "CREATE FUNCTION kp_test_kill() RETURNS trigger LANGUAGE plpgsql "
                                "AS $$ BEGIN IF NEW.adapter = 'ad-kill' AND "
                                "nextval('kp_test_kill_seq') = 1 THEN "
                                "PERFORM pg_terminate_backend(pg_backend_pid()); "
                                "PERFORM pg_sleep(1); END IF; RETURN NULL; END $$;"
                                "CREATE CONSTRAINT TRIGGER kp_test_kill AFTER INSERT ON batch "
                                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                                "EXECUTE FUNCTION kp_test_kill();"),
        0);
    struct scr_stats st;
    scr_get_stats(s, &st);
    uint64_t replays = st.replays;
    static const struct ob OB10[] = {{"U2", "eff_b", "2024", 10.5, "k-1", 0}};
    encode_batch(&payload, "ad-kill", 10, OB10, 1);
    assert_int_equal(process(s, "ad-kill", &payload, &reply), SCR_NACKED);
    decode_nack(reply.data, reply.len, &n);
    assert_int_equal(n.code, KP_R_scorer_unavailable);
    assert_true(n.retry);
    assert_false(db_cell("2024", "U2", "eff_b").found); /* not committed */
    assert_true(wait_ready(&loop, s, 10000));
    scr_get_stats(s, &st);
    assert_true(st.replays == replays + 1); /* the engine was rebuilt */
    assert_engine_equals_db(s);
    assert_int_equal(process(s, "ad-kill", &payload, &reply), SCR_COMMITTED);
    assert_cell("U2", "eff_b", 10.5, eff(10.5), 1);
    assert_int_equal(kp_pg_exec_script(g_pg, "DROP TRIGGER kp_test_kill ON batch;"
                                             "DROP FUNCTION kp_test_kill();"
                                             "DROP SEQUENCE kp_test_kill_seq;"),
                     0);

    scr_get_stats(s, &st);
    assert_true(st.pg_errors >= 3);
    assert_true(st.reconnects >= 2);
    assert_engine_equals_db(s);
    stop_and_close(&loop, &s);

    /* 4. PostgreSQL is not up when the scorer starts: it starts anyway, unready, and gets
     * ready by itself once the server is there. */
    if (getenv("KP_PG_DIR") && getenv("KP_PG_PORT")) {
        static const struct ob OB9B[] = {{"U3", "direct_a", "2024", 65, "raw-1", 2}};
        encode_batch(&payload, "ad2", 9, OB9B, 1);
        assert_int_equal(harness("kp_pg_stop"), 0);
        assert_int_equal(uv_loop_init(&loop), 0);
        assert_int_equal(scr_start(&loop, &cfg, &s), 0);
        assert_false(scr_ready(s));
        assert_int_equal(process(s, "ad2", &payload, &reply), SCR_NACKED);
        decode_nack(reply.data, reply.len, &n);
        assert_int_equal(n.code, KP_R_scorer_unavailable);
        assert_true(n.retry);
        assert_false(wait_ready(&loop, s, 300));
        assert_int_equal(harness("kp_pg_start"), 0);
        assert_true(wait_ready(&loop, s, 10000));
        assert_engine_equals_db(s);
        assert_int_equal(process(s, "ad2", &payload, &reply), SCR_DUP); /* seq 9 again */
        stop_and_close(&loop, &s);
    }
    kp_buf_fini(&payload);
    kp_buf_fini(&reply);
}

/* ---- failover ------------------------------------------------------------------------- */

/* Runs the loop until scr_active(s, SCHEME) == want or timeout_ms passes. */
static bool wait_active(uv_loop_t *loop, struct scr *s, bool want, int timeout_ms)
{
    for (int t = 0; t < timeout_ms; t += 10) {
        uv_run(loop, UV_RUN_NOWAIT);
        if (scr_active(s, SCHEME) == want)
            return true;
        sleep_ms(10);
    }
    return false;
}

static void run_for(uv_loop_t *loop, int ms)
{
    for (int t = 0; t < ms; t += 10) {
        uv_run(loop, UV_RUN_NOWAIT);
        sleep_ms(10);
    }
}

/* ARCHITECTURE.md "scorer/": one active scorer per scheme, guaranteed by an advisory lock; a
 * standby takes over when the active one goes away, and a scorer whose lock session ended
 * never writes the scheme again before it holds the lock in a new session (no split brain). */
static void test_failover_lock(void **state)
{
    (void)state;
    struct scr_config cfg = make_config("tcp://127.0.0.1:1");
    cfg.lock_poll_ms = 50;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct scr *a = NULL, *b = NULL;
    assert_int_equal(scr_start(&loop, &cfg, &a), 0);
    assert_true(scr_ready(a));
    assert_true(scr_active(a, SCHEME));
    assert_int_equal(scr_start(&loop, &cfg, &b), 0);
    assert_false(scr_ready(b)); /* connected, but a standby */
    assert_false(scr_active(b, SCHEME));
    assert_int_equal(q_ll("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND "
                          "classid = 1802531683 AND granted"),
                     1);

    struct kp_buf payload = {0}, reply = {0};
    struct kp_nack n;
    struct kp_ack ack;
    static const struct ob OB1[] = {{"U1", "direct_a", "2025", 50, "fo-1", 0}};
    static const struct ob OB2[] = {{"U1", "direct_a", "2025", 70, "fo-1", 1},
                                    {"U2", "eff_b", "2025", 9, "fo-2", 0}};

    /* The standby refuses to write; the active one stores. */
    encode_batch(&payload, "fo", 1, OB1, 1);
    assert_int_equal(process(b, "fo", &payload, &reply), SCR_NACKED);
    decode_nack(reply.data, reply.len, &n);
    assert_int_equal(n.code, KP_R_scorer_unavailable);
    assert_true(n.retry);
    assert_int_equal(process(a, "fo", &payload, &reply), SCR_COMMITTED);
    run_for(&loop, 200); /* the standby's engine follows */
    assert_false(scr_active(b, SCHEME));

    /* The active scorer's session ends (as when its process dies): the standby takes the lock
     * within a few polls, with an engine that already holds what A stored. */
    assert_int_equal(q_ll("SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE "
                          "locktype = 'advisory' AND classid = 1802531683 AND granted"),
                     1);
    assert_true(wait_active(&loop, b, true, 5000));
    assert_engine_equals_db(b);

    /* Split brain guard: A lost its session with the lock; it must not write any more, even
     * after reconnecting, while B holds the lock. */
    encode_batch(&payload, "fo", 2, OB2, 2);
    assert_int_equal(process(a, "fo", &payload, &reply), SCR_NACKED);
    decode_nack(reply.data, reply.len, &n);
    assert_true(n.retry);
    run_for(&loop, 800); /* A reconnects: a standby now */
    assert_false(scr_active(a, SCHEME));
    assert_int_equal(process(a, "fo", &payload, &reply), SCR_NACKED);
    assert_int_equal(q_ll("SELECT count(*) FROM batch WHERE adapter = 'fo'"), 1);
    assert_int_equal(process(b, "fo", &payload, &reply), SCR_COMMITTED);
    assert_engine_equals_db(b);

    /* B stops (its session closes): A takes over, caught up with B's batch. */
    scr_stop(&b);
    assert_true(wait_active(&loop, a, true, 5000));
    assert_engine_equals_db(a);
    assert_int_equal(process(a, "fo", &payload, &reply), SCR_DUP);
    assert_int_equal(kp_ack_decode(reply.data, reply.len, &ack), KP_R_OK);
    assert_true(ack.dup && ack.stored == 2);
    kp_ack_fini(&ack);
    struct scr_stats st;
    scr_get_stats(a, &st);
    assert_true(st.locks_taken >= 2); /* at start, and the takeover */
    stop_and_close(&loop, &a);
    kp_buf_fini(&payload);
    kp_buf_fini(&reply);
}

/* ---- configuration -------------------------------------------------------------------- */

static void test_config_check(void **state)
{
    (void)state;
    struct scr_config cfg = make_config("tcp://127.0.0.1:1");
    char err[512];
    assert_int_equal(scr_config_check(&cfg, err, sizeof err), 0);

    cfg.instance = "bad instance";
    assert_int_equal(scr_config_check(&cfg, err, sizeof err), KP_ECONFIG);
    assert_non_null(strstr(err, "instance"));
    cfg.instance = "t";

    char bad_path[160];
    snprintf(bad_path, sizeof bad_path, "%s/bad.yaml", g_dir);
    FILE *f = fopen(bad_path, "w");
    assert_non_null(f);
    fputs("scheme: kp-bad\nname: x\ngroups: []\n", f);
    fclose(f);
    char *list[3] = {g_scheme_path, bad_path, NULL};
    cfg.schemes = list;
    assert_int_equal(scr_config_check(&cfg, err, sizeof err), KP_ESCHEME);
    assert_non_null(strstr(err, "bad.yaml"));
    char *twice[3] = {g_scheme_path, g_scheme_path, NULL};
    cfg.schemes = twice;
    assert_int_equal(scr_config_check(&cfg, err, sizeof err), KP_ECONFIG);
    assert_non_null(strstr(err, "kp-test"));
    cfg.schemes = g_schemes;

    /* The DSN from a file, then from the environment. */
    char dsn_path[160];
    snprintf(dsn_path, sizeof dsn_path, "%s/dsn", g_dir);
    f = fopen(dsn_path, "w");
    assert_non_null(f);
    fprintf(f, "  host=example port=1  \nsecond line\n");
    fclose(f);
    cfg.db_dsn = "";
    cfg.db_dsn_file = dsn_path;
    char *d = scr_config_dsn(&cfg, err, sizeof err);
    assert_non_null(d);
    assert_string_equal(d, "host=example port=1");
    free(d);
    cfg.db_dsn_file = "";
    setenv("KP_DB_DSN", "dbname=fromenv", 1);
    d = scr_config_dsn(&cfg, err, sizeof err);
    assert_string_equal(d, "dbname=fromenv");
    free(d);
    unsetenv("KP_DB_DSN");
    assert_null(scr_config_dsn(&cfg, err, sizeof err));
    assert_int_equal(scr_config_check(&cfg, err, sizeof err), KP_ECONFIG);
    assert_non_null(strstr(err, "db.dsn"));
}

/* The configuration table through the YAML loader: nested db keys, defaults, units. */
static void test_config_yaml(void **state)
{
    (void)state;
    char path[160], err[512];
    snprintf(path, sizeof path, "%s/scorer.yaml", g_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "instance: anshan\n"
            "db:\n"
            "  dsn: \"host=127.0.0.1 dbname=kaoping\"\n"
            "  retry_max_ms: 5s\n"
            "schemes:\n"
            "  - %s\n"
            "hb_ms: 250ms\n"
            "max_bytes: 1M\n",
            g_scheme_path);
    fclose(f);
    struct scr_config c;
    memset(&c, 0, sizeof c);
    int rc = kp_config_load(path, scr_config_table, &c, err, sizeof err);
    if (rc)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_string_equal(c.instance, "anshan");
    assert_string_equal(c.log_level, "info");
    assert_string_equal(c.broker, "tcp://127.0.0.1:7452");
    assert_string_equal(c.db_dsn, "host=127.0.0.1 dbname=kaoping");
    assert_true(c.db_retry_max_ms == 5000);
    assert_non_null(c.schemes);
    assert_string_equal(c.schemes[0], g_scheme_path);
    assert_null(c.schemes[1]);
    assert_string_equal(c.migrations, "schemas/migrations");
    assert_string_equal(c.admin, "127.0.0.1:0");
    assert_true(c.hb_ms == 250);
    assert_true(c.max_bytes == 1024 * 1024);
    assert_true(c.max_obs == 10000);
    assert_int_equal(scr_config_check(&c, err, sizeof err), 0);
    assert_int_equal(kp_config_set(scr_config_table, &c, "db.dsn", "dbname=other", err, sizeof err),
                     0);
    assert_string_equal(c.db_dsn, "dbname=other");
    kp_config_fini(scr_config_table, &c);

    /* schemes is required */
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("instance: x\n", f);
    fclose(f);
    memset(&c, 0, sizeof c);
    assert_int_equal(kp_config_load(path, scr_config_table, &c, err, sizeof err), KP_ECONFIG);
    assert_non_null(strstr(err, "schemes"));
    kp_config_fini(scr_config_table, &c);
}

/* ---- main ----------------------------------------------------------------------------- */

/* ---- group commit --------------------------------------------------------------------- */

/* The group's items: frames pay[k] of adapter adg, answered into rep[k]. */
static void group_items(struct scr_item *it, struct kp_buf *pay, struct kp_buf *rep, size_t n)
{
    for (size_t k = 0; k < n; k++)
        it[k] = (struct scr_item){.aid = "adg",
                                  .aid_len = 3,
                                  .payload = pay[k].data,
                                  .len = pay[k].len,
                                  .reply = &rep[k]};
}

/* Batches that arrive together share one transaction (scr_process_group): a revision inside
 * the group, a retransmit of a batch of the same group (dup with the counts the group is
 * committing) and a batch refused at the batch level (its neighbours still commit). */
static void test_group_commit(void **state)
{
    (void)state;
    struct scr_config cfg = make_config("tcp://127.0.0.1:1");
    uv_loop_t loop;
    struct scr *s = start_ready(&loop, &cfg);
    struct scr_stats st0, st1;
    scr_get_stats(s, &st0);

    static const struct ob A[] = {{"U1", "direct_a", "2026", 70, "g1", 0},
                                  {"U2", "direct_a", "2026", 50, "g2", 0}};
    static const struct ob B[] = {{"U1", "direct_a", "2026", 90, "g1", 1}, /* A's g1, revised */
                                  {"U3", "eff_b", "2026", 5.81, "g3", 0},
                                  {"U3", "nope", "2026", 1, "g4", 0}}; /* unknown_indicator */
    struct kp_buf pay[4] = {{0}}, rep[4] = {{0}};
    encode_batch(&pay[0], "adg", 1, A, 2);
    encode_batch(&pay[1], "adg", 2, B, 3);
    encode_batch(&pay[2], "adg", 1, A, 2);   /* a retransmit of the first, same group */
    encode_batch(&pay[3], "other", 3, A, 2); /* its aid is not the envelope's: bad_aid */
    struct scr_item it[4];
    group_items(it, pay, rep, 4);
    scr_process_group(s, it, 4);
    assert_int_equal(it[0].out, SCR_COMMITTED);
    assert_int_equal(it[1].out, SCR_COMMITTED);
    assert_int_equal(it[2].out, SCR_DUP);
    assert_int_equal(it[3].out, SCR_NACKED);

    struct kp_ack a;
    assert_int_equal(kp_ack_decode(rep[0].data, rep[0].len, &a), KP_R_OK);
    assert_true(!a.dup && a.seq == 1 && a.stored == 2 && a.n_rej == 0);
    kp_ack_fini(&a);
    assert_int_equal(kp_ack_decode(rep[1].data, rep[1].len, &a), KP_R_OK);
    assert_true(!a.dup && a.seq == 2 && a.stored == 2 && a.n_rej == 1);
    assert_int_equal(a.rej[0].n, 2);
    assert_int_equal(a.rej[0].code, KP_R_unknown_indicator);
    kp_ack_fini(&a);
    assert_int_equal(kp_ack_decode(rep[2].data, rep[2].len, &a), KP_R_OK);
    assert_true(a.dup && a.seq == 1 && a.stored == 2 && a.n_rej == 0);
    kp_ack_fini(&a);
    struct kp_nack nk;
    decode_nack(rep[3].data, rep[3].len, &nk);
    assert_int_equal(nk.code, KP_R_bad_aid);

    scr_get_stats(s, &st1);
    assert_true(st1.committed - st0.committed == 2);
    assert_true(st1.dup - st0.dup == 1);
    assert_true(st1.nacked - st0.nacked == 1);
    /* Exactly one row per record revision and per batch; one rejection. The rows of the two
     * batches went in by one COPY (one statement: one command id), the retransmit's not at all. */
    assert_int_equal(q_ll("SELECT count(*) FROM observation WHERE adapter = 'adg'"), 4);
    assert_int_equal(
        q_ll("SELECT count(DISTINCT cmin::text) FROM observation WHERE adapter = 'adg'"), 1);
    assert_int_equal(q_ll("SELECT count(*) FROM batch WHERE adapter = 'adg'"), 2);
    assert_int_equal(q_ll("SELECT count(*) FROM rejection WHERE adapter = 'adg'"), 1);

    /* 2026, by hand: U1 direct_a 90 (rev 1 replaces 70), U2 50, U3 eff_b 5.81 with good 12,
     * bad 6 and no clamp: 60 + 40 * (5.81 - 6) / (12 - 6) = 58.7333…; every unit has one of
     * the two leaves, so the totals renormalise to the leaf's score. */
    struct cell_row c = db_cell("2026", "U1", "direct_a");
    assert_true(c.found && c.n_obs == 1);
    assert_near(c.value, 90);
    assert_near(c.score, 90);
    c = db_cell("2026", "U3", "eff_b");
    assert_true(c.found);
    assert_near(c.score, 60 + 40 * (5.81 - 6) / 6.0);
    struct total_row t = db_total("2026", "U1");
    assert_true(t.found && t.rank == 1);
    assert_near(t.total, 90);
    assert_near(t.coverage, 0.4);
    t = db_total("2026", "U2");
    assert_true(t.found && t.rank == 2);
    assert_near(t.total, 50);
    t = db_total("2026", "U3");
    assert_true(t.found && t.rank == 1);
    assert_near(t.total, eff(5.81));
    assert_near(t.coverage, 0.6);
    assert_engine_equals_db(s);

    /* A batch whose every observation is refused gives its group's COPY no row: its
     * retransmit is told by its batch row alone, written after the COPY, and answered from it
     * with the original rejection. */
    {
        static const struct ob R[] = {{"U3", "nope", "2026", 1, "g9", 0}};
        struct kp_buf rp = {0}, rr = {0};
        encode_batch(&rp, "adg", 9, R, 1);
        struct scr_item ri;
        group_items(&ri, &rp, &rr, 1);
        for (int round = 0; round < 2; round++) {
            scr_process_group(s, &ri, 1);
            assert_int_equal(ri.out, round ? SCR_DUP : SCR_COMMITTED);
            assert_int_equal(kp_ack_decode(rr.data, rr.len, &a), KP_R_OK);
            assert_true(a.dup == (round == 1) && a.seq == 9 && a.stored == 0 && a.n_rej == 1);
            assert_int_equal(a.rej[0].code, KP_R_unknown_indicator);
            kp_ack_fini(&a);
        }
        assert_int_equal(q_ll("SELECT count(*) FROM batch WHERE adapter = 'adg' AND seq = 9"), 1);
        assert_int_equal(q_ll("SELECT count(*) FROM rejection WHERE adapter = 'adg' AND seq = 9"),
                         1);
        kp_buf_fini(&rp);
        kp_buf_fini(&rr);
        /* The retransmit ran the group again without COPY, and the scheme's next batches go so
         * too; by COPY again for the group below, as after that many batches. */
        assert_true(s->schemes[0].copy_skip > 0);
        s->schemes[0].copy_skip = 0;
    }

    /* A group whose second batch sends a stored revision again (g1 rev 0) beside a new record:
     * its COPY meets the stored row, and the group runs again without COPY. The first batch's
     * rows are stored once, nothing is lost, g1 keeps rev 1's 90. */
    {
        static const struct ob C[] = {{"U2", "direct_a", "2026", 55, "g5", 0},
                                      {"U3", "direct_a", "2026", 40, "g6", 0}};
        static const struct ob D[] = {{"U1", "direct_a", "2026", 10, "g1", 0},
                                      {"U3", "eff_b", "2026", 8, "g7", 0}};
        struct kp_buf cp[2] = {{0}}, cr[2] = {{0}};
        encode_batch(&cp[0], "adg", 4, C, 2);
        encode_batch(&cp[1], "adg", 5, D, 2);
        struct scr_item ci[2];
        group_items(ci, cp, cr, 2);
        scr_process_group(s, ci, 2);
        assert_int_equal(ci[0].out, SCR_COMMITTED);
        assert_int_equal(ci[1].out, SCR_COMMITTED);
        assert_int_equal(kp_ack_decode(cr[1].data, cr[1].len, &a), KP_R_OK);
        assert_true(!a.dup && a.seq == 5 && a.stored == 2 && a.n_rej == 0);
        kp_ack_fini(&a);
        assert_int_equal(q_ll("SELECT count(*) FROM observation WHERE adapter = 'adg'"), 7);
        assert_int_equal(q_ll("SELECT count(*) FROM batch WHERE adapter = 'adg'"), 5); /* + 9 */
        c = db_cell("2026", "U1", "direct_a");
        assert_true(c.found && c.n_obs == 1);
        assert_near(c.value, 90);
        /* beside g2 (at SENT_MS), g5 is the later (SENT_MS + 456: the first of its batch) */
        c = db_cell("2026", "U2", "direct_a");
        assert_true(c.found && c.n_obs == 2);
        assert_near(c.value, 55);
        /* g3 and g7 at the same at and src: the greater ref wins */
        c = db_cell("2026", "U3", "eff_b");
        assert_true(c.found && c.n_obs == 2);
        assert_near(c.value, 8);
        assert_engine_equals_db(s);
        for (size_t k = 0; k < 2; k++) {
            kp_buf_fini(&cp[k]);
            kp_buf_fini(&cr[k]);
        }
    }

    /* The whole group again, as an adapter retransmitting after a lost ack: all dup, no row. */
    scr_process_group(s, it, 3);
    for (size_t k = 0; k < 3; k++)
        assert_int_equal(it[k].out, SCR_DUP);
    assert_int_equal(q_ll("SELECT count(*) FROM observation WHERE adapter = 'adg'"), 7);
    assert_engine_equals_db(s);
    stop_and_close(&loop, &s);
    for (size_t k = 0; k < 4; k++) {
        kp_buf_fini(&pay[k]);
        kp_buf_fini(&rep[k]);
    }
}

/* A transaction that fails at COMMIT with the connection alive (a deferred trigger raises) is
 * rolled back in the engine and in the scorer's copy of the score rows: the next batch rewrites
 * the same (unit, period) rows with the committed values and updated_at of the cells it does not
 * change, and without the cell the failed batch had created. */
static void test_failed_commit(void **state)
{
    (void)state;
    struct scr_config cfg = make_config("tcp://127.0.0.1:1");
    uv_loop_t loop;
    struct scr *s = start_ready(&loop, &cfg);
    struct kp_buf payload = {0}, reply = {0};

    static const struct ob B1[] = {{"U2", "direct_a", "2022", 70, "fc1", 0},
                                   {"U2", "eff_b", "2022", 8, "fc2", 0}};
    encode_batch(&payload, "adf", 1, B1, 2);
    assert_int_equal(process(s, "adf", &payload, &reply), SCR_COMMITTED);
    const char *upd_sql = "SELECT updated_at::text FROM kp_indicator_score WHERE scheme = $1 "
                          "AND period = '2022' AND unit = $2 AND indicator = $3";
    char *u0 = q_str(upd_sql, SCHEME, "U2", "eff_b");
    assert_string_not_equal(u0, "<none>");
    /* the cells a transaction changes carry its now(), as its batch row does */
    char *t0 = q_str("SELECT received_at::text FROM batch WHERE adapter = 'adf' AND seq = 1", NULL,
                     NULL, NULL);
    assert_string_equal(u0, t0);
    free(t0);

    /* A cell statement that fails among others (the group's score statements go in one
     * pipeline, COMMIT after them): one row a statement, the second row refused. The failure
     * surfaces when their results are collected, the rest (COMMIT too) is skipped; the group
     * is rolled back and nacked, the connection stays. Twice: part rows written whole (no
     * log), then log rows (U2's second; U3's and U1's first). */
    static const struct ob B2c[] = {{"U2", "eff_b", "2022", 9, "fc2", 1},
                                    {"U3", "eff_b", "2022", 10, "fc4", 0},
                                    {"U1", "eff_b", "2022", 11, "fc6", 0}};
    struct kp_nack n;
    static const char *const tables[2] = {"indicator_cells", "indicator_cell_log"};
    size_t rows_before = scr__write_rows, log_before = scr__cells_log_max;
    for (int t = 0; t < 2; t++) {
        char sql[1024];
        snprintf(sql, sizeof sql,
                 "CREATE FUNCTION kp_test_cells() RETURNS trigger "
                 "LANGUAGE plpgsql AS $$ DECLARE n int := coalesce(nullif("
                 "current_setting('kp.test_rows', true), ''), '0')::int + 1; "
                 "BEGIN PERFORM set_config('kp.test_rows', n::text, true); "
                 "IF n = 2 THEN RAISE EXCEPTION 'kp test: a cell row fails'; "
                 "END IF; RETURN NEW; END $$;"
                 "CREATE TRIGGER kp_test_cells BEFORE INSERT ON %s "
                 "FOR EACH ROW EXECUTE FUNCTION kp_test_cells();",
                 tables[t]);
        assert_int_equal(kp_pg_exec_script(g_pg, sql), 0);
        scr__write_rows = 1;
        scr__cells_log_max = t == 0 ? 0 : 16;
        encode_batch(&payload, "adf", 2, B2c, 3);
        assert_int_equal(process(s, "adf", &payload, &reply), SCR_NACKED);
        scr__write_rows = rows_before;
        scr__cells_log_max = log_before;
        decode_nack(reply.data, reply.len, &n);
        assert_int_equal(n.code, KP_R_scorer_unavailable);
        assert_true(n.retry);
        assert_true(scr_ready(s));
        snprintf(sql, sizeof sql,
                 "DROP TRIGGER kp_test_cells ON %s; DROP FUNCTION kp_test_cells();", tables[t]);
        assert_int_equal(kp_pg_exec_script(g_pg, sql), 0);
        assert_int_equal(q_ll("SELECT count(*) FROM observation WHERE adapter = 'adf'"), 2);
        assert_false(db_cell("2022", "U3", "eff_b").found);
        assert_engine_equals_db(s);
    }

    assert_int_equal(
        kp_pg_exec_script(g_pg, "CREATE FUNCTION kp_test_fail() RETURNS trigger LANGUAGE plpgsql "
                                "AS $$ BEGIN IF NEW.adapter = 'adf' AND NEW.seq = 2 THEN "
                                "RAISE EXCEPTION 'kp test: the commit fails'; END IF; "
                                "RETURN NULL; END $$;"
                                "CREATE CONSTRAINT TRIGGER kp_test_fail AFTER INSERT ON batch "
                                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                                "EXECUTE FUNCTION kp_test_fail();"),
        0);
    static const struct ob B2[] = {{"U2", "eff_b", "2022", 9, "fc2", 1},
                                   {"U2", "direct_a", "2022", 75, "fc1", 1},
                                   {"U3", "eff_b", "2022", 10, "fc4", 0}}; /* a new row */
    encode_batch(&payload, "adf", 2, B2, 3);
    assert_int_equal(process(s, "adf", &payload, &reply), SCR_NACKED);
    decode_nack(reply.data, reply.len, &n);
    assert_int_equal(n.code, KP_R_scorer_unavailable);
    assert_true(n.retry);
    assert_true(scr_ready(s)); /* the connection stayed */
    assert_int_equal(kp_pg_exec_script(g_pg, "DROP TRIGGER kp_test_fail ON batch;"
                                             "DROP FUNCTION kp_test_fail();"),
                     0);

    /* The next batch changes direct_a of the same two rows only. */
    static const struct ob B3[] = {{"U2", "direct_a", "2022", 60, "fc1", 2},
                                   {"U3", "direct_a", "2022", 50, "fc5", 0}};
    encode_batch(&payload, "adf", 3, B3, 2);
    assert_int_equal(process(s, "adf", &payload, &reply), SCR_COMMITTED);
    struct cell_row c = db_cell("2022", "U2", "eff_b");
    assert_true(c.found && c.n_obs == 1);
    assert_near(c.value, 8);
    assert_near(c.score, eff(8));
    char *u1 = q_str(upd_sql, SCHEME, "U2", "eff_b");
    assert_string_equal(u0, u1); /* rewritten, but not changed */
    c = db_cell("2022", "U2", "direct_a");
    assert_true(c.found && c.n_obs == 1);
    assert_near(c.value, 60);
    assert_false(db_cell("2022", "U3", "eff_b").found);
    c = db_cell("2022", "U3", "direct_a");
    assert_true(c.found && c.n_obs == 1);
    assert_near(c.value, 50);
    assert_int_equal(q_ll("SELECT count(*) FROM observation WHERE adapter = 'adf'"), 4);
    assert_engine_equals_db(s);
    free(u0);
    free(u1);
    stop_and_close(&loop, &s);
    kp_buf_fini(&payload);
    kp_buf_fini(&reply);
}

/* Each cell holds its updated_at as an index into a table of timestamps (scr_cells.c): one
 * entry per transaction that changed cells, and a collection keeps only those cells still hold,
 * each once. Here it runs whenever the table has doubled: twice as many batches as the scheme
 * has distinct updated_at values each change direct_a of U2; the table stays within twice those
 * values, eff_b keeps its own transaction's updated_at through every rewrite of its part, and a
 * new scorer reads back exactly one entry per distinct value. */
static void test_updated_at_table(void **state)
{
    (void)state;
    size_t times_min = scr__cells_times_min;
    scr__cells_times_min = 2;
    struct scr_config cfg = make_config("tcp://127.0.0.1:1");
    uv_loop_t loop;
    struct scr *s = start_ready(&loop, &cfg);
    struct kp_buf payload = {0}, reply = {0};
    static const struct ob B1[] = {{"U2", "eff_b", "2020", 8, "ut2", 0}};
    encode_batch(&payload, "adt", 1, B1, 1);
    assert_int_equal(process(s, "adt", &payload, &reply), SCR_COMMITTED);
    const char *upd_sql = "SELECT updated_at::text FROM kp_indicator_score WHERE scheme = $1 "
                          "AND period = '2020' AND unit = $2 AND indicator = $3";
    const char *distinct_sql = "SELECT count(DISTINCT updated_at) FROM kp_indicator_score "
                               "WHERE scheme = 'kp-test'";
    char *u0 = q_str(upd_sql, SCHEME, "U2", "eff_b");
    assert_string_not_equal(u0, "<none>");
    long long d0 = q_ll(distinct_sql);
    assert_true(d0 > 0);
    size_t most = 2 * (size_t)(d0 + 1) + 1; /* a new transaction's entry on top of them */
    uint64_t seq = 2;
    for (long long i = 0; i < 2 * d0 + 8; i++, seq++) {
        const struct ob b = {"U2", "direct_a", "2020", 50 + (double)i, "ut1", (uint64_t)i};
        encode_batch(&payload, "adt", seq, &b, 1);
        assert_int_equal(process(s, "adt", &payload, &reply), SCR_COMMITTED);
        assert_in_range(scr__cells_n_times(s->schemes[0].cells), 1, most);
    }
    char *u1 = q_str(upd_sql, SCHEME, "U2", "eff_b");
    assert_string_equal(u0, u1); /* rewritten with its part every time, never changed */
    char *a1 = q_str(upd_sql, SCHEME, "U2", "direct_a");
    char last[24];
    snprintf(last, sizeof last, "%" PRIu64, seq - 1);
    char *t1 = q_str("SELECT received_at::text FROM batch WHERE adapter = 'adt' AND seq = $1", last,
                     NULL, NULL);
    assert_string_equal(a1, t1);
    assert_engine_equals_db(s);
    stop_and_close(&loop, &s);

    s = start_ready(&loop, &cfg); /* the copy rebuilt from the database */
    assert_int_equal(scr__cells_n_times(s->schemes[0].cells), (size_t)q_ll(distinct_sql));
    char *u2 = q_str(upd_sql, SCHEME, "U2", "eff_b");
    assert_string_equal(u0, u2);
    stop_and_close(&loop, &s);
    scr__cells_times_min = times_min;
    free(u0);
    free(u1);
    free(u2);
    free(a1);
    free(t1);
    kp_buf_fini(&payload);
    kp_buf_fini(&reply);
}

/* The prepared statement of the scorer's own connection whose text contains `verb`
 * indicator_cells (exactly one): returns its custom plans; *runs: all its executions. */
static long long scorer_plans(struct scr *s, const char *verb, long long *runs)
{
    char pat[64];
    snprintf(pat, sizeof pat, "%%%s indicator_cells%%", verb);
    const char *p[1] = {pat};
    struct kp_pg_res *r = NULL;
    assert_int_equal(kp_pg_exec(s->pg,
                                "SELECT custom_plans, generic_plans + custom_plans "
                                "FROM pg_prepared_statements WHERE statement LIKE $1",
                                1, p, &r),
                     0);
    assert_int_equal(kp_pg_res_ntuples(r), 1);
    long long custom = strtoll(kp_pg_res_value(r, 0, 0), NULL, 10);
    *runs = strtoll(kp_pg_res_value(r, 0, 1), NULL, 10);
    kp_pg_res_free(&r);
    return custom;
}

/* The cell rows' upsert is planned once per session (docs/BENCHMARKS.md round 14): after
 * PostgreSQL's five custom plans, every further execution takes the generic plan. The statement
 * that could also delete parts was planned anew at every execution once it carried many parts
 * (its custom plans, with the DELETE's empty arrays, looked cheaper than the generic one, whose
 * ten index probes per DELETE cost more in a table of the bench's 8,000 part rows). Here such a
 * table (8,000 rows of another scheme, analyzed), then 8 batches that each rewrite 120 parts
 * (3 units x 40 years) in one statement; the check runs on the scorer's own connection, where
 * the statements are prepared. Then a part that loses its last cell. Last in the suite: its
 * scores stay. */
static void test_cell_write_plan(void **state)
{
    (void)state;
    size_t rows_before = scr__write_rows, log_before = scr__cells_log_max;
    scr__write_rows = 128;
    scr__cells_log_max = 0; /* every write whole */
    q_do("INSERT INTO indicator_cells (scheme, period, unit, base, layout, value, score, n_obs, "
         "updated_us) SELECT 'kp-plan', p::text, 'U' || u, b * 64, 1, '{1}', '{1}', '{1}', '{1}' "
         "FROM generate_series(1, 19) p, generate_series(1, 70) u, generate_series(0, 5) b");
    q_do("ANALYZE indicator_cells");
    struct scr_config cfg = make_config("tcp://127.0.0.1:1");
    uv_loop_t loop;
    struct scr *s = start_ready(&loop, &cfg);
    struct kp_buf payload = {0}, reply = {0};
    enum { N = 120 };
    static char per[N][8], ref[N][16];
    static const char *const units[3] = {"U1", "U2", "U3"};
    struct ob b[N];
    long long runs = 0;
    for (uint64_t seq = 1; seq <= 8; seq++) {
        for (int k = 0; k < N; k++) {
            snprintf(per[k], sizeof per[k], "%d", 1990 + k / 3);
            snprintf(ref[k], sizeof ref[k], "wp%d", k);
            b[k] =
                (struct ob){units[k % 3], "direct_a", per[k], (double)(k % 50 + seq), ref[k], seq};
        }
        encode_batch(&payload, "adw", seq, b, N);
        assert_int_equal(process(s, "adw", &payload, &reply), SCR_COMMITTED);
    }
    /* one row: no part vanished, the upsert alone ran */
    long long custom = scorer_plans(s, "INSERT INTO", &runs);
    assert_true(custom <= 5);
    assert_true(runs >= 8); /* a statement per batch at least */

    /* A part that loses its last cell is deleted, through the other statement: wp0, the one
     * record of U1's 1990, moves to 2035. */
    const struct ob mv = {"U1", "direct_a", "2035", 7, "wp0", 9};
    encode_batch(&payload, "adw", 9, &mv, 1);
    assert_int_equal(process(s, "adw", &payload, &reply), SCR_COMMITTED);
    assert_int_equal(q_ll("SELECT count(*) FROM indicator_cells WHERE scheme = 'kp-test' "
                          "AND period = '1990' AND unit = 'U1'"),
                     0);
    assert_cell_in("2035", "U1", "direct_a", 7, 7, 1);
    (void)scorer_plans(s, "DELETE FROM", &runs);
    assert_int_equal(runs, 1);
    assert_cell_in("2029", "U3", "direct_a", 119 % 50 + 8, 119 % 50 + 8, 1);
    assert_engine_equals_db(s);
    stop_and_close(&loop, &s);
    q_do("DELETE FROM indicator_cells WHERE scheme = 'kp-plan'");
    scr__write_rows = rows_before;
    scr__cells_log_max = log_before;
    kp_buf_fini(&payload);
    kp_buf_fini(&reply);
}

/* The log of changed cells (migration 007). With scr__cells_log_max 1, a (unit, period)'s
 * writes alternate: a log row with the cells changed, then a fold (its parts whole, its log
 * rows deleted). The view shows the latest of each cell; a restart keeps a log that equals the
 * engine and counts its rows (the next write folds), and repairs one that does not; a failed
 * transaction leaves the count as it was. U1 in 2031 (2032: where a record moves). */
/* Rows of U1 in `period` of kp-test in `table`. */
static long long u1_rows(const char *table, const char *period)
{
    char sql[160];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM %s WHERE scheme = $1 AND period = $2 "
             "AND unit = 'U1'",
             table);
    const char *p[2] = {SCHEME, period};
    struct kp_pg_res *r = q(sql, 2, p);
    long long v = strtoll(kp_pg_res_value(r, 0, 0), NULL, 10);
    kp_pg_res_free(&r);
    return v;
}

/* Log rows of `period` of kp-test with a cell of U1 (migration 009: a row per bucket). */
static long long log_rows(const char *period)
{
    const char *p[2] = {SCHEME, period};
    struct kp_pg_res *r = q("SELECT count(*) FROM indicator_cell_log WHERE scheme = $1 AND "
                            "period = $2 AND 'U1' = ANY(units)",
                            2, p);
    long long v = strtoll(kp_pg_res_value(r, 0, 0), NULL, 10);
    kp_pg_res_free(&r);
    return v;
}

static long long part_rows(const char *period)
{
    return u1_rows("indicator_cells", period);
}

static void send_one(struct scr *s, uint64_t seq, const struct ob *o, enum scr_outcome want)
{
    struct kp_buf payload = {0}, reply = {0};
    encode_batch(&payload, "adl", seq, o, 1);
    assert_int_equal(process(s, "adl", &payload, &reply), want);
    kp_buf_fini(&payload);
    kp_buf_fini(&reply);
}

/* Stops *s and starts it again on loop: the restart rewrites no score row (0 rows synced, the
 * read model unchanged, updated_at included). */
static void restart_writes_nothing(uv_loop_t *loop, const struct scr_config *cfg, struct scr **s)
{
    char *before = dump_scores();
    stop_and_close(loop, s);
    *s = start_ready(loop, cfg);
    struct scr_stats st;
    scr_get_stats(*s, &st);
    assert_true(st.replay_rows_synced == 0);
    char *after = dump_scores();
    assert_string_equal(before, after);
    free(before);
    free(after);
}

/* send_one for a batch whose transaction fails at COMMIT (a deferred trigger refuses its batch
 * row): nacked, nothing of it stays. */
static void send_failing_commit(struct scr *s, uint64_t seq, const struct ob *o)
{
    char sql[768];
    snprintf(sql, sizeof sql,
             "CREATE FUNCTION kp_test_fail() RETURNS trigger LANGUAGE plpgsql "
             "AS $$ BEGIN IF NEW.adapter = 'adl' AND NEW.seq = %" PRIu64 " THEN "
             "RAISE EXCEPTION 'kp test: the commit fails'; END IF; RETURN NULL; END $$;"
             "CREATE CONSTRAINT TRIGGER kp_test_fail AFTER INSERT ON batch "
             "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION kp_test_fail();",
             seq);
    assert_int_equal(kp_pg_exec_script(g_pg, sql), 0);
    send_one(s, seq, o, SCR_NACKED);
    assert_int_equal(kp_pg_exec_script(g_pg, "DROP TRIGGER kp_test_fail ON batch;"
                                             "DROP FUNCTION kp_test_fail();"),
                     0);
}

static void test_cell_log(void **state)
{
    (void)state;
    size_t log_before = scr__cells_log_max;
    scr__cells_log_max = 1;
    struct scr_config cfg = make_config("tcp://127.0.0.1:1");
    uv_loop_t loop;
    struct scr *s = start_ready(&loop, &cfg);
    struct scr_stats st;

    /* a log row, then a fold that keeps the first cell's updated_at */
    const struct ob b1 = {"U1", "direct_a", "2031", 70, "lg1", 0};
    send_one(s, 1, &b1, SCR_COMMITTED);
    assert_int_equal(log_rows("2031"), 1);
    assert_int_equal(part_rows("2031"), 0);
    assert_cell_in("2031", "U1", "direct_a", 70, 70, 1);
    const char *upd_sql = "SELECT updated_at::text FROM kp_indicator_score WHERE scheme = $1 "
                          "AND period = '2031' AND unit = 'U1' AND indicator = $2";
    char *u1 = q_str(upd_sql, SCHEME, "direct_a", NULL);
    char *t1 = q_str("SELECT received_at::text FROM batch WHERE adapter = 'adl' AND seq = 1", NULL,
                     NULL, NULL);
    assert_string_equal(u1, t1);
    const struct ob b2 = {"U1", "eff_b", "2031", 9, "lg2", 0};
    send_one(s, 2, &b2, SCR_COMMITTED);
    assert_int_equal(log_rows("2031"), 0);
    assert_int_equal(part_rows("2031"), 1);
    assert_cell_in("2031", "U1", "eff_b", 9, eff(9), 1);
    char *u1f = q_str(upd_sql, SCHEME, "direct_a", NULL);
    assert_string_equal(u1, u1f);
    assert_engine_equals_db(s);

    /* the log wins over the part row */
    const struct ob b3 = {"U1", "direct_a", "2031", 80, "lg1", 1};
    send_one(s, 3, &b3, SCR_COMMITTED);
    assert_int_equal(log_rows("2031"), 1);
    assert_cell_in("2031", "U1", "direct_a", 80, 80, 1);
    assert_engine_equals_db(s);

    /* A transaction that would fold fails at COMMIT: the log row count stays 1, so the next
     * write folds. */
    const struct ob b4 = {"U1", "eff_b", "2031", 10, "lg2", 1};
    send_failing_commit(s, 4, &b4);
    assert_int_equal(log_rows("2031"), 1);
    assert_engine_equals_db(s);
    const struct ob b4b = {"U1", "eff_b", "2031", 10, "lg2", 2};
    send_one(s, 5, &b4b, SCR_COMMITTED);
    assert_int_equal(log_rows("2031"), 0);
    assert_cell_in("2031", "U1", "direct_a", 80, 80, 1);
    assert_cell_in("2031", "U1", "eff_b", 10, eff(10), 1);

    /* a log row, then a restart: kept, with its count (the next write folds) */
    const struct ob b5 = {"U1", "direct_a", "2031", 85, "lg1", 2};
    send_one(s, 6, &b5, SCR_COMMITTED);
    assert_int_equal(log_rows("2031"), 1);
    restart_writes_nothing(&loop, &cfg, &s);
    assert_int_equal(log_rows("2031"), 1);
    const struct ob b6 = {"U1", "eff_b", "2031", 11, "lg2", 3};
    send_one(s, 7, &b6, SCR_COMMITTED);
    assert_int_equal(log_rows("2031"), 0);
    assert_cell_in("2031", "U1", "direct_a", 85, 85, 1);
    assert_cell_in("2031", "U1", "eff_b", 11, eff(11), 1);

    /* A cell deleted through the log (lg1 moves to 2032): gone from the view, and still gone
     * after a restart, which keeps that log row. */
    const struct ob b7 = {"U1", "direct_a", "2032", 5, "lg1", 3};
    send_one(s, 8, &b7, SCR_COMMITTED);
    assert_int_equal(log_rows("2031"), 1);
    assert_false(db_cell("2031", "U1", "direct_a").found);
    assert_cell_in("2032", "U1", "direct_a", 5, 5, 1);
    assert_engine_equals_db(s);
    stop_and_close(&loop, &s);
    s = start_ready(&loop, &cfg);
    scr_get_stats(s, &st);
    assert_true(st.replay_rows_synced == 0);
    assert_false(db_cell("2031", "U1", "direct_a").found);
    assert_int_equal(log_rows("2031"), 1);
    stop_and_close(&loop, &s);

    /* That log row lost behind the scorer's back: the part row's direct_a shows again, and
     * the next start rewrites the part. */
    q_do("DELETE FROM indicator_cell_log WHERE scheme = 'kp-test' AND period = '2031'");
    assert_true(db_cell("2031", "U1", "direct_a").found);
    s = start_ready(&loop, &cfg);
    scr_get_stats(s, &st);
    assert_true(st.replay_rows_synced == 1);
    assert_false(db_cell("2031", "U1", "direct_a").found);
    assert_engine_equals_db(s);

    /* A log row changed behind the scorer's back: the next start folds 2032 (the part written,
     * the log row deleted). */
    const struct ob b8 = {"U1", "eff_b", "2032", 7, "lg3", 0};
    send_one(s, 9, &b8, SCR_COMMITTED); /* 2032's second write: a fold */
    assert_int_equal(log_rows("2032"), 0);
    assert_int_equal(part_rows("2032"), 1);
    const struct ob b9 = {"U1", "eff_b", "2032", 8, "lg3", 1};
    send_one(s, 10, &b9, SCR_COMMITTED);
    assert_int_equal(log_rows("2032"), 1);
    stop_and_close(&loop, &s);
    q_do("UPDATE indicator_cell_log SET score = array_fill(0::float8, ARRAY[cardinality(cell)]) "
         "WHERE scheme = 'kp-test' AND period = '2032'");
    assert_cell_in("2032", "U1", "eff_b", 8, 0, 1);
    s = start_ready(&loop, &cfg);
    scr_get_stats(s, &st);
    assert_true(st.replay_rows_synced == 2); /* the part written, the log row deleted */
    assert_int_equal(log_rows("2032"), 0);
    assert_int_equal(part_rows("2032"), 1);
    assert_cell_in("2032", "U1", "direct_a", 5, 5, 1);
    assert_cell_in("2032", "U1", "eff_b", 8, eff(8), 1);
    assert_engine_equals_db(s);
    stop_and_close(&loop, &s);
    free(u1);
    free(u1f);
    free(t1);
    scr__cells_log_max = log_before;
}

/* Log rows by bucket (migration 009; scr__cells_log_units 2 here: U1 and U2 share a bucket,
 * U3 has its own). A transaction writes one log row per (period, bucket) it changed, and a
 * bucket folds whole: the logged parts of all its units, touched by the folding transaction or
 * not. 2018, with a fold at a bucket's second write (scr__cells_log_max 1). */
static long long bucket_rows(const char *period, const char *bucket)
{
    const char *p[3] = {SCHEME, period, bucket};
    struct kp_pg_res *r = q("SELECT count(*) FROM indicator_cell_log WHERE scheme = $1 AND "
                            "period = $2 AND bucket = $3::int",
                            3, p);
    long long v = strtoll(kp_pg_res_value(r, 0, 0), NULL, 10);
    kp_pg_res_free(&r);
    return v;
}

static void test_cell_log_buckets(void **state)
{
    (void)state;
    size_t log_before = scr__cells_log_max;
    scr__cells_log_max = 1;
    struct scr_config cfg = make_config("tcp://127.0.0.1:1");
    uv_loop_t loop;
    struct scr *s = start_ready(&loop, &cfg);

    /* one row for U1 and U2, one for U3, each cell under its own unit */
    static const struct ob A[] = {{"U1", "direct_a", "2018", 70, "bk1", 0},
                                  {"U3", "direct_a", "2018", 40, "bk3", 0},
                                  {"U2", "direct_a", "2018", 50, "bk2", 0}};
    struct kp_buf payload = {0}, reply = {0};
    encode_batch(&payload, "adk", 1, A, 3);
    assert_int_equal(process(s, "adk", &payload, &reply), SCR_COMMITTED);
    assert_int_equal(bucket_rows("2018", "0"), 1);
    assert_int_equal(bucket_rows("2018", "1"), 1);
    assert_int_equal(q_ll("SELECT count(*) FROM indicator_cell_log WHERE scheme = 'kp-test' AND "
                          "period = '2018' AND bucket = 0 AND units = '{U1,U2}' AND u = '{1,2}'"),
                     1);
    assert_int_equal(part_rows("2018"), 0);
    assert_cell_in("2018", "U1", "direct_a", 70, 70, 1);
    assert_cell_in("2018", "U2", "direct_a", 50, 50, 1);
    assert_cell_in("2018", "U3", "direct_a", 40, 40, 1);
    assert_engine_equals_db(s);

    /* U1's next write folds bucket 0: U2's part is written too, though this batch has no cell
     * of U2's; U3's log row stays */
    const struct ob b = {"U1", "eff_b", "2018", 9, "bk4", 0};
    send_one(s, 101, &b, SCR_COMMITTED);
    assert_int_equal(bucket_rows("2018", "0"), 0);
    assert_int_equal(bucket_rows("2018", "1"), 1);
    assert_int_equal(q_ll("SELECT count(*) FROM indicator_cells WHERE scheme = 'kp-test' AND "
                          "period = '2018' AND unit IN ('U1', 'U2')"),
                     2);
    assert_int_equal(q_ll("SELECT count(*) FROM indicator_cells WHERE scheme = 'kp-test' AND "
                          "period = '2018' AND unit = 'U3'"),
                     0);
    assert_cell_in("2018", "U1", "direct_a", 70, 70, 1);
    assert_cell_in("2018", "U1", "eff_b", 9, eff(9), 1);
    assert_cell_in("2018", "U2", "direct_a", 50, 50, 1);
    assert_cell_in("2018", "U3", "direct_a", 40, 40, 1);
    assert_engine_equals_db(s);

    /* A fold that fails at COMMIT (U2 logged, then U1's write): the log row stays and the next
     * write of the bucket folds it. */
    const struct ob c = {"U2", "eff_b", "2018", 8, "bk5", 0};
    send_one(s, 102, &c, SCR_COMMITTED);
    assert_int_equal(bucket_rows("2018", "0"), 1);
    const struct ob d = {"U1", "direct_a", "2018", 75, "bk1", 1};
    send_failing_commit(s, 103, &d);
    assert_int_equal(bucket_rows("2018", "0"), 1);
    assert_cell_in("2018", "U1", "direct_a", 70, 70, 1);
    assert_engine_equals_db(s);
    send_one(s, 104, &d, SCR_COMMITTED);
    assert_int_equal(bucket_rows("2018", "0"), 0);
    assert_cell_in("2018", "U1", "direct_a", 75, 75, 1);
    assert_cell_in("2018", "U2", "eff_b", 8, eff(8), 1);
    assert_engine_equals_db(s);

    /* A key's cells past scr__cells_log_row_cells go in further rows of the transaction: with
     * one cell a row, U1's two cells and U2's one are three rows; the next write folds them. */
    size_t row_cells_before = scr__cells_log_row_cells;
    scr__cells_log_row_cells = 1;
    static const struct ob F[] = {{"U1", "direct_a", "2017", 61, "bk6", 0},
                                  {"U2", "direct_a", "2017", 62, "bk7", 0},
                                  {"U1", "eff_b", "2017", 9, "bk8", 0}};
    encode_batch(&payload, "adk", 2, F, 3);
    assert_int_equal(process(s, "adk", &payload, &reply), SCR_COMMITTED);
    scr__cells_log_row_cells = row_cells_before;
    assert_int_equal(bucket_rows("2017", "0"), 3);
    assert_int_equal(q_ll("SELECT count(*) FROM indicator_cell_log WHERE scheme = 'kp-test' AND "
                          "period = '2017' AND cardinality(cell) = 1 AND cardinality(units) = 1"),
                     3);
    assert_cell_in("2017", "U1", "direct_a", 61, 61, 1);
    assert_cell_in("2017", "U2", "direct_a", 62, 62, 1);
    assert_cell_in("2017", "U1", "eff_b", 9, eff(9), 1);
    assert_engine_equals_db(s);
    const struct ob f2 = {"U2", "eff_b", "2017", 8, "bk9", 0};
    send_one(s, 105, &f2, SCR_COMMITTED);
    assert_int_equal(bucket_rows("2017", "0"), 0);
    assert_cell_in("2017", "U1", "direct_a", 61, 61, 1);
    assert_cell_in("2017", "U2", "eff_b", 8, eff(8), 1);
    assert_engine_equals_db(s);

    /* Log rows outside the scorer's buckets (migration 009 moves 007's rows to bucket -1; or a
     * scheme whose units moved): a start folds every logged key of the scheme, and the read
     * model does not move, updated_at included. */
    const struct ob e = {"U1", "eff_b", "2018", 10, "bk4", 1};
    send_one(s, 106, &e, SCR_COMMITTED);
    assert_int_equal(bucket_rows("2018", "0"), 1);
    stop_and_close(&loop, &s);
    q_do("UPDATE indicator_cell_log SET bucket = -1 WHERE scheme = 'kp-test' AND period = '2018' "
         "AND bucket = 0");
    char *before = dump_scores();
    s = start_ready(&loop, &cfg);
    struct scr_stats st;
    scr_get_stats(s, &st);
    assert_true(st.replay_rows_synced > 0);
    assert_int_equal(q_ll("SELECT count(*) FROM indicator_cell_log WHERE scheme = 'kp-test'"), 0);
    char *after = dump_scores();
    assert_string_equal(before, after);
    assert_cell_in("2018", "U1", "eff_b", 10, eff(10), 1);
    assert_engine_equals_db(s);
    restart_writes_nothing(&loop, &cfg, &s);

    /* A log row with a cell of a unit the scheme does not have (added behind the scorer's back,
     * as a scheme file that drops a unit leaves it): the view shows it; a start folds every
     * logged key, and the cell goes with the log. */
    const struct ob g = {"U2", "eff_b", "2018", 11, "bk5", 1};
    send_one(s, 107, &g, SCR_COMMITTED);
    assert_int_equal(bucket_rows("2018", "0"), 1);
    stop_and_close(&loop, &s);
    q_do("UPDATE indicator_cell_log SET units = units || '{UX}'::text[], "
         "u = u || cardinality(units) + 1, cell = cell || 0, value = value || 5::float8, "
         "score = score || 5::float8, n_obs = n_obs || 1 "
         "WHERE scheme = 'kp-test' AND period = '2018' AND bucket = 0");
    assert_cell_in("2018", "UX", "direct_a", 5, 5, 1);
    s = start_ready(&loop, &cfg);
    assert_int_equal(q_ll("SELECT count(*) FROM indicator_cell_log WHERE scheme = 'kp-test'"), 0);
    assert_false(db_cell("2018", "UX", "direct_a").found);
    assert_cell_in("2018", "U2", "eff_b", 11, eff(11), 1);
    assert_engine_equals_db(s);
    stop_and_close(&loop, &s);
    free(before);
    free(after);
    kp_buf_fini(&payload);
    kp_buf_fini(&reply);
    scr__cells_log_max = log_before;
}

/* A period's totals are one unit_scores row (migration 008), rewritten whole from the engine
 * when a total of the period changes. A unit whose entry did not change keeps its updated_at;
 * a period left without totals loses its row; a restart rewrites nothing. U1 and U2 share
 * group g1, U3 is alone in g2. Periods 2041-2043. */
static char *unit_upd(const char *period, const char *unit)
{
    return q_str("SELECT updated_at::text FROM kp_unit_score WHERE scheme = 'kp-test' AND "
                 "period = $1 AND unit = $2",
                 period, unit, NULL);
}

static char *batch_at(uint64_t seq)
{
    char t[24];
    snprintf(t, sizeof t, "%" PRIu64, seq);
    return q_str("SELECT received_at::text FROM batch WHERE adapter = 'adl' AND seq = $1", t, NULL,
                 NULL);
}

static void assert_unit_upd(const char *period, const char *unit, uint64_t seq)
{
    char *u = unit_upd(period, unit), *t = batch_at(seq);
    assert_string_equal(u, t);
    free(u);
    free(t);
}

static char *period_units(const char *period)
{
    return q_str("SELECT coalesce((SELECT array_to_string(unit, ',') FROM unit_scores WHERE "
                 "scheme = 'kp-test' AND period = $1), '-')",
                 period, NULL, NULL);
}

static void assert_period_units(const char *period, const char *units)
{
    char *v = period_units(period);
    assert_string_equal(v, units);
    free(v);
}

static void test_unit_score_rows(void **state)
{
    (void)state;
    struct scr_config cfg = make_config("tcp://127.0.0.1:1");
    uv_loop_t loop;
    struct scr *s = start_ready(&loop, &cfg);
    /* send_one's adapter, after test_cell_log's batches */
    const struct ob b1 = {"U1", "direct_a", "2041", 70, "us1", 0};
    send_one(s, 1001, &b1, SCR_COMMITTED);
    assert_period_units("2041", "U1");
    assert_total_in("2041", "U1", 70, 0.4, 1);
    assert_unit_upd("2041", "U1", 1001);

    /* U3 (g2): U1's entry does not change, nor its updated_at */
    const struct ob b2 = {"U3", "eff_b", "2041", 12, "us2", 0};
    send_one(s, 1002, &b2, SCR_COMMITTED);
    assert_period_units("2041", "U1,U3");
    assert_total_in("2041", "U3", 100, 0.6, 1);
    assert_unit_upd("2041", "U1", 1001);
    assert_unit_upd("2041", "U3", 1002);

    /* U2 passes U1 in g1: U1's rank changes (and its updated_at), U3's does not */
    const struct ob b3 = {"U2", "direct_a", "2041", 90, "us3", 0};
    send_one(s, 1003, &b3, SCR_COMMITTED);
    assert_period_units("2041", "U1,U2,U3");
    assert_total_in("2041", "U1", 70, 0.4, 2);
    assert_total_in("2041", "U2", 90, 0.4, 1);
    assert_unit_upd("2041", "U1", 1003);
    assert_unit_upd("2041", "U2", 1003);
    assert_unit_upd("2041", "U3", 1002);

    /* U3's record moves to 2042 (a revision), then on to 2043: 2041 keeps U1 and U2, and 2042
     * has no total left, so its row goes */
    const struct ob b4 = {"U3", "eff_b", "2042", 12, "us2", 1};
    send_one(s, 1004, &b4, SCR_COMMITTED);
    assert_period_units("2041", "U1,U2");
    assert_period_units("2042", "U3");
    assert_unit_upd("2041", "U1", 1003);
    const struct ob b5 = {"U3", "eff_b", "2043", 12, "us2", 2};
    send_one(s, 1005, &b5, SCR_COMMITTED);
    assert_period_units("2042", "-");
    assert_period_units("2043", "U3");
    assert_total_in("2043", "U3", 100, 0.6, 1);
    assert_int_equal(q_ll("SELECT count(*) FROM unit_scores WHERE scheme = 'kp-test' AND "
                          "period IN ('2041', '2042', '2043')"),
                     2);

    /* A transaction that changes U1 and U2 (U1 passes U2) fails at its commit: their entries
     * keep their times, also when the next transaction rewrites the row for U3 alone. */
    const struct ob b6 = {"U1", "direct_a", "2041", 95, "us1", 1};
    send_failing_commit(s, 1006, &b6);
    const struct ob b7 = {"U3", "eff_b", "2041", 12, "us4", 0};
    send_one(s, 1007, &b7, SCR_COMMITTED);
    assert_period_units("2041", "U1,U2,U3");
    assert_total_in("2041", "U1", 70, 0.4, 2);
    assert_unit_upd("2041", "U1", 1003);
    assert_unit_upd("2041", "U2", 1003);
    assert_unit_upd("2041", "U3", 1007);
    assert_engine_equals_db(s);

    /* a restart rewrites nothing, and knows the times: a change of U3 leaves U1's and U2's */
    restart_writes_nothing(&loop, &cfg, &s);
    const struct ob b8 = {"U3", "eff_b", "2041", 10, "us4", 1};
    send_one(s, 1008, &b8, SCR_COMMITTED);
    assert_total_in("2041", "U3", eff(10), 0.6, 1);
    assert_unit_upd("2041", "U1", 1003);
    assert_unit_upd("2041", "U2", 1003);
    assert_unit_upd("2041", "U3", 1008);
    assert_engine_equals_db(s);
    stop_and_close(&loop, &s);
}

/* Migration 006: the part rows leave half of every page free for their next versions. */
static void test_cells_fillfactor(void **state)
{
    (void)state;
    char *opt = q_str("SELECT array_to_string(reloptions, ',') FROM pg_class "
                      "WHERE oid = 'indicator_cells'::regclass",
                      NULL, NULL, NULL);
    assert_string_equal(opt, "fillfactor=50");
    free(opt);
}

/* Evicted event records (issue 9): the scorer keeps an event's record only until its batch
 * commits; a later revision reads it back from the observation table (score_engine_load). The
 * exact rates below would be wrong if it did not: the revised events would count twice. */
#define LEAF_RATE_C                                                                                   \
    "  - {code: rate_c, name: 整改率, weight: 60, method: direct, input: rate, periods: [year],\n" \
    "     min: 0, max: 1}\n"

static void test_evicted_records(void **state)
{
    (void)state;
    write_scheme(SCHEME_HEAD LEAF_DIRECT_A LEAF_RATE_C);
    struct scr_config cfg = make_config("tcp://127.0.0.1:1");
    uv_loop_t loop;
    struct scr *s = start_ready(&loop, &cfg);
    struct kp_buf payload = {0}, reply = {0};
    const struct score_engine *e = scr_engine(s, SCHEME);
    size_t resident0 = score_engine_n_resident(e), records0 = score_engine_n_records(e);

    static const struct ob B1[] = {
        {"U1", "rate_c", "2021", 1, "ev1", 0}, {"U1", "rate_c", "2021", 1, "ev2", 0},
        {"U1", "rate_c", "2021", 0, "ev3", 0}, {"U1", "rate_c", "2021", 1, "ev4", 0},
        {"U2", "rate_c", "2021", 0, "ev5", 0}, {"U2", "direct_a", "2021", 70, "dv1", 0}};
    encode_batch(&payload, "ade", 1, B1, 6);
    assert_int_equal(process(s, "ade", &payload, &reply), SCR_COMMITTED);
    assert_cell_in("2021", "U1", "rate_c", 75, 75, 4);
    assert_cell_in("2021", "U2", "rate_c", 0, 0, 1);
    /* the five events left memory; the value record stays */
    assert_int_equal(score_engine_n_resident(e), resident0 + 1);
    assert_int_equal(score_engine_n_records(e), records0 + 6);
    assert_true(kp_counter_get(s->m_loaded) == 0);

    /* ev3 revised to 1; ev5 moves to U1; ev1's revision 0 again (changes nothing, though its
     * value differs); ev6 is new */
    static const struct ob B2[] = {{"U1", "rate_c", "2021", 1, "ev3", 1},
                                   {"U1", "rate_c", "2021", 0, "ev5", 1},
                                   {"U1", "rate_c", "2021", 0, "ev1", 0},
                                   {"U2", "rate_c", "2021", 0, "ev6", 0}};
    encode_batch(&payload, "ade", 2, B2, 4);
    assert_int_equal(process(s, "ade", &payload, &reply), SCR_COMMITTED);
    assert_cell_in("2021", "U1", "rate_c", 80, 80, 5); /* 1 1 1 1 0 */
    assert_cell_in("2021", "U2", "rate_c", 0, 0, 1);   /* ev6 alone */
    /* ev3, ev5 and ev1 came back: one stored row each (this batch's rows are not read). The
     * group's COPY, ended for that read-back, met ev1's stored revision 0 first, and the group
     * ran again by INSERT ... ON CONFLICT, whose read-back read the three rows. */
    assert_true(kp_counter_get(s->m_loaded) == 3);
    assert_int_equal(score_engine_n_resident(e), resident0 + 1);
    assert_int_equal(score_engine_n_records(e), records0 + 7);
    assert_engine_equals_db(s);
    stop_and_close(&loop, &s);

    /* A replay in units of work of two rows: the revisions in later units read the records
     * that earlier units evicted back from the rows before them. */
    int chunk = scr__replay_chunk;
    scr__replay_chunk = 2;
    s = start_ready(&loop, &cfg);
    scr__replay_chunk = chunk;
    e = scr_engine(s, SCHEME);
    assert_true(kp_counter_get(s->m_loaded) == 2); /* ev3 and ev5 rev 0, before their rev 1 */
    assert_engine_equals_db(s);
    assert_cell_in("2021", "U1", "rate_c", 80, 80, 5);
    assert_int_equal(score_engine_n_records(e), records0 + 7);

    /* and after the replay, a revision of a replayed event */
    static const struct ob B3[] = {{"U1", "rate_c", "2021", 0, "ev2", 1}};
    encode_batch(&payload, "ade", 3, B3, 1);
    assert_int_equal(process(s, "ade", &payload, &reply), SCR_COMMITTED);
    assert_cell_in("2021", "U1", "rate_c", 60, 60, 5); /* 1 0 1 1 0 */
    assert_engine_equals_db(s);
    stop_and_close(&loop, &s);
    write_scheme(SCHEME_YAML);
    kp_buf_fini(&payload);
    kp_buf_fini(&reply);
}

/* Commits one batch of adapter adv whose observation k is at SENT_MS + at[k]. */
static void commit_at(struct scr *s, uint64_t seq, const struct ob *obs, const int64_t *at,
                      size_t n)
{
    struct kp_buf payload = {0}, reply = {0};
    g_at = at;
    encode_batch(&payload, "adv", seq, obs, n);
    g_at = NULL;
    assert_int_equal(process(s, "adv", &payload, &reply), SCR_COMMITTED);
    kp_buf_fini(&payload);
    kp_buf_fini(&reply);
}

/* Evicted value records (issue 9): a value cell keeps only its latest record in memory once
 * its batch commits. When the latest leaves (revised to an earlier `at`, or moved to another
 * cell), the scorer reads the cell's other records back (scr__db_load_cell) and the next latest
 * takes over; without it the cell would lose them. */
static void test_evicted_values(void **state)
{
    (void)state;
    write_scheme(SCHEME_YAML);
    struct scr_config cfg = make_config("tcp://127.0.0.1:1");
    uv_loop_t loop;
    struct scr *s = start_ready(&loop, &cfg);
    const struct score_engine *e = scr_engine(s, SCHEME);
    size_t resident0 = score_engine_n_resident(e), records0 = score_engine_n_records(e);

    static const struct ob B1[] = {{"U1", "direct_a", "2019", 10, "v1", 0},
                                   {"U1", "direct_a", "2019", 30, "v2", 0},
                                   {"U1", "direct_a", "2019", 20, "v3", 0}};
    static const int64_t AT1[] = {100, 300, 200};
    commit_at(s, 1, B1, AT1, 3);
    assert_cell_in("2019", "U1", "direct_a", 30, 30, 3);
    /* v2 is the latest: v1 and v3 left memory */
    assert_int_equal(score_engine_n_resident(e), resident0 + 1);
    assert_int_equal(score_engine_n_records(e), records0 + 3);
    assert_true(kp_counter_get(s->m_loaded) == 0);

    /* v2 revised to an earlier `at`: v3 (at 200) is the latest now */
    static const struct ob B2[] = {{"U1", "direct_a", "2019", 35, "v2", 1}};
    static const int64_t AT2[] = {50};
    commit_at(s, 2, B2, AT2, 1);
    assert_cell_in("2019", "U1", "direct_a", 20, 20, 3);
    assert_true(kp_counter_get(s->m_loaded) == 3); /* the cell's three rows (v2's own: no-op) */
    assert_int_equal(score_engine_n_resident(e), resident0 + 1);

    /* v3 moves to U2: v1 (at 100) is U1's latest, v2 (at 50) behind it */
    static const struct ob B3[] = {{"U2", "direct_a", "2019", 60, "v3", 1}};
    static const int64_t AT3[] = {500};
    commit_at(s, 3, B3, AT3, 1);
    assert_cell_in("2019", "U1", "direct_a", 10, 10, 2);
    assert_cell_in("2019", "U2", "direct_a", 60, 60, 1);
    assert_true(kp_counter_get(s->m_loaded) == 3 + 4); /* v1, v2 rev 1 and 0, v3 */
    assert_int_equal(score_engine_n_resident(e), resident0 + 2);
    assert_int_equal(score_engine_n_records(e), records0 + 3);

    /* a revision of an evicted value record (v2): read back by its key, it is the latest */
    static const struct ob B4[] = {{"U1", "direct_a", "2019", 45, "v2", 2}};
    static const int64_t AT4[] = {400};
    commit_at(s, 4, B4, AT4, 1);
    assert_cell_in("2019", "U1", "direct_a", 45, 45, 2);
    assert_true(kp_counter_get(s->m_loaded) == 7 + 2); /* v2 rev 1 and 0 */
    assert_int_equal(score_engine_n_resident(e), resident0 + 2);
    assert_engine_equals_db(s);
    stop_and_close(&loop, &s);

    /* The replay in units of work of two rows reads the cells back from the rows before each. */
    int chunk = scr__replay_chunk;
    scr__replay_chunk = 2;
    s = start_ready(&loop, &cfg);
    scr__replay_chunk = chunk;
    e = scr_engine(s, SCHEME);
    assert_engine_equals_db(s);
    assert_cell_in("2019", "U1", "direct_a", 45, 45, 2);
    assert_cell_in("2019", "U2", "direct_a", 60, 60, 1);
    assert_int_equal(score_engine_n_records(e), records0 + 3);
    stop_and_close(&loop, &s);
}

/* Rows an EXPLAIN ANALYZE of sql (with parameters p) read from observation: each scan node's
 * rows times loops, plus the rows its filters removed. */
static long long observation_rows_read(const char *sql, int np, const char *const *p)
{
    struct kp_buf q_sql = {0};
    kp_buf_printf(&q_sql, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) %s", sql);
    struct kp_pg_res *r = q(kp_buf_cstr(&q_sql), np, p);
    long long read = 0;
    bool in_observation = false;
    for (int i = 0; i < kp_pg_res_ntuples(r); i++) {
        const char *line = kp_pg_res_value(r, i, 0);
        long long rows = 0, loops = 0;
        const char *a = strstr(line, "(actual rows=");
        if (a) { /* a new plan node: a scan of observation, or something else */
            in_observation = strstr(line, " on observation ") != NULL;
            if (in_observation && sscanf(a, "(actual rows=%lld loops=%lld)", &rows, &loops) == 2)
                read += rows * loops;
        }
        const char *f = strstr(line, "Rows Removed by Filter: ");
        if (f && in_observation)
            read += strtoll(f + strlen("Rows Removed by Filter: "), NULL, 10);
    }
    kp_pg_res_free(&r);
    kp_buf_fini(&q_sql);
    return read;
}

/* The statements that read observations back (cold records, a value cell, the replay) read the
 * rows they return, not the scheme's, when the statistics know nothing of the scheme: here
 * observation is analyzed while it holds only another scheme's rows, then 'kp-stale' gets
 * 3,000 records (two of them with a second revision, two in a cell of their own). Given the
 * scheme as a value, the planner estimated one row for it and read all 3,000 through an index
 * on the scheme for each of the three (checked). */
static void test_read_back_plans(void **state)
{
    (void)state;
    q_do("INSERT INTO observation (scheme, src, ref, rev, unit, indicator, period, value, w, "
         "observed_at, adapter, seq) SELECT 'kp-other', 's', 'o' || g, 1, 'U1', 'I', '2020', 1, "
         "1, now(), 'ad-plan', g FROM generate_series(1, 2000) g");
    q_do("ANALYZE observation");
    long long before = q_ll("SELECT max(id) FROM observation");
    q_do("INSERT INTO observation (scheme, src, ref, rev, unit, indicator, period, value, w, "
         "observed_at, adapter, seq) SELECT 'kp-stale', 's', 'r' || g, 1, 'U' || (g % 7), 'I', "
         "'2020', g, 1, now(), 'ad-plan', g FROM generate_series(1, 2998) g");
    q_do("INSERT INTO observation (scheme, src, ref, rev, unit, indicator, period, value, w, "
         "observed_at, adapter, seq) VALUES "
         "('kp-stale', 's', 'r5', 2, 'U5', 'I', '2020', 50, 1, now(), 'ad-plan', 3001), "
         "('kp-stale', 's', 'r7', 2, 'U0', 'I', '2020', 70, 1, now(), 'ad-plan', 3002), "
         "('kp-stale', 's', 'c1', 1, 'UC', 'I', '2020', 1, 1, now(), 'ad-plan', 3003), "
         "('kp-stale', 's', 'c2', 1, 'UC', 'I', '2020', 2, 1, now(), 'ad-plan', 3004)");
    const char *upto = "9223372036854775807";

    /* cold records r5 and r7: their four revisions, highest first */
    const char *p_cold[4] = {"kp-stale", upto, "{s,s,s}", "{r7,r5,r7}"};
    struct kp_pg_res *r = q(scr__sql_cold, 4, p_cold);
    assert_int_equal(kp_pg_res_ntuples(r), 4);
    static const char *const want_cold[4][2] = {{"r5", "2"}, {"r5", "1"}, {"r7", "2"}, {"r7", "1"}};
    for (int i = 0; i < 4; i++) {
        assert_string_equal(kp_pg_res_value(r, i, 1), want_cold[i][0]);
        assert_string_equal(kp_pg_res_value(r, i, 2), want_cold[i][1]);
    }
    kp_pg_res_free(&r);
    assert_int_equal(observation_rows_read(scr__sql_cold, 4, p_cold), 4);

    /* the cell (UC, I, 2020): c1 and c2 */
    const char *p_cell[5] = {"kp-stale", upto, "UC", "I", "2020"};
    r = q(scr__sql_cell, 5, p_cell);
    assert_int_equal(kp_pg_res_ntuples(r), 2);
    assert_string_equal(kp_pg_res_value(r, 0, 1), "c1");
    assert_string_equal(kp_pg_res_value(r, 1, 1), "c2");
    kp_pg_res_free(&r);
    assert_int_equal(observation_rows_read(scr__sql_cell, 5, p_cell), 4); /* keys, revisions */

    /* a replay chunk of 100 from the scheme's first row */
    char after[24];
    snprintf(after, sizeof after, "%lld", before);
    const char *p_replay[3] = {"kp-stale", after, "100"};
    r = q(scr__sql_replay, 3, p_replay);
    assert_int_equal(kp_pg_res_ntuples(r), 100);
    assert_string_equal(kp_pg_res_value(r, 0, 2), "r1");
    assert_string_equal(kp_pg_res_value(r, 99, 2), "r100");
    kp_pg_res_free(&r);
    assert_int_equal(observation_rows_read(scr__sql_replay, 3, p_replay), 100);

    q_do("DELETE FROM observation WHERE adapter = 'ad-plan'");
    q_do("ANALYZE observation");
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/kp-scr-XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    snprintf(g_scheme_path, sizeof g_scheme_path, "%s/kp-test.yaml", g_dir);
    snprintf(g_migrations, sizeof g_migrations, "%s/schemas/migrations", KP_SOURCE_DIR);
    FILE *f = fopen(g_scheme_path, "w");
    if (!f)
        return -1;
    fputs(SCHEME_YAML, f);
    fclose(f);
    if (kp_pg_open(dsn(), &g_pg) != 0) {
        fprintf(stderr, "connect: %s\n", kp_pg_errmsg(g_pg));
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kp_pg_close(&g_pg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* After each test. A failed test leaves its scorer running: its session keeps the scheme's lock,
 * and every later test's scorer would wait as a standby. Ending the test database's other
 * sessions frees the lock, so that one failure fails only what depends on its data. After a
 * passing test there is nothing left to end. */
static int end_sessions(void **state)
{
    (void)state;
    (void)kp_pg_exec(g_pg,
                     "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                     "AND backend_type = 'client backend'",
                     0, NULL, NULL);
    return 0;
}

int main(void)
{
    kp_log_init("scorer", "test", getenv("KP_TEST_LOG_DEBUG") ? KP_LOG_DEBUG : KP_LOG_WARN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    /* Score rows go out in statements of 2 parts here, so that every exact score below also
     * checks the cut between statements (128 in service; the integration suites run that). */
    scr__write_rows = 2;
    /* And a log key (period, bucket) folds its log into its units' part rows at its third or
     * fourth write (32 to 63 in service), so that they also check the log rows, the view's
     * merge of them and the folds. */
    scr__cells_log_max = 2;
    /* And U1 and U2 share their log rows, U3 has its own (16 units a bucket in service). */
    scr__cells_log_units = 2;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_config_check, end_sessions),
        cmocka_unit_test_teardown(test_config_yaml, end_sessions),
        cmocka_unit_test_teardown(test_sockets_end_to_end, end_sessions),
        cmocka_unit_test_teardown(test_restart_replays, end_sessions),
        cmocka_unit_test_teardown(test_scheme_reorder, end_sessions),
        cmocka_unit_test_teardown(test_db_outages, end_sessions),
        cmocka_unit_test_teardown(test_failover_lock, end_sessions),
        cmocka_unit_test_teardown(test_group_commit, end_sessions),
        cmocka_unit_test_teardown(test_group_bytes, end_sessions),
        cmocka_unit_test_teardown(test_failed_commit, end_sessions),
        cmocka_unit_test_teardown(test_updated_at_table, end_sessions),
        cmocka_unit_test_teardown(test_cells_fillfactor, end_sessions),
        cmocka_unit_test_teardown(test_evicted_records, end_sessions),
        cmocka_unit_test_teardown(test_evicted_values, end_sessions),
        cmocka_unit_test_teardown(test_cell_log, end_sessions),
        cmocka_unit_test_teardown(test_cell_log_buckets, end_sessions),
        cmocka_unit_test_teardown(test_unit_score_rows, end_sessions),
        cmocka_unit_test_teardown(test_read_back_plans, end_sessions),
        cmocka_unit_test_teardown(test_cell_write_plan, end_sessions),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    /* A failed test leaves its scorer's sockets open, and zmq_ctx_term would wait for them
     * for ever: the run then ends on the first failure instead of on CTest's timeout. */
    if (rc == 0)
        kp_zctx_term();
    curl_global_cleanup();
    return rc;
}
