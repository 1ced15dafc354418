/*
 * test_adp_http: the `http` adapter source (adapters/http/) through the adapter's pump and a
 * real spool, against an in-test HTTP server (libmicrohttpd, scripted per test) and, last,
 * against the real kp-sim-audit process with the audit profile (deploy/profiles/audit.yaml).
 * Covered: bearer and basic auth, cursor and page (since + keyset over tie runs) pagination,
 * 5xx and timeouts retried with backoff then success (retry count asserted), retries
 * exhausted, 401 reported with its body and nothing spooled and no retry storm, a rotated
 * token file picked up at once, bad items dead-lettered with position and reason while the
 * good ones are spooled, resume from the persisted cursor after a restart (and after a crash
 * between poll and spool: nothing skipped), configuration refusals that never show a secret.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "adp.h"
#include "adp_pump.h"
#include "http/src_http.h"
#include "kp_buf.h"
#include "kp_config.h"
#include "kp_err.h"
#include "kp_log.h"
#include "kp_msg.h"
#include "kp_spool.h"

#define TOKEN    "tok-3f9a7c1e"
#define PASSWORD "pw-77-secret"
#define LOGQ     64

/* ---- the in-test department API ------------------------------------------------------------ */

enum srv_mode { SRV_CURSOR, SRV_PAGE };

struct srv {
    struct MHD_Daemon *d;
    int port;
    pthread_mutex_t mu;
    enum srv_mode mode;
    char auth[256]; /* the Authorization header wanted; "" = none */
    json_t *feed;   /* items in feed order (cursor mode); page mode sorts by (updated_at, id) */
    unsigned fail_count, fail_status;
    unsigned delay_count, delay_ms;
    const char *raw_body; /* answered once with raw_status instead of the feed */
    unsigned raw_status;
    /* what arrived */
    unsigned requests;
    char query[LOGQ][256];
    char authz[LOGQ][256];
};

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, char *body)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static const char *qarg(struct MHD_Connection *c, const char *k)
{
    return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, k);
}

static int cmp_item(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    int c = strcmp(json_string_value(json_object_get(x, "updated_at")),
                   json_string_value(json_object_get(y, "updated_at")));
    return c ? c
             : strcmp(json_string_value(json_object_get(x, "id")),
                      json_string_value(json_object_get(y, "id")));
}

static char *feed_response(struct srv *s, struct MHD_Connection *c)
{
    json_t *out = json_array();
    json_t *doc;
    size_t n = json_array_size(s->feed);
    if (s->mode == SRV_CURSOR) {
        const char *cur = qarg(c, "cursor");
        size_t from = cur ? strtoul(cur + 1, NULL, 10) : 0;
        size_t limit = qarg(c, "limit") ? strtoul(qarg(c, "limit"), NULL, 10) : 100;
        size_t k = from;
        for (; k < n && k < from + limit; k++)
            json_array_append(out, json_array_get(s->feed, k));
        char next[32];
        snprintf(next, sizeof next, "k%zu", k);
        doc = json_pack("{s:o, s:s}", "items", out, "next_cursor", next);
    } else {
        const char *since = qarg(c, "updated_since");
        size_t page = qarg(c, "page") ? strtoul(qarg(c, "page"), NULL, 10) : 1;
        size_t size = qarg(c, "page_size") ? strtoul(qarg(c, "page_size"), NULL, 10) : 100;
        json_t **sel = calloc(n + 1, sizeof *sel);
        size_t m = 0;
        for (size_t k = 0; k < n; k++) {
            json_t *it = json_array_get(s->feed, k);
            const char *ts = json_string_value(json_object_get(it, "updated_at"));
            if (!since || strcmp(ts, since) >= 0)
                sel[m++] = it;
        }
        qsort(sel, m, sizeof *sel, cmp_item);
        for (size_t k = (page - 1) * size; k < m && k < page * size; k++)
            json_array_append(out, sel[k]);
        free(sel);
        doc = json_pack("{s:{s:o}, s:I}", "data", "rows", out, "total", (json_int_t)m);
    }
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return body;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **ctx)
{
    (void)url;
    (void)method;
    (void)version;
    (void)upload;
    (void)upload_size;
    struct srv *s = cls;
    if (!*ctx) {
        *ctx = s;
        return MHD_YES;
    }
    pthread_mutex_lock(&s->mu);
    unsigned k = s->requests++;
    const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (k < LOGQ) {
        const char *names[] = {"cursor", "limit", "updated_since", "page", "page_size"};
        size_t n = 0;
        s->query[k][0] = 0;
        for (size_t j = 0; j < 5; j++) {
            const char *v = qarg(c, names[j]);
            if (v)
                n += (size_t)snprintf(s->query[k] + n, sizeof s->query[k] - n, "%s%s=%s",
                                      n ? "&" : "", names[j], v);
        }
        snprintf(s->authz[k], sizeof s->authz[k], "%s", a ? a : "");
    }
    unsigned delay = 0;
    if (s->delay_count) {
        s->delay_count--;
        delay = s->delay_ms;
    }
    pthread_mutex_unlock(&s->mu);
    if (delay)
        sleep_ms(delay);
    pthread_mutex_lock(&s->mu);
    enum MHD_Result ret;
    if (s->fail_count) {
        s->fail_count--;
        ret = reply(c, s->fail_status, strdup("{\"error\":\"boom\",\"message\":\"injected\"}"));
    } else if (s->raw_body) {
        ret = reply(c, s->raw_status, strdup(s->raw_body));
        s->raw_body = NULL;
    } else if (s->auth[0] && (!a || strcmp(a, s->auth) != 0)) {
        ret = reply(c, 401,
                    strdup("{\"error\":\"unauthorized\",\"message\":\"token rejected by the "
                           "audit bureau\"}"));
    } else {
        ret = reply(c, 200, feed_response(s, c));
    }
    pthread_mutex_unlock(&s->mu);
    return ret;
}

