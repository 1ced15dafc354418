/*
 * Unit tests of kp_log: exact logfmt lines (captured by pointing fd 2 at a temporary file),
 * level filtering, kp_log_q quoting and truncation, rate limiting with a fake clock, and
 * whole lines under concurrent writers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kp_err.h"
#include "kp_log.h"

static int saved_fd = -1;
static int cap_fd = -1;
static char cap_path[64];
static char *captured;

static void capture_begin(void)
{
    strcpy(cap_path, "/tmp/kp_log_test_XXXXXX");
    cap_fd = mkstemp(cap_path);
    assert_true(cap_fd >= 0);
    fflush(stderr);
    saved_fd = dup(2);
    assert_true(saved_fd >= 0);
    assert_int_equal(dup2(cap_fd, 2), 2);
}

/* Restores fd 2 and returns everything written meanwhile (owned by the test file). */
static const char *capture_end(void)
{
    dup2(saved_fd, 2);
    close(saved_fd);
    saved_fd = -1;
    free(captured);
    off_t end = lseek(cap_fd, 0, SEEK_END);
    captured = calloc(1, (size_t)end + 1);
    assert_non_null(captured);
    assert_int_equal(pread(cap_fd, captured, (size_t)end, 0), end);
    close(cap_fd);
    cap_fd = -1;
    unlink(cap_path);
    return captured;
}

/* Replaces every "ts=<ISO-8601 UTC ms>" by "ts=T" after checking its shape. */
static char *strip_ts(const char *in)
{
    regex_t re;
    assert_int_equal(regcomp(&re,
                             "^ts=[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]"
                             "\\.[0-9]{3}Z ",
                             REG_EXTENDED),
                     0);
    size_t n = strlen(in);
    char *out = calloc(1, n + 1);
    assert_non_null(out);
    const char *p = in;
    char *o = out;
    while (*p) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl); /* every line ends with a newline */
        regmatch_t m;
        char line[9000];
        size_t len = (size_t)(nl - p);
        assert_true(len < sizeof line);
        memcpy(line, p, len);
        line[len] = 0;
        assert_int_equal(regexec(&re, line, 1, &m, 0), 0);
        o += sprintf(o, "ts=T %s\n", line + m.rm_eo);
        p = nl + 1;
    }
    regfree(&re);
    return out;
}

static void assert_log(const char *got, const char *want)
{
    char *s = strip_ts(got);
    assert_string_equal(s, want);
    free(s);
}

static uint64_t fake_now;
static uint64_t fake_clock(void)
{
    return fake_now;
}

static int setup(void **state)
{
    (void)state;
    kp_log_init("scorer", "anshan", KP_LOG_INFO);
    fake_now = 1000000000ull;
    kp__log_set_clock(fake_clock);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (saved_fd >= 0)
        capture_end();
    kp__log_set_clock(NULL);
    free(captured);
    captured = NULL;
    return 0;
}

static void test_line_format(void **state)
{
    (void)state;
    capture_begin();
    KP_INFO("batch_committed", "adapter=%s scheme=%s seq=%d stored=%d", "stats", "anshan-2015", 12,
            70);
    KP_ERROR("pg_down", "sqlstate=%s", "08006");
    KP_WARN("bare", "%s", "");
    assert_log(capture_end(),
               "ts=T level=info comp=scorer inst=anshan code=batch_committed adapter=stats "
               "scheme=anshan-2015 seq=12 stored=70\n"
               "ts=T level=error comp=scorer inst=anshan code=pg_down sqlstate=08006\n"
               "ts=T level=warn comp=scorer inst=anshan code=bare\n");
}

