/*
 * kp_err: the error codes of kaoping's shared library and daemons. A function that can fail
 * returns int: 0 on success, a negative KP_E* on failure (STYLE.md "Errors"). A refusal of
 * input is not an error: it is a reason code (kp_reason.h).
 */
#ifndef KP_ERR_H
#define KP_ERR_H

/* X(name, value, message) */
#define KP_ERRNO_MAP(X)                                                                            \
    X(EINVAL, -1, "invalid argument")                                                              \
    X(ENOMEM, -2, "out of memory")                                                                 \
    X(EIO, -3, "input/output error")                                                               \
    X(EAGAIN, -4, "resource temporarily unavailable")                                              \
    X(ECONFIG, -5, "configuration error")                                                          \
    X(EPROTO, -6, "protocol error")                                                                \
    X(EDB, -7, "database error")                                                                   \
    X(EZMQ, -8, "ZeroMQ error")                                                                    \
    X(EHOSTUNREACH, -9, "peer unreachable")                                                        \
    X(ENOENT, -10, "not found")                                                                    \
    X(EFULL, -11, "capacity reached")                                                              \
    X(ECLOSED, -12, "closed")                                                                      \
    X(ESCHEME, -13, "scheme error")

enum kp_err {
#define KP__ERR_ENUM(name, value, msg) KP_##name = (value),
    KP_ERRNO_MAP(KP__ERR_ENUM)
#undef KP__ERR_ENUM
};

/* Returns a static message for a KP_E* code (or "unknown error"). Thread-safe. */
const char *kp_strerror(int err);
/* Returns the static name ("EINVAL") of a KP_E* code. Thread-safe. */
const char *kp_err_name(int err);

/* Always-on invariant check that names file and line, kept under NDEBUG (STYLE.md "Errors").
 * Never use it on input from the wire, files, config or databases. */
#define KP_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            kp__assert_fail(#cond, __FILE__, __LINE__);                                            \
    } while (0)
_Noreturn void kp__assert_fail(const char *expr, const char *file, int line);

/* Allocation for small control objects: aborts on OOM (STYLE.md "Memory"). Anything sized by
 * input must be capped by the caller before it gets here. */
void *kp_xmalloc(unsigned long n);
void *kp_xcalloc(unsigned long n, unsigned long size);
void *kp_xrealloc(void *p, unsigned long n);
char *kp_xstrdup(const char *s);

#endif
