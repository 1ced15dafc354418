/*
 * test_util: fixtures more than one unit test uses, header-only (static inline, so a test
 * that does not call one gets no unused-function warning). Include it after <cmocka.h>.
 *   - always: a temporary directory holding one SQLite file (tu_sqlite_dir_*), as the spool
 *     tests use it;
 *   - with TEST_UTIL_LOOP defined before the include: multipart inboxes fed by kp_zsock
 *     callbacks, running a libuv loop until a predicate holds, and reading a series from an
 *     admin endpoint's /metrics (test_col_brk.c, test_col_zap.c). The loop predicates take the
 *     including test's own `struct fx`, defined after this header.
 */
#ifndef TEST_UTIL_H
#define TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- a temporary directory with one SQLite file ------------------------------------------ */

struct tu_sqlite_dir {
    char dir[64];
    char path[128]; /* <dir>/<file> */
};

/* cmocka setup: makes a directory from mkdtemp template tmpl ("/tmp/name.XXXXXX") and sets
 * path to <dir>/<file>; *state = the struct tu_sqlite_dir. */
static inline int tu_sqlite_dir_setup(void **state, const char *tmpl, const char *file)
{
    struct tu_sqlite_dir *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s", tmpl);
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/%s", f->dir, file);
    *state = f;
    return 0;
}

/* cmocka teardown: removes the file with its -wal, -shm and -journal companions, then the
 * directory. */
static inline int tu_sqlite_dir_teardown(void **state)
{
    struct tu_sqlite_dir *f = *state;
    const char *suffix[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        char p[160];
        snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

#ifdef TEST_UTIL_LOOP

#include <curl/curl.h>
#include <uv.h>

#include "kp_buf.h"
#include "kp_time.h"
#include "kp_zsock.h"

#define INBOX 64

/* ---- inboxes -------------------------------------------------------------------------- */

/* One received multipart message, frames copied. */
struct rmsg {
    size_t n;
    struct kp_buf f[KP_ZSOCK_MAX_FRAMES];
};

struct inbox {
    struct rmsg m[INBOX];
    size_t head, tail;
};

static inline void inbox_push(struct inbox *in, const struct kp_frame *fr, size_t n)
{
    assert_true(in->tail - in->head < INBOX);
    struct rmsg *m = &in->m[in->tail++ % INBOX];
    memset(m, 0, sizeof *m);
    m->n = n;
    for (size_t k = 0; k < n; k++)
        kp_buf_append(&m->f[k], fr[k].data, fr[k].len);
}

static inline size_t inbox_len(const struct inbox *in)
{
    return in->tail - in->head;
}

/* Moves the oldest message to *out; the caller frees it with rmsg_fini(). */
static inline void inbox_pop(struct inbox *in, struct rmsg *out)
{
    assert_true(inbox_len(in) > 0);
    *out = in->m[in->head++ % INBOX];
}

static inline void rmsg_fini(struct rmsg *m)
{
    for (size_t k = 0; k < m->n; k++)
        kp_buf_fini(&m->f[k]);
    m->n = 0;
}

static inline void inbox_fini(struct inbox *in)
{
    while (inbox_len(in)) {
        struct rmsg m;
        inbox_pop(in, &m);
        rmsg_fini(&m);
    }
}

static inline bool frame_is(const struct kp_buf *b, const char *s)
{
    return b->len == strlen(s) && memcmp(b->data, s, b->len) == 0;
}

/* ---- running the loop (struct fx is the including test's) ---------------------------- */

struct fx;

static inline void tick(uv_timer_t *t)
{
    (void)t;
}

typedef bool (*pred_fn)(struct fx *f, const void *arg);

/* Runs loop until pred(f, arg) or timeout_ms, with a 5 ms timer so that the loop wakes up to
 * look; returns pred's last value. */
static inline bool tu_run_until(uv_loop_t *loop, struct fx *f, pred_fn pred, const void *arg,
                                int timeout_ms)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, tick, 5, 5);
    uint64_t end = kp_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    bool ok;
    while (!(ok = pred(f, arg)) && kp_mono_ns() < end)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}

static inline bool never(struct fx *f, const void *arg)
{
    (void)f;
    (void)arg;
    return false;
}

/* ---- HTTP metrics -------------------------------------------------------------------- */

static inline size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    kp_buf_append(arg, p, size * n);
    return size * n;
}

/* GET http://127.0.0.1:port/metrics into body (NUL-terminated); returns the HTTP status. */
static inline long get_metrics(int port, struct kp_buf *body)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", port);
    kp_buf_reset(body);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    kp_buf_cstr(body);
    return status;
}

/* The value of one series (`name` or `name{labels}`) in exposition text; false if absent. */
static inline bool metric_in(const char *text, const char *series, double *v)
{
    size_t sl = strlen(series);
    for (const char *line = text; line && *line;) {
        if (strncmp(line, series, sl) == 0 && line[sl] == ' ') {
            *v = strtod(line + sl + 1, NULL);
            return true;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return false;
}

#endif /* TEST_UTIL_LOOP */

#endif