static void srv_start(struct srv *s)
{
    pthread_mutex_init(&s->mu, NULL);
    s->feed = json_array();
    s->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                            NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, NULL, MHD_OPTION_END);
    assert_non_null(s->d);
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = i->port;
}

static void srv_stop(struct srv *s)
{
    if (s->d)
        MHD_stop_daemon(s->d);
    json_decref(s->feed);
    pthread_mutex_destroy(&s->mu);
}

static unsigned srv_requests(struct srv *s)
{
    pthread_mutex_lock(&s->mu);
    unsigned n = s->requests;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* An audit finding as the bureau's API serves it. */
static json_t *finding(int no, const char *unit, int month, const char *status, int version,
                       const char *updated_at)
{
    char id[32], date[16];
    snprintf(id, sizeof id, "F%03d", no);
    snprintf(date, sizeof date, "2015-%02d-%02d", month, 1 + no % 28);
    return json_pack("{s:s, s:s, s:s, s:s, s:i, s:s}", "id", id, "unit", unit, "issued_date", date,
                     "status", status, "version", version, "updated_at", updated_at);
}

static void feed_add(struct srv *s, json_t *item)
{
    pthread_mutex_lock(&s->mu);
    json_array_append_new(s->feed, item);
    pthread_mutex_unlock(&s->mu);
}

/* ---- fixture: config, spool, pump ---------------------------------------------------------- */

struct fx {
    char dir[64], spool[128], dead[128], token[128], password[128];
    struct adp_config *cfg;
    struct kp_spool *sp;
    struct adp_pump *pump;
    struct srv srv;
    char err[1024];
    pid_t sim; /* kp-sim-audit, when a test started it */
};

static void set(struct fx *f, const char *key, const char *value)
{
    char err[512];
    if (kp_config_set(adp_config_table(), f->cfg, key, value, err, sizeof err) != 0)
        fail_msg("set %s: %s", key, err);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    assert_int_equal(chmod(path, mode), 0);
}

#define AUDIT_FIELDS "u={unit} p={issued_date|month} rev={version} at={updated_at|ms}"
#define AUDIT_OBS                                                                                  \
    "i=audit_findings val=1 ref={id}:count, "                                                      \
    "i=audit_rectification val={status|map:rectified=1;open=0} ref={id}:rect"

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/kp_adp_http.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->spool, sizeof f->spool, "%s/spool.db", f->dir);
    snprintf(f->dead, sizeof f->dead, "%s/dead.db", f->dir);
    snprintf(f->token, sizeof f->token, "%s/token", f->dir);
    snprintf(f->password, sizeof f->password, "%s/password", f->dir);
    write_file(f->token, TOKEN "\n", 0600);
    write_file(f->password, PASSWORD "\n", 0640);
    srv_start(&f->srv);
    f->cfg = adp_config_new();
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/api/v1/findings", f->srv.port);
    set(f, "aid", "audit-1");
    set(f, "scheme", "anshan-2015");
    set(f, "src", "audit");
    set(f, "spool", f->spool);
    set(f, "source.driver", "http");
    set(f, "source.http.url", url);
    set(f, "source.http.auth", "bearer");
    set(f, "source.http.token_file", f->token);
    set(f, "source.http.dead_letters", f->dead);
    set(f, "source.http.fields", AUDIT_FIELDS);
    set(f, "source.http.observations", AUDIT_OBS);
    set(f, "source.http.backoff_min_ms", "10");
    set(f, "source.http.backoff_max_ms", "40");
    set(f, "source.http.timeout_ms", "2s");
    snprintf(f->srv.auth, sizeof f->srv.auth, "Bearer " TOKEN);
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
    srv_stop(&f->srv);
    if (f->sim > 0) {
        kill(f->sim, SIGTERM);
        waitpid(f->sim, NULL, 0);
    }
    adp_config_destroy(&f->cfg);
    const char *files[] = {"spool.db",
                           "spool.db-wal",
                           "spool.db-shm",
                           "dead.db",
                           "dead.db-wal",
                           "dead.db-shm",
                           "token",
                           "password",
                           "profile.yaml",
                           "units.tsv",
                           "port",
                           "sim.log",
                           "spool/audit.db",
                           "spool/audit.db-wal",
                           "spool/audit.db-shm",
                           "spool"};
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        char p[192];
        snprintf(p, sizeof p, "%s/%s", f->dir, files[k]);
        if (unlink(p) != 0)
            rmdir(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static int open_pump_rc(struct fx *f)
{
    if (!f->sp)
        assert_int_equal(kp_spool_open(f->spool, 1u << 30, &f->sp), 0);
    struct adp_pump_opts o = {f->cfg->aid, f->cfg->scheme, f->cfg->src,
                              (uint32_t)f->cfg->batch_max_obs};
    f->err[0] = 0;
    return adp_pump_open(&adp_source_http, adp_source_config(f->cfg, &adp_source_http), f->sp, &o,
                         NULL, &f->pump, f->err, sizeof f->err);
}

static void open_pump(struct fx *f)
{
    int rc = open_pump_rc(f);
    if (rc != 0)
        fail_msg("adp_pump_open: %s: %s", kp_err_name(rc), f->err);
}

static int step(struct fx *f)
{
    f->err[0] = 0;
    return adp_pump_step(f->pump, f->err, sizeof f->err);
}

/* Steps until the source has nothing new; returns the records stored. */
static int drain(struct fx *f)
{
    int total = 0;
    for (int k = 0; k < 1000; k++) {
        int n = step(f);
        if (n < 0)
            fail_msg("step: %s: %s", kp_err_name(n), f->err);
        if (n == 0 && !adp_pump_more(f->pump))
            return total;
        total += n;
    }
    fail_msg("the source never caught up");
    return -1;
}

/* ---- reading the spool back ------------------------------------------------------------------ */

struct seen {
    struct kp_obs obs[512];
    size_t n, batches;
};

static int on_item(const struct kp_spool_item *it, void *arg)
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
        fail_msg("decode: %s %s", kp_reason_str(r), msg);
    assert_string_equal(b->src, "audit");
    for (size_t k = 0; k < b->n_obs && s->n < 512; k++)
        s->obs[s->n++] = b->obs[k];
    s->batches++;
    kp_batch_destroy(&b);
    return 0;
}