static void test_levels(void **state)
{
    (void)state;
    capture_begin();
    KP_DEBUG("hidden", "a=%d", 1);
    assert_false(kp_log_enabled(KP_LOG_DEBUG));
    assert_true(kp_log_enabled(KP_LOG_INFO));
    kp_log_set_level(KP_LOG_DEBUG);
    KP_DEBUG("shown", "a=%d", 2);
    kp_log_set_level(KP_LOG_ERROR);
    KP_WARN("hidden", "a=%d", 3);
    kp_log_emit(KP_LOG_INFO, "hidden", "a=%d", 4); /* the function checks the level too */
    KP_ERROR("shown", "a=%d", 5);
    kp_log_set_level(KP_LOG_INFO);
    assert_log(capture_end(), "ts=T level=debug comp=scorer inst=anshan code=shown a=2\n"
                              "ts=T level=error comp=scorer inst=anshan code=shown a=5\n");

    enum kp_log_level l = KP_LOG_ERROR;
    assert_int_equal(kp_log_level_parse("debug", &l), 0);
    assert_int_equal(l, KP_LOG_DEBUG);
    assert_int_equal(kp_log_level_parse("INFO", &l), 0);
    assert_int_equal(l, KP_LOG_INFO);
    assert_int_equal(kp_log_level_parse("warn", &l), 0);
    assert_int_equal(l, KP_LOG_WARN);
    assert_int_equal(kp_log_level_parse("error", &l), 0);
    assert_int_equal(l, KP_LOG_ERROR);
    assert_int_equal(kp_log_level_parse("loud", &l), KP_EINVAL);
    assert_int_equal(kp_log_level_parse(NULL, &l), KP_EINVAL);
    assert_int_equal(l, KP_LOG_ERROR);
}

static void test_component_instance_quoted(void **state)
{
    (void)state;
    kp_log_init("adapter", "fin ance", KP_LOG_INFO);
    capture_begin();
    KP_INFO("started", "pid=%d", 7);
    assert_log(capture_end(),
               "ts=T level=info comp=adapter inst=\"fin ance\" code=started pid=7\n");
    kp_log_init("scorer", "anshan", KP_LOG_INFO);
}

static void test_control_chars_stay_on_one_line(void **state)
{
    (void)state;
    capture_begin();
    KP_INFO("oops", "msg=%s", "two\nlines\r");
    assert_log(capture_end(), "ts=T level=info comp=scorer inst=anshan code=oops msg=two lines \n");
}

static void test_quote(void **state)
{
    (void)state;
    char b[64];
    assert_string_equal(kp_log_q(b, sizeof b, "plain"), "plain");
    assert_string_equal(kp_log_q(b, sizeof b, "a b"), "\"a b\"");
    assert_string_equal(kp_log_q(b, sizeof b, ""), "\"\"");
    assert_string_equal(kp_log_q(b, sizeof b, NULL), "\"\"");
    assert_string_equal(kp_log_q(b, sizeof b, "k=v"), "\"k=v\"");
    assert_string_equal(kp_log_q(b, sizeof b, "say \"hi\""), "\"say \\\"hi\\\"\"");
    assert_string_equal(kp_log_q(b, sizeof b, "C:\\dir"), "\"C:\\\\dir\"");
    assert_string_equal(kp_log_q(b, sizeof b, "l1\nl2\tx\r"), "\"l1\\nl2\\tx\\r\"");
    assert_string_equal(kp_log_q(b, sizeof b, "bell\a"), "\"bell\\u0007\"");
    assert_string_equal(kp_log_q(b, sizeof b, "财政局"), "财政局");
    assert_string_equal(kp_log_q(b, sizeof b, "财政 局"), "\"财政 局\"");
    assert_ptr_equal(kp_log_q(b, sizeof b, "x"), b);

    /* truncation keeps the result well formed: closing quote, whole escapes, whole UTF-8 */
    char s[8];
    assert_string_equal(kp_log_q(s, sizeof s, "abcdefghij"), "abcdefg");
    assert_string_equal(kp_log_q(s, sizeof s, "a b c d e f"), "\"a b c\"");
    assert_string_equal(kp_log_q(s, sizeof s, "a\"\"\"\""), "\"a\\\"\\\"\"");
    assert_string_equal(kp_log_q(s, sizeof s, "a \n\n\n"), "\"a \\n\"");
    assert_string_equal(kp_log_q(s, sizeof s, "财政局"), "财政");     /* 6 bytes + NUL */
    assert_string_equal(kp_log_q(s, sizeof s, " 财政局"), "\" 财\""); /* 6 bytes + NUL */
    char t[3];
    assert_string_equal(kp_log_q(t, sizeof t, "a b"), "\"\"");
    assert_string_equal(kp_log_q(t, 2, "a b"), "");
    assert_string_equal(kp_log_q(t, 1, "ab"), "");
    assert_null(kp_log_q(NULL, 0, "ab"));
}

