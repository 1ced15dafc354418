/*
 * kp_log: the logfmt logger every daemon writes its stderr lines with (STYLE.md
 * "Configuration and logs"). Each line is `ts=… level=… comp=… inst=… code=…` followed by
 * the caller's pairs, assembled in one buffer and written with one write(2) so that lines of
 * concurrent threads never interleave. Identical lines (same level, code and text) repeating
 * within one second are rate-limited: the first is written, repeats are counted, and once the
 * window has ended one copy of the line is written again with `suppressed=N` appended. The
 * summary is written by the next log call after the window ends (or by kp_log_flush()), so a
 * storm of one message costs at most two lines a second and nothing is silently lost.
 */
#include "kp_log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "kp_err.h"
#include "kp_time.h"

#define LOG_LINE_MAX 8192 /* one line, newline included; longer text is truncated */
#define LOG_NAME_MAX 160  /* quoted component / instance */
#define RL_SLOTS     64   /* rate-limit windows tracked at once */
#define RL_WINDOW_NS 1000000000ull

struct rl_slot {
    bool used;
    int level;
    uint64_t hash;
    char *tail; /* "code=… text", heap, grows to the longest line seen in this slot */
    size_t tail_len, tail_cap;
    uint64_t start_ns;
    uint64_t suppressed;
};

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_int log_level = KP_LOG_INFO;
static char log_comp[LOG_NAME_MAX] = "kaoping";
static char log_inst[LOG_NAME_MAX] = "-";
static struct rl_slot rl_slots[RL_SLOTS];
static uint64_t (*log_clock)(void) = kp_mono_ns;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static const char *level_name(int level)
{
    if (level < KP_LOG_DEBUG || level > KP_LOG_ERROR)
        return "error";
    return level_names[level];
}

void kp_log_init(const char *component, const char *instance, enum kp_log_level level)
{
    pthread_mutex_lock(&log_mu);
    kp_log_q(log_comp, sizeof log_comp, component && *component ? component : "kaoping");
    kp_log_q(log_inst, sizeof log_inst, instance && *instance ? instance : "-");
    pthread_mutex_unlock(&log_mu);
    atomic_store(&log_level, (int)level);
}

void kp_log_set_level(enum kp_log_level level)
{
    atomic_store(&log_level, (int)level);
}

int kp_log_level_parse(const char *s, enum kp_log_level *out)
{
    if (!s)
        return KP_EINVAL;
    for (int i = KP_LOG_DEBUG; i <= KP_LOG_ERROR; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum kp_log_level)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = KP_LOG_WARN;
        return 0;
    }
    return KP_EINVAL;
}

bool kp_log_enabled(enum kp_log_level level)
{
    return (int)level >= atomic_load_explicit(&log_level, memory_order_relaxed);
}

/* --- quoting ------------------------------------------------------------------------------ */

static bool needs_quotes(const char *s)
{
    if (!*s)
        return true;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p <= ' ' || *p == '=' || *p == '"' || *p == '\\' || *p == 0x7f)
            return true;
    }
    return false;
}

/* Length of the UTF-8 sequence led by c (1 for ASCII and for stray bytes). */
static size_t utf8_len(unsigned char c)
{
    if (c >= 0xf0 && c < 0xf8)
        return 4;
    if (c >= 0xe0)
        return c < 0xf0 ? 3 : 1;
    if (c >= 0xc0)
        return 2;
    return 1;
}

const char *kp_log_q(char *buf, size_t buflen, const char *s)
{
    if (!buf || buflen == 0)
        return buf;
    if (!s)
        s = "";
    size_t n = strlen(s);
    if (!needs_quotes(s)) {
        size_t k = n < buflen - 1 ? n : buflen - 1;
        /* do not cut a UTF-8 sequence in half */
        while (k < n && k > 0 && ((unsigned char)s[k] & 0xc0) == 0x80)
            k--;
        memcpy(buf, s, k);
        buf[k] = 0;
        return buf;
    }
    if (buflen < 3) { /* no room for even "" */
        buf[0] = 0;
        return buf;
    }
    size_t o = 0;
    size_t room = buflen - 2; /* keep space for the closing quote and the NUL */
    buf[o++] = '"';
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        size_t elen;
        size_t consumed = 1;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            elen = 2;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            esc[0] = '\\';
            esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
            elen = 2;
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            elen = 6;
        } else {
            consumed = utf8_len(c);
            if (consumed > n - i)
                consumed = 1;
            memcpy(esc, s + i, consumed);
            elen = consumed;
        }
        if (o + elen > room)
            break;
        memcpy(buf + o, esc, elen);
        o += elen;
        i += consumed;
    }
    buf[o++] = '"';
    buf[o] = 0;
    return buf;
}

/* --- output ------------------------------------------------------------------------------- */

static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* stderr is gone: nothing sensible left to do */
        }
        p += w;
        n -= (size_t)w;
    }
}