static void spooled(struct fx *f, struct seen *s)
{
    memset(s, 0, sizeof *s);
    assert_true(kp_spool_scan(f->sp, 0, 100000, on_item, s) >= 0);
}

static const struct kp_obs *find_obs(const struct seen *s, const char *ref, uint64_t rev)
{
    for (size_t k = 0; k < s->n; k++)
        if (strcmp(s->obs[k].ref, ref) == 0 && s->obs[k].rev == rev)
            return &s->obs[k];
    return NULL;
}

static size_t count_ref(const struct seen *s, const char *ref)
{
    size_t n = 0;
    for (size_t k = 0; k < s->n; k++)
        n += strcmp(s->obs[k].ref, ref) == 0;
    return n;
}

static json_t *stored_cursor(struct fx *f)
{
    char buf[4096];
    assert_int_equal(kp_spool_cursor(f->sp, buf, sizeof buf), 0);
    json_error_t je;
    json_t *doc = json_loads(buf, 0, &je);
    assert_non_null(doc);
    return doc;
}

/* ---- tests ------------------------------------------------------------------------------------
 */

/* Bearer auth, cursor pagination: 25 findings, 2 records each, 10 findings per request. */
static void test_cursor_bearer(void **state)
{
    struct fx *f = *state;
    set(f, "batch_max_obs", "20");
    for (int k = 1; k <= 25; k++)
        feed_add(&f->srv, finding(k, k % 2 ? "AS-HC" : "AS-TA", 3, k % 3 ? "open" : "rectified",
                                  k % 4 + 1, "2015-04-02T08:30:00.250+08:00"));
    open_pump(f);
    assert_int_equal(drain(f), 50);
    struct seen s;
    spooled(f, &s);
    assert_int_equal(s.batches, 3);
    assert_int_equal(s.n, 50);
    const struct kp_obs *o = find_obs(&s, "F003:count", 4);
    assert_non_null(o);
    assert_string_equal(o->u, "AS-HC");
    assert_string_equal(o->i, "audit_findings");
    assert_string_equal(o->p, "2015-03");
    assert_true(o->val == 1);
    assert_int_equal(o->reason, KP_R_OK);
    assert_int_equal(o->at, 1427934600250LL); /* 2015-04-02T00:30:00.250Z */
    o = find_obs(&s, "F003:rect", 4);
    assert_non_null(o);
    assert_string_equal(o->i, "audit_rectification");
    assert_true(o->val == 1);
    o = find_obs(&s, "F004:rect", 1);
    assert_non_null(o);
    assert_true(o->val == 0);
    for (int k = 1; k <= 25; k++) {
        char ref[32];
        snprintf(ref, sizeof ref, "F%03d:count", k);
        assert_int_equal(count_ref(&s, ref), 1);
    }
    /* every request authenticated; the cursor travels back; 10 findings per request */
    assert_int_equal(srv_requests(&f->srv), 4); /* 3 pages and one that finds nothing */
    assert_string_equal(f->srv.query[0], "limit=10");
    assert_string_equal(f->srv.query[1], "cursor=k10&limit=10");
    assert_string_equal(f->srv.query[3], "cursor=k25&limit=10");
    for (unsigned k = 0; k < 4; k++)
        assert_string_equal(f->srv.authz[k], "Bearer " TOKEN);
    json_t *cur = stored_cursor(f);
    assert_string_equal(json_string_value(json_object_get(cur, "cursor")), "k25");
    assert_string_equal(json_string_value(json_object_get(cur, "mode")), "cursor");
    json_decref(cur);
}

