/*
 * kp_buf: growable byte buffer (see kp_buf.h).
 */
#include "kp_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_err.h"

void kp_buf_reserve(struct kp_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1; /* room for a terminating NUL */
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    b->data = kp_xrealloc(b->data, cap);
    b->cap = cap;
}

void kp_buf_append(struct kp_buf *b, const void *data, size_t len)
{
    kp_buf_reserve(b, len);
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = 0;
}

void kp_buf_append_str(struct kp_buf *b, const char *s)
{
    kp_buf_append(b, s, strlen(s));
}

void kp_buf_printf(struct kp_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    kp_buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

const char *kp_buf_cstr(struct kp_buf *b)
{
    kp_buf_reserve(b, 0);
    b->data[b->len] = 0;
    return (const char *)b->data;
}

void kp_buf_reset(struct kp_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = 0;
}

void kp_buf_trim(struct kp_buf *b, size_t keep)
{
    if (b->cap > keep)
        kp_buf_fini(b);
    else
        kp_buf_reset(b);
}

void kp_buf_fini(struct kp_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
