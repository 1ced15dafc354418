/*
 * kp_log: logfmt logging to stderr. Every line carries time, level, component, instance and a
 * stable event code: `ts=2026-11-23T17:12:44.123Z level=info comp=scorer inst=anshan
 * code=batch_committed adapter=stats scheme=anshan-2015 seq=12 stored=70`. The macros check
 * the level before formatting. Identical (code, text) lines repeating within one second are
 * rate-limited and summarised. Thread-safe (one write(2) per line).
 */
#ifndef KP_LOG_H
#define KP_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum kp_log_level { KP_LOG_DEBUG = 0, KP_LOG_INFO, KP_LOG_WARN, KP_LOG_ERROR };

/* Sets component ("scorer") and instance ("anshan"); strings are copied. Call once from
 * main before any other thread starts. */
void kp_log_init(const char *component, const char *instance, enum kp_log_level level);
void kp_log_set_level(enum kp_log_level level);
/* Parses "debug|info|warn|error"; returns 0 or KP_EINVAL. */
int kp_log_level_parse(const char *s, enum kp_log_level *out);
bool kp_log_enabled(enum kp_log_level level);

/* Emits one line. `fmt` formats the rest of the line as logfmt pairs ("seq=%llu"); use
 * kp_log_q() to quote a free-text value. */
void kp_log_emit(enum kp_log_level level, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Quotes s as a logfmt value into buf ("a b" -> "\"a b\"", escapes " and \ and control
 * characters); returns buf. Truncates to buflen. */
const char *kp_log_q(char *buf, size_t buflen, const char *s);

/* Writes the `suppressed=N` summary line of every rate-limit window that still holds
 * suppressed repeats (summaries are otherwise written lazily, by the next line logged after
 * the window ends). Call before exit. Thread-safe. */
void kp_log_flush(void);

/* Test hook: replaces the monotonic clock used for rate limiting (NULL restores
 * kp_mono_ns) and forgets all rate-limit windows without writing their summaries. */
void kp__log_set_clock(uint64_t (*mono_ns)(void));

#define KP_LOG(level, code, ...)                                                                   \
    do {                                                                                           \
        if (kp_log_enabled(level))                                                                 \
            kp_log_emit(level, code, __VA_ARGS__);                                                 \
    } while (0)
#define KP_DEBUG(code, ...) KP_LOG(KP_LOG_DEBUG, code, __VA_ARGS__)
#define KP_INFO(code, ...) KP_LOG(KP_LOG_INFO, code, __VA_ARGS__)
#define KP_WARN(code, ...) KP_LOG(KP_LOG_WARN, code, __VA_ARGS__)
#define KP_ERROR(code, ...) KP_LOG(KP_LOG_ERROR, code, __VA_ARGS__)

#endif