/* Basic auth, page pagination over a since value with tie runs longer than a page. */
static void test_page_basic_ties(void **state)
{
    struct fx *f = *state;
    f->srv.mode = SRV_PAGE;
    char b64[128];
    /* "auditor:pw-77-secret" */
    snprintf(b64, sizeof b64, "Basic YXVkaXRvcjpwdy03Ny1zZWNyZXQ=");
    snprintf(f->srv.auth, sizeof f->srv.auth, "%s", b64);
    set(f, "source.http.auth", "basic");
    set(f, "source.http.token_file", "");
    set(f, "source.http.user", "auditor");
    set(f, "source.http.password_file", f->password);
    set(f, "source.http.pagination", "page");
    set(f, "source.http.items", "data.rows");
    set(f, "source.http.page_size", "4");
    const char *ts[10] = {"2015-05-01T00:00:00Z", "2015-05-01T00:00:00Z", "2015-05-01T00:00:00Z",
                          "2015-05-02T00:00:00Z", "2015-05-02T00:00:00Z", "2015-05-02T00:00:00Z",
                          "2015-05-02T00:00:00Z", "2015-05-02T00:00:00Z", "2015-05-03T00:00:00Z",
                          "2015-05-03T00:00:00Z"};
    for (int k = 1; k <= 10; k++)
        feed_add(&f->srv, finding(k, "AS-GX", 4, "open", 1, ts[k - 1]));
    open_pump(f);
    assert_int_equal(drain(f), 20);
    struct seen s;
    spooled(f, &s);
    for (int k = 1; k <= 10; k++) {
        char ref[32];
        snprintf(ref, sizeof ref, "F%03d:count", k);
        assert_int_equal(count_ref(&s, ref), 1); /* each exactly once across the tie runs */
    }
    assert_string_equal(f->srv.authz[0], b64);
    assert_string_equal(f->srv.query[0], "page=1&page_size=4");
    assert_string_equal(f->srv.query[1], "updated_since=2015-05-02T00:00:00Z&page=1&page_size=4");
    json_t *cur = stored_cursor(f);
    assert_string_equal(json_string_value(json_object_get(cur, "since")), "2015-05-03T00:00:00Z");
    assert_int_equal(json_array_size(json_object_get(cur, "ids")), 2);
    json_decref(cur);

    /* nothing new: no record, and a restart resumes at the same place */
    assert_int_equal(step(f), 0);
    close_pump(f);
    open_pump(f);
    assert_int_equal(step(f), 0);

    /* F002 is rectified: it moves to the end of the order and is sent again as rev 2 */
    pthread_mutex_lock(&f->srv.mu);
    json_t *it = json_array_get(f->srv.feed, 1);
    json_object_set_new(it, "status", json_string("rectified"));
    json_object_set_new(it, "version", json_integer(2));
    json_object_set_new(it, "updated_at", json_string("2015-05-04T00:00:00Z"));
    pthread_mutex_unlock(&f->srv.mu);
    assert_int_equal(drain(f), 2);
    spooled(f, &s);
    const struct kp_obs *o = find_obs(&s, "F002:rect", 2);
    assert_non_null(o);
    assert_true(o->val == 1);
    assert_int_equal(count_ref(&s, "F002:count"), 2);
    assert_int_equal(count_ref(&s, "F009:count"), 1);
}

/* 500s are retried with backoff inside one poll, then the page arrives. */
static void test_500_retried(void **state)
{
    struct fx *f = *state;
    for (int k = 1; k <= 3; k++)
        feed_add(&f->srv, finding(k, "AS-HC", 3, "open", 1, "2015-04-01T00:00:00Z"));
    f->srv.fail_count = 2;
    f->srv.fail_status = 500;
    set(f, "source.http.retries", "3");
    open_pump(f);
    assert_int_equal(step(f), 6);
    assert_int_equal(srv_requests(&f->srv), 3); /* two 500s and the success */

    /* Exhausted retries: the poll fails with the status, nothing is spooled; the next poll
     * tries again at once (no hold-off for passing faults). */
    feed_add(&f->srv, finding(4, "AS-HC", 3, "open", 1, "2015-04-01T00:00:00Z"));
    f->srv.fail_count = 100;
    f->srv.fail_status = 503;
    set(f, "source.http.retries", "2");
    int rc = step(f);
    assert_int_equal(rc, KP_EAGAIN);
    assert_non_null(strstr(f->err, "HTTP 503"));
    assert_non_null(strstr(f->err, "injected"));
    assert_non_null(strstr(f->err, "after 3 attempts"));
    assert_int_equal(srv_requests(&f->srv), 6);
    assert_int_equal(kp_spool_next_seq(f->sp), 2);
    f->srv.fail_count = 0;
    assert_int_equal(step(f), 2);
    assert_int_equal(srv_requests(&f->srv), 7);
}

/* A response slower than timeout_ms is abandoned and the request retried. */
static void test_timeout_retried(void **state)
{
    struct fx *f = *state;
    feed_add(&f->srv, finding(1, "AS-HC", 3, "open", 1, "2015-04-01T00:00:00Z"));
    set(f, "source.http.timeout_ms", "200");
    f->srv.delay_count = 1;
    f->srv.delay_ms = 1000;
    open_pump(f);
    assert_int_equal(step(f), 2);
    assert_int_equal(srv_requests(&f->srv), 2);

    /* the connection refused (nobody listens) is retried too, then reported */
    char url[128];
    MHD_stop_daemon(f->srv.d);
    f->srv.d = NULL;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/api/v1/findings", f->srv.port);
    set(f, "source.http.retries", "1");
    int rc = step(f);
    assert_int_equal(rc, KP_EHOSTUNREACH);
    assert_non_null(strstr(f->err, "after 2 attempts"));
}

/* A 401 is reported with its body at once, nothing is spooled, and no request goes out during
 * the hold-off; a rotated token file ends it. */
static void test_401_reported(void **state)
{
    struct fx *f = *state;
    feed_add(&f->srv, finding(1, "AS-HC", 3, "open", 1, "2015-04-01T00:00:00Z"));
    write_file(f->token, "expired-token\n", 0600);
    open_pump(f);
    int rc = step(f);
    assert_int_equal(rc, KP_ECONFIG);
    assert_non_null(strstr(f->err, "HTTP 401"));
    assert_non_null(strstr(f->err, "token rejected by the audit bureau"));
    assert_null(strstr(f->err, "expired-token"));
    assert_int_equal(srv_requests(&f->srv), 1); /* no retry of a refusal */
    assert_int_equal(kp_spool_next_seq(f->sp), 1);
    struct kp_spool_stats st;
    assert_int_equal(kp_spool_stats(f->sp, &st), 0);
    assert_int_equal(st.depth, 0);

    for (int k = 0; k < 5; k++) {
        rc = step(f);
        assert_int_equal(rc, KP_ECONFIG);
        assert_non_null(strstr(f->err, "held off"));
    }
    assert_int_equal(srv_requests(&f->srv), 1); /* no retry storm */

    write_file(f->token, TOKEN "\n", 0600);
    assert_int_equal(step(f), 2);
    assert_int_equal(srv_requests(&f->srv), 2);
}

