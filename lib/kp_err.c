/*
 * kp_err: error strings from the KP_ERRNO_MAP table, the always-on assert and the aborting
 * allocators for small control objects (STYLE.md "Errors", "Memory").
 */
#include "kp_err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *kp_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
#define KP__ERR_MSG(name, value, msg)                                                              \
    case value:                                                                                    \
        return msg;
        KP_ERRNO_MAP(KP__ERR_MSG)
#undef KP__ERR_MSG
    default:
        return "unknown error";
    }
}

const char *kp_err_name(int err)
{
    switch (err) {
    case 0:
        return "OK";
#define KP__ERR_NAME(name, value, msg)                                                             \
    case value:                                                                                    \
        return #name;
        KP_ERRNO_MAP(KP__ERR_NAME)
#undef KP__ERR_NAME
    default:
        return "EUNKNOWN";
    }
}

void kp__assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "level=error code=assert_failed file=%s line=%d expr=\"%s\"\n", file, line,
            expr);
    abort();
}

void *kp_xmalloc(unsigned long n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        kp__assert_fail("out of memory", __FILE__, __LINE__);
    return p;
}

void *kp_xcalloc(unsigned long n, unsigned long size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        kp__assert_fail("out of memory", __FILE__, __LINE__);
    return p;
}

void *kp_xrealloc(void *p, unsigned long n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        kp__assert_fail("out of memory", __FILE__, __LINE__);
    return q;
}

char *kp_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = kp_xmalloc(n);
    memcpy(p, s, n);
    return p;
}