static void test_rate_limit(void **state)
{
    (void)state;
    capture_begin();
    for (int i = 0; i < 5; i++) {
        KP_WARN("slow_db", "ms=%d", 900);
        fake_now += 100000000ull; /* 0.1 s */
    }
    /* same code, other text; same text, other level: not identical */
    KP_WARN("slow_db", "ms=%d", 901);
    KP_ERROR("slow_db", "ms=%d", 900);
    KP_ERROR("slow_db", "ms=%d", 900);
    fake_now += 600000000ull;         /* 1.1 s after the first line */
    KP_INFO("tick", "n=%d", 1);       /* ends the first window: its summary comes first */
    KP_WARN("slow_db", "ms=%d", 900); /* a new window opens */
    KP_WARN("slow_db", "ms=%d", 900);
    KP_WARN("slow_db", "ms=%d", 900);
    kp_log_flush();
    kp_log_flush();                   /* nothing pending any more */
    KP_WARN("slow_db", "ms=%d", 900); /* flushed windows are closed: printed again */
    assert_log(capture_end(),
               "ts=T level=warn comp=scorer inst=anshan code=slow_db ms=900\n"
               "ts=T level=warn comp=scorer inst=anshan code=slow_db ms=901\n"
               "ts=T level=error comp=scorer inst=anshan code=slow_db ms=900\n"
               "ts=T level=warn comp=scorer inst=anshan code=slow_db ms=900 suppressed=4\n"
               "ts=T level=info comp=scorer inst=anshan code=tick n=1\n"
               "ts=T level=warn comp=scorer inst=anshan code=slow_db ms=900\n"
               /* kp_log_flush: the error window (opened at 1.5 s) is still open */
               "ts=T level=error comp=scorer inst=anshan code=slow_db ms=900 suppressed=1\n"
               "ts=T level=warn comp=scorer inst=anshan code=slow_db ms=900 suppressed=2\n"
               "ts=T level=warn comp=scorer inst=anshan code=slow_db ms=900\n");
}

static void test_rate_limit_window_without_repeats(void **state)
{
    (void)state;
    capture_begin();
    KP_INFO("once", "a=%d", 1);
    fake_now += 2000000000ull;
    KP_INFO("once", "a=%d", 1); /* window ended with nothing suppressed: no summary */
    KP_INFO("once", "a=%d", 1);
    fake_now += 999999999ull;
    KP_INFO("once", "a=%d", 1); /* still inside the second window */
    fake_now += 1ull;
    KP_INFO("other", "a=%d", 2);
    assert_log(capture_end(), "ts=T level=info comp=scorer inst=anshan code=once a=1\n"
                              "ts=T level=info comp=scorer inst=anshan code=once a=1\n"
                              "ts=T level=info comp=scorer inst=anshan code=once a=1 "
                              "suppressed=2\n"
                              "ts=T level=info comp=scorer inst=anshan code=other a=2\n");
}

static void test_long_line_truncated(void **state)
{
    (void)state;
    char *big = malloc(20000);
    assert_non_null(big);
    memset(big, 'x', 19999);
    big[19999] = 0;
    capture_begin();
    KP_INFO("big", "v=%s", big);
    const char *out = capture_end();
    size_t n = strlen(out);
    assert_true(n <= 8192);
    assert_true(n > 8000);
    assert_int_equal(out[n - 1], '\n');
    assert_non_null(strstr(out, "code=big v=xxxx"));
    free(big);
}

#define THREADS    4
#define PER_THREAD 2000

static void *writer(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < PER_THREAD; i++)
        KP_INFO("concurrent", "thread=%d i=%d pad=%s", t, i,
                "....................................................................");
    return NULL;
}

static void test_threads_whole_lines(void **state)
{
    (void)state;
    capture_begin();
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, writer, (void *)(intptr_t)t), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    char *s = strip_ts(capture_end()); /* checks every line's shape */
    int lines = 0;
    int seen[THREADS] = {0};
    for (char *p = s; *p;) {
        char *nl = strchr(p, '\n');
        *nl = 0;
        int t, i;
        assert_int_equal(sscanf(p,
                                "ts=T level=info comp=scorer inst=anshan code=concurrent "
                                "thread=%d i=%d",
                                &t, &i),
                         2);
        assert_int_equal(i, seen[t]); /* each thread's lines in its order */
        seen[t]++;
        lines++;
        p = nl + 1;
    }
    assert_int_equal(lines, THREADS * PER_THREAD);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_line_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_component_instance_quoted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_control_chars_stay_on_one_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quote, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit_window_without_repeats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_line_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_whole_lines, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