struct dead_seen {
    long line[16];
    char code[16][32];
    char msg[16][300];
    char raw[16][300];
    char file[16][300];
    size_t n;
};

static int on_dead(const struct kp_spool_dead_row *r, void *arg)
{
    struct dead_seen *d = arg;
    if (d->n < 16) {
        d->line[d->n] = r->line;
        snprintf(d->code[d->n], sizeof d->code[0], "%s", r->code);
        snprintf(d->msg[d->n], sizeof d->msg[0], "%s", r->msg);
        snprintf(d->raw[d->n], sizeof d->raw[0], "%s", r->raw ? r->raw : "");
        snprintf(d->file[d->n], sizeof d->file[0], "%s", r->file);
    }
    d->n++;
    return 0;
}

static void dead_rows(struct fx *f, struct dead_seen *d)
{
    memset(d, 0, sizeof *d);
    struct kp_spool *dl = NULL;
    assert_int_equal(kp_spool_open(f->dead, 1u << 30, &dl), 0);
    assert_true(kp_spool_dead_row_scan(dl, NULL, on_dead, d) >= 0);
    kp_spool_close(&dl);
}

static void add_bad_items(struct fx *f)
{
    feed_add(&f->srv, finding(1, "AS-HC", 3, "open", 1, "2015-04-01T00:00:00Z"));
    json_t *x = finding(2, "AS-HC", 3, "open", 1, "2015-04-01T00:00:00Z");
    json_object_del(x, "unit"); /* 2: no unit */
    feed_add(&f->srv, x);
    x = finding(3, "AS-HC", 3, "open", 1, "2015-04-01T00:00:00Z");
    json_object_set_new(x, "version", json_pack("{s:i}", "n", 3)); /* 3: an object for rev */
    feed_add(&f->srv, x);
    x = finding(4, "AS-HC", 3, "open", 1, "2015-04-01T00:00:00Z");
    json_object_set_new(x, "issued_date", json_string("2015/03/07")); /* 4: no date */
    feed_add(&f->srv, x);
    feed_add(&f->srv, finding(5, "AS-HC", 3, "待复核", 1, "2015-04-01T00:00:00Z")); /* not mapped */
    feed_add(&f->srv, json_string("F006|AS-HC|<damaged>")); /* 6: no object */
    feed_add(&f->srv, json_integer(7));                     /* 7: no object */
    feed_add(&f->srv, finding(8, "AS-TA", 3, "rectified", 2, "2015-04-01T00:00:00Z"));
}

/* Bad items are dead letters with position and reason; the good ones are spooled; refused
 * object items are forwarded for the scorer's rejection rows. */
static void test_bad_items(void **state)
{
    struct fx *f = *state;
    add_bad_items(f);
    open_pump(f);
    assert_int_equal(drain(f), 12); /* 6 object items × 2 records */
    struct seen s;
    spooled(f, &s);
    const struct kp_obs *o = find_obs(&s, "F001:count", 1);
    assert_non_null(o);
    assert_int_equal(o->reason, KP_R_OK);
    o = find_obs(&s, "F008:rect", 2);
    assert_non_null(o);
    assert_int_equal(o->reason, KP_R_OK);
    assert_true(o->val == 1);
    o = find_obs(&s, "F002:count", 1);
    assert_non_null(o);
    assert_int_equal(o->reason, KP_R_missing_field); /* the scorer will refuse it too */
    o = find_obs(&s, "F004:count", 1);
    assert_non_null(o);
    assert_int_equal(o->reason, KP_R_bad_period);
    o = find_obs(&s, "F005:rect", 1);
    assert_non_null(o);
    assert_int_equal(o->reason, KP_R_bad_type);
    o = find_obs(&s, "F005:count", 1);
    assert_non_null(o);
    assert_int_equal(o->reason, KP_R_OK); /* the count record of F005 is fine */

    struct dead_seen d;
    dead_rows(f, &d);
    assert_int_equal(d.n, 6);
    /* in (file, line) order: items 2, 3, 4, 5, 6, 7 of the first response */
    const long lines[6] = {2, 3, 4, 5, 6, 7};
    const char *codes[6] = {"missing_field", "bad_field", "bad_field",
                            "bad_field",     "bad_type",  "bad_type"};
    for (size_t k = 0; k < 6; k++) {
        assert_int_equal(d.line[k], lines[k]);
        assert_string_equal(d.code[k], codes[k]);
        assert_non_null(strstr(d.file[k], "/api/v1/findings?cursor="));
    }
    assert_non_null(strstr(d.msg[0], "id F002: u: unit is missing"));
    assert_non_null(strstr(d.msg[1], "rev: version is an object"));
    assert_non_null(strstr(d.msg[2], "\"2015/03/07\" is not a date"));
    assert_non_null(strstr(d.msg[3], "\"待复核\" is not in the map"));
    assert_non_null(strstr(d.msg[4], "JSON string, not an object"));
    assert_string_equal(d.raw[4], "\"F006|AS-HC|<damaged>\"");
    assert_non_null(strstr(d.raw[0], "\"id\":\"F002\""));

    /* A crash before the cursor moved re-reads the same response: each dead letter is still
     * recorded once. */
    close_pump(f);
    unlink(f->spool);
    char p[192];
    snprintf(p, sizeof p, "%s-wal", f->spool);
    unlink(p);
    open_pump(f);
    assert_int_equal(drain(f), 12);
    dead_rows(f, &d);
    assert_int_equal(d.n, 6);
}