/* "2026-11-23T17:12:44.123Z" */
static void format_ts(char *out, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000));
}

/* Writes one full line: prefix, tail and an optional suppressed count. Holds log_mu. */
static void write_line(int level, const char *tail, size_t tail_len, uint64_t suppressed)
{
    char line[LOG_LINE_MAX];
    char ts[96];
    format_ts(ts, sizeof ts);
    int p = snprintf(line, sizeof line, "ts=%s level=%s comp=%s inst=%s ", ts, level_name(level),
                     log_comp, log_inst);
    if (p < 0)
        return;
    size_t o = (size_t)p;
    char sup[40] = "";
    if (suppressed)
        snprintf(sup, sizeof sup, " suppressed=%llu", (unsigned long long)suppressed);
    size_t sup_len = strlen(sup);
    size_t room = sizeof line - o - sup_len - 1; /* newline */
    size_t n = tail_len < room ? tail_len : room;
    memcpy(line + o, tail, n);
    o += n;
    memcpy(line + o, sup, sup_len);
    o += sup_len;
    line[o++] = '\n';
    write_all(line, o);
}

static uint64_t fnv1a(int level, const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    h = (h ^ (uint64_t)(level + 1)) * 1099511628211ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static void slot_end(struct rl_slot *sl)
{
    if (sl->used && sl->suppressed)
        write_line(sl->level, sl->tail, sl->tail_len, sl->suppressed);
    sl->used = false;
    sl->suppressed = 0;
}

/* Ends every window older than one second, writing its summary. Holds log_mu. */
static void sweep(uint64_t now)
{
    for (size_t i = 0; i < RL_SLOTS; i++) {
        struct rl_slot *sl = &rl_slots[i];
        if (sl->used && now - sl->start_ns >= RL_WINDOW_NS)
            slot_end(sl);
    }
}

void kp_log_emit(enum kp_log_level level, const char *code, const char *fmt, ...)
{
    if (!kp_log_enabled(level))
        return;
    char tail[LOG_LINE_MAX];
    int n = snprintf(tail, sizeof tail, "code=%s", code && *code ? code : "-");
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof tail ? (size_t)n : sizeof tail - 1;
    if (fmt && *fmt && len < sizeof tail - 2) {
        va_list ap;
        va_start(ap, fmt);
        tail[len] = ' ';
        int m = vsnprintf(tail + len + 1, sizeof tail - len - 1, fmt, ap);
        va_end(ap);
        if (m > 0) {
            size_t room = sizeof tail - len - 2;
            len += 1 + ((size_t)m < room ? (size_t)m : room);
        }
    }
    tail[len] = 0;
    /* one record, one line: control characters (a stray newline) become spaces */
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)tail[i] < 0x20 || tail[i] == 0x7f)
            tail[i] = ' ';
    }

    pthread_mutex_lock(&log_mu);
    uint64_t now = log_clock();
    sweep(now);
    uint64_t h = fnv1a((int)level, tail, len);
    struct rl_slot *sl = NULL;
    struct rl_slot *free_sl = NULL;
    struct rl_slot *oldest = &rl_slots[0];
    for (size_t i = 0; i < RL_SLOTS; i++) {
        struct rl_slot *c = &rl_slots[i];
        if (!c->used) {
            if (!free_sl)
                free_sl = c;
            continue;
        }
        if (c->hash == h && c->level == (int)level && c->tail_len == len &&
            memcmp(c->tail, tail, len) == 0) {
            sl = c;
            break;
        }
        if (c->start_ns < oldest->start_ns)
            oldest = c;
    }
    if (sl) { /* a repeat inside its window */
        sl->suppressed++;
        pthread_mutex_unlock(&log_mu);
        return;
    }
    sl = free_sl ? free_sl : oldest;
    slot_end(sl); /* every slot busy: the oldest window ends early */
    write_line((int)level, tail, len, 0);
    if (sl->tail_cap < len + 1) {
        sl->tail = kp_xrealloc(sl->tail, len + 1);
        sl->tail_cap = len + 1;
    }
    memcpy(sl->tail, tail, len + 1);
    sl->tail_len = len;
    sl->hash = h;
    sl->level = (int)level;
    sl->start_ns = now;
    sl->suppressed = 0;
    sl->used = true;
    pthread_mutex_unlock(&log_mu);
}

void kp_log_flush(void)
{
    pthread_mutex_lock(&log_mu);
    for (size_t i = 0; i < RL_SLOTS; i++)
        slot_end(&rl_slots[i]);
    pthread_mutex_unlock(&log_mu);
}

void kp__log_set_clock(uint64_t (*mono_ns)(void))
{
    pthread_mutex_lock(&log_mu);
    log_clock = mono_ns ? mono_ns : kp_mono_ns;
    for (size_t i = 0; i < RL_SLOTS; i++) {
        rl_slots[i].used = false;
        rl_slots[i].suppressed = 0;
    }
    pthread_mutex_unlock(&log_mu);
}
