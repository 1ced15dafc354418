/*
 * kp_buf: a growable byte buffer used by encoders, the metrics renderer and SQL array
 * builders. Zero-initialise a struct kp_buf; free with kp_buf_fini(). Growth aborts on OOM
 * (a control object, STYLE.md "Memory"): callers cap what they append by input size first.
 */
#ifndef KP_BUF_H
#define KP_BUF_H

#include <stddef.h>
#include <stdint.h>

struct kp_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
};

void kp_buf_reserve(struct kp_buf *b, size_t extra);
void kp_buf_append(struct kp_buf *b, const void *data, size_t len);
void kp_buf_append_str(struct kp_buf *b, const char *s);
void kp_buf_printf(struct kp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Ensures data[len] == '\0' without counting it in len; returns data as a C string. */
const char *kp_buf_cstr(struct kp_buf *b);
void kp_buf_reset(struct kp_buf *b);
/* Resets, and gives the memory back when more than keep bytes are held (a buffer that grew
 * for one unusually large use does not keep that size for good). */
void kp_buf_trim(struct kp_buf *b, size_t keep);
void kp_buf_fini(struct kp_buf *b);

#endif