static void test_bad_items_not_forwarded(void **state)
{
    struct fx *f = *state;
    set(f, "source.http.forward_refused", "false");
    add_bad_items(f);
    open_pump(f);
    assert_int_equal(drain(f), 4); /* F001 and F008 */
    struct seen s;
    spooled(f, &s);
    for (size_t k = 0; k < s.n; k++)
        assert_int_equal(s.obs[k].reason, KP_R_OK);
    struct dead_seen d;
    dead_rows(f, &d);
    assert_int_equal(d.n, 6);

    /* a response of dead items only still moves the cursor */
    feed_add(&f->srv, json_string("junk"));
    assert_int_equal(drain(f), 0);
    dead_rows(f, &d);
    assert_int_equal(d.n, 7);
    int before = (int)srv_requests(&f->srv);
    assert_int_equal(step(f), 0);
    assert_string_equal(f->srv.query[before], "cursor=k9&limit=100");
}

/* Restart: the persisted cursor is where the next request starts; a poll that never reached
 * the spool (a crash in between) is read again, so nothing is skipped. */
static void test_resume(void **state)
{
    struct fx *f = *state;
    set(f, "batch_max_obs", "10");
    for (int k = 1; k <= 12; k++)
        feed_add(&f->srv, finding(k, "AS-HC", 3, "open", 1, "2015-04-01T00:00:00Z"));
    open_pump(f);
    assert_int_equal(step(f), 10);
    assert_int_equal(step(f), 10);
    close_pump(f);

    open_pump(f);
    unsigned r0 = srv_requests(&f->srv);
    /* polled but never stored: the process dies here */
    char err[256];
    assert_int_equal(adp_pump_poll(f->pump, err, sizeof err), 4);
    assert_string_equal(f->srv.query[r0], "cursor=k10&limit=5");
    close_pump(f);

    open_pump(f);
    assert_int_equal(drain(f), 4);
    struct seen s;
    spooled(f, &s);
    assert_int_equal(s.n, 24);
    for (int k = 1; k <= 12; k++) {
        char ref[32];
        snprintf(ref, sizeof ref, "F%03d:rect", k);
        assert_int_equal(count_ref(&s, ref), 1);
    }
}

/* Not JSON, or JSON without the items array: reported with the start of the body, held off. */
static void test_bad_body(void **state)
{
    struct fx *f = *state;
    f->srv.raw_body = "<html>502 from the gateway</html>";
    f->srv.raw_status = 200;
    open_pump(f);
    int rc = step(f);
    assert_int_equal(rc, KP_EPROTO);
    assert_non_null(strstr(f->err, "not JSON"));
    assert_non_null(strstr(f->err, "<html>502 from the gateway</html>"));
    assert_int_equal(step(f), KP_EPROTO);
    assert_non_null(strstr(f->err, "held off"));
    assert_int_equal(srv_requests(&f->srv), 1);
}

static void expect_config_error(struct fx *f, const char *needle)
{
    int rc = open_pump_rc(f);
    if (rc != KP_ECONFIG)
        fail_msg("want KP_ECONFIG with \"%s\", got %s: %s", needle, kp_err_name(rc), f->err);
    if (!strstr(f->err, needle))
        fail_msg("err \"%s\" does not say \"%s\"", f->err, needle);
    assert_null(strstr(f->err, TOKEN));
    assert_null(strstr(f->err, PASSWORD));
    assert_null(f->pump);
}

static void test_config(void **state)
{
    struct fx *f = *state;
    char err[512];
    write_file(f->token, TOKEN "\n", 0604);
    expect_config_error(f, "source.http.token_file: ");
    expect_config_error(f, "accessible to every user");
    write_file(f->token, TOKEN "\n", 0600);

    set(f, "source.http.url", "http://auditor:" PASSWORD "@127.0.0.1:1/x");
    expect_config_error(f, "source.http.url: carries credentials");
    set(f, "source.http.url", "ftp://127.0.0.1/x");
    expect_config_error(f, "must be http:// or https://");
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/api/v1/findings", f->srv.port);
    set(f, "source.http.url", url);
    set(f, "source.http.auth", "digest");
    expect_config_error(f, "source.http.auth");
    set(f, "source.http.auth", "basic");
    expect_config_error(f, "auth basic needs user and password_file");
    set(f, "source.http.auth", "bearer");
    set(f, "source.http.fields", "u={unit} p={issued_date|fortnight}");
    expect_config_error(f, "unknown filter \"fortnight\"");
    set(f, "source.http.fields", "u={unit p={x}");
    expect_config_error(f, "source.http.fields");
    set(f, "source.http.fields", "u={unit}");
    expect_config_error(f, "no template for p");
    set(f, "source.http.fields", AUDIT_FIELDS);
    set(f, "source.http.dead_letters", "");
    expect_config_error(f, "source.http.dead_letters: required");
    set(f, "source.http.dead_letters", f->dead);
    set(f, "batch_max_obs", "1");
    expect_config_error(f, "batch_max_obs");
    set(f, "batch_max_obs", "500");

    /* the whole daemon's check says the same, and the http plugin is registered */
    assert_int_equal(adp_config_check(f->cfg, err, sizeof err), 0);
    set(f, "source.http.pagination", "offset");
    assert_int_equal(adp_config_check(f->cfg, err, sizeof err), KP_ECONFIG);
    assert_non_null(strstr(err, "source.http.pagination"));
    set(f, "source.http.pagination", "cursor");

    /* a spool written in page mode is not silently reused in cursor mode */
    open_pump(f);
    feed_add(&f->srv, finding(1, "AS-HC", 3, "open", 1, "2015-04-01T00:00:00Z"));
    assert_int_equal(step(f), 2);
    adp_pump_close(&f->pump);
    set(f, "source.http.pagination", "page");
    expect_config_error(f, "pagination cursor");
}

/* ---- the real simulator with the audit profile ----------------------------------------------- */

static char sim_bin[PATH_MAX + 64];

static bool find_sim(void)
{
    const char *env = getenv("KP_SIM_AUDIT");
    if (env && *env) {
        snprintf(sim_bin, sizeof sim_bin, "%s", env);
        return access(sim_bin, X_OK) == 0;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return false;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash)
        return false;
    *slash = 0; /* <build>/tests */
    slash = strrchr(exe, '/');
    if (!slash)
        return false;
    *slash = 0; /* <build> */
    snprintf(sim_bin, sizeof sim_bin, "%s/deploy/sim/kp-sim-audit", exe);
    return access(sim_bin, X_OK) == 0;
}

static size_t write_cb(char *p, size_t sz, size_t n, void *arg)
{
    kp_buf_append(arg, p, sz * n);
    return sz * n;
}

static long http_body(const char *method, const char *url, const char *auth, const char *body,
                      struct kp_buf *out)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    if (auth)
        h = curl_slist_append(h, auth);
    kp_buf_reset(out);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    if (strcmp(method, "POST") == 0)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
    long code = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    kp_buf_cstr(out);
    return code;
}

static long http(const char *method, const char *url, const char *auth, struct kp_buf *out)
{
    return http_body(method, url, auth, NULL, out);
}

/* The profile with its placeholders filled, as the lead's main job does with sed. */
static void write_profile(struct fx *f, const char *url, const char *path)
{
    char src[PATH_MAX];
    snprintf(src, sizeof src, "%s/deploy/profiles/audit.yaml", KP_SOURCE_DIR);
    FILE *in = fopen(src, "r");
    assert_non_null(in);
    FILE *out = fopen(path, "w");
    assert_non_null(out);
    char line[4096];
    const char *ph[5][2] = {{"@COLLECTOR@", "tcp://127.0.0.1:1"},
                            {"@SCHEME@", "anshan-2015"},
                            {"@WORK@", f->dir},
                            {"@AUDIT_URL@", url},
                            {"@AUDIT_TOKEN_FILE@", f->token}};
    while (fgets(line, sizeof line, in)) {
        for (const char *p = line; *p;) {
            size_t k;
            for (k = 0; k < 5; k++)
                if (strncmp(p, ph[k][0], strlen(ph[k][0])) == 0)
                    break;
            if (k < 5) {
                fputs(ph[k][1], out);
                p += strlen(ph[k][0]);
            } else {
                fputc(*p++, out);
            }
        }
    }
    fclose(in);
    fclose(out);
}

static void test_sim_audit(void **state)
{
    struct fx *f = *state;
    if (!find_sim()) {
        fprintf(stderr, "kp-sim-audit not built next to this test (or KP_SIM_AUDIT): skipped\n");
        skip();
    }
    char units[192], portf[192], log[192];
    snprintf(units, sizeof units, "%s/units.tsv", f->dir);
    snprintf(portf, sizeof portf, "%s/port", f->dir);
    snprintf(log, sizeof log, "%s/sim.log", f->dir);
    write_file(units,
               "unit\tAS-HC\t海城市政府\tg1\nunit\tAS-TA\t台安县政府\tg1\nunit\tAS-TD\t铁东区政府"
               "\tg2\nunit\tAS-GX\t高新区管委会\tg3\nunit\tAS-FGW\t市发展改革委\tg4\n",
               0644);
    char spool_dir[192];
    snprintf(spool_dir, sizeof spool_dir, "%s/spool", f->dir);
    assert_int_equal(mkdir(spool_dir, 0700), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        FILE *lf = freopen(log, "w", stderr);
        lf = freopen("/dev/null", "w", stdout);
        (void)lf;
        execl(sim_bin, sim_bin, "--units", units, "--port", "0", "--port-file", portf,
              "--token-file", f->token, "--seed", "7", "--bad-rate", "0.2", (char *)NULL);
        _exit(127);
    }
    f->sim = pid;
    int port = 0;
    for (int k = 0; k < 200 && !port; k++) {
        FILE *pf = fopen(portf, "r");
        if (pf) {
            if (fscanf(pf, "%d", &port) != 1)
                port = 0;
            fclose(pf);
        }
        if (!port)
            sleep_ms(20);
    }
    assert_true(port > 0);
    char base[128], url[160], ctl[256], profile[192];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
    snprintf(url, sizeof url, "%s/api/v1/findings", base);
    snprintf(profile, sizeof profile, "%s/profile.yaml", f->dir);
    write_profile(f, url, profile);

    /* the profile as kp-adapter loads it */
    adp_config_destroy(&f->cfg);
    f->cfg = kp_xcalloc(1, adp_config_size());
    char err[512];
    int rc = kp_config_load(profile, adp_config_table(), f->cfg, err, sizeof err);
    if (rc != 0)
        fail_msg("profile: %s", err);
    assert_int_equal(adp_config_check(f->cfg, err, sizeof err), 0);
    assert_string_equal(f->cfg->driver, "http");
    snprintf(f->spool, sizeof f->spool, "%s", f->cfg->spool);
    set(f, "source.http.backoff_min_ms", "10");
    set(f, "source.http.backoff_max_ms", "40");

    struct kp_buf b = {0};
    snprintf(ctl, sizeof ctl, "%s/control/step?month=4", base);
    assert_int_equal(http("POST", ctl, NULL, &b), 200);
    /* and two bad rows for sure: a damaged record and a finding without its unit */
    snprintf(ctl, sizeof ctl, "%s/control/finding", base);
    assert_int_equal(http_body("POST", ctl, NULL, "{\"id\":\"X1\",\"raw\":\"X1|damaged\"}", &b),
                     200);
    assert_int_equal(http_body("POST", ctl, NULL,
                               "{\"id\":\"X2\",\"issued_date\":\"2015-04-09\",\"status\":"
                               "\"open\",\"version\":1}",
                               &b),
                     200);
    open_pump(f);
    drain(f);

    /* what the API serves, read independently: every object item is spooled, two records
     * each; every refused item is a dead letter */
    char auth[128];
    snprintf(auth, sizeof auth, "Authorization: Bearer " TOKEN);
    char all[256];
    snprintf(all, sizeof all, "%s?limit=1000", url);
    assert_int_equal(http("GET", all, auth, &b), 200);
    json_error_t je;
    json_t *doc = json_loads((const char *)b.data, 0, &je);
    assert_non_null(doc);
    json_t *items = json_object_get(doc, "items");
    size_t objects = 0, n_items = json_array_size(items);
    assert_true(n_items > 10);
    for (size_t k = 0; k < n_items; k++)
        objects += json_is_object(json_array_get(items, k));
    struct seen s;
    spooled(f, &s);
    assert_int_equal(s.n, 2 * objects);
    size_t refused = 0;
    for (size_t k = 0; k < s.n; k++)
        refused += s.obs[k].reason != KP_R_OK;
    struct dead_seen d;
    snprintf(f->dead, sizeof f->dead, "%s", f->cfg->spool); /* the profile keeps them there */
    dead_rows(f, &d);
    assert_true(d.n >= n_items - objects);
    assert_true(d.n >= 2);
    assert_true(refused >= 2); /* X2's two records, sent for the scorer's rejection rows */
    json_decref(doc);

    /* two injected 500s are retried within one poll */
    snprintf(ctl, sizeof ctl, "%s/control/fail?status=500&count=2", base);
    assert_int_equal(http("POST", ctl, NULL, &b), 200);
    snprintf(ctl, sizeof ctl, "%s/control/step?month=5", base);
    assert_int_equal(http("POST", ctl, NULL, &b), 200);
    assert_true(step(f) > 0);
    snprintf(ctl, sizeof ctl, "%s/control/stats", base);
    assert_int_equal(http("GET", ctl, NULL, &b), 200);
    assert_non_null(strstr((const char *)b.data, "\"injected_fail\":2"));
    drain(f);

    /* The same feed in page mode (updated_since + page numbers, 7 findings a page): many
     * findings of a step share one updated_at millisecond, so tie runs span pages. Every
     * finding arrives at its latest version, exactly once. */
    close_pump(f);
    char spool1[128];
    snprintf(spool1, sizeof spool1, "%s", f->spool);
    snprintf(f->spool, sizeof f->spool, "%s/spool/page.db", f->dir);
    set(f, "spool", f->spool);
    set(f, "source.http.pagination", "page");
    set(f, "source.http.page_size", "7");
    set(f, "source.http.dead_letters", f->dead);
    open_pump(f);
    drain(f);
    assert_int_equal(http("GET", all, auth, &b), 200);
    doc = json_loads((const char *)b.data, 0, &je);
    assert_non_null(doc);
    items = json_object_get(doc, "items");
    size_t objects_now = 0;
    for (size_t k = 0; k < json_array_size(items); k++) {
        json_t *it = json_array_get(items, k);
        if (!json_is_object(it))
            continue;
        objects_now++;
        char ref[96];
        snprintf(ref, sizeof ref, "%s:count", json_string_value(json_object_get(it, "id")));
        spooled(f, &s);
        if (count_ref(&s, ref) != 1)
            fail_msg("%s spooled %zu times in page mode", ref, count_ref(&s, ref));
        assert_non_null(
            find_obs(&s, ref, (uint64_t)json_integer_value(json_object_get(it, "version"))));
    }
    assert_int_equal(s.n, 2 * objects_now);
    json_decref(doc);
    close_pump(f);
    char p[192];
    for (int k = 0; k < 3; k++) {
        snprintf(p, sizeof p, "%s%s", f->spool, k == 0 ? "" : k == 1 ? "-wal" : "-shm");
        unlink(p);
    }
    snprintf(f->spool, sizeof f->spool, "%s", spool1);
    set(f, "spool", f->spool);
    set(f, "source.http.pagination", "cursor");
    set(f, "source.http.page_size", "250");
    set(f, "source.http.dead_letters", f->spool);
    open_pump(f);
    assert_int_equal(step(f), 0);

    /* the bureau rotates its token: 401 with the body, reported */
    snprintf(ctl, sizeof ctl, "%s/control/token", base);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, ctl);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "rotated-token-2");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_cleanup(c);
    rc = step(f);
    assert_int_equal(rc, KP_ECONFIG);
    assert_non_null(strstr(f->err, "HTTP 401"));
    assert_non_null(strstr(f->err, "missing or invalid credentials"));
    write_file(f->token, "rotated-token-2\n", 0600);
    assert_true(step(f) >= 0);

    kp_buf_fini(&b);
    kill(pid, SIGTERM);
    int wst;
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    f->sim = 0;
    assert_true(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
}

int main(void)
{
    kp_log_init("adapter", "test", KP_LOG_ERROR);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cursor_bearer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_page_basic_ties, setup, teardown),
        cmocka_unit_test_setup_teardown(test_500_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_401_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_items, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_items_not_forwarded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sim_audit, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
