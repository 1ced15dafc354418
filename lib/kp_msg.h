/*
 * kp_msg: encoder and strict decoder of every PROTOCOL.md v1 message (hello, welcome, batch,
 * ack, nack, ping, pong) and of kaoping's internal control messages between broker and
 * scorers (reg, hb). Decoding validates the whole frame before anything sized by it is
 * allocated: declared array/map counts are checked against the bytes left and nesting depth
 * is bounded, so a 5-byte frame cannot reserve gigabytes (ARCHITECTURE.md guarantee 4).
 *
 * Batch-level defects (unreadable frame, wrong version, missing/mistyped batch field, too
 * many observations) make the decode fail with a reason for a nack. Observation-level
 * defects (bad code, bad period, NaN, overlong ref, ...) do not: each observation carries its
 * own reason so that the good ones of the same batch go on (PROTOCOL.md "ack" rej[]).
 *
 * All functions are pure and thread-safe; none blocks.
 */
#ifndef KP_MSG_H
#define KP_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kp_buf.h"
#include "kp_reason.h"

#define KP_PROTO_VERSION 1
#define KP_CODE_MAX 64    /* PROTOCOL.md: codes are 1-64 bytes of [A-Za-z0-9._:-] */
#define KP_REF_MAX 256    /* PROTOCOL.md: ref str <= 256 */
#define KP_PERIOD_MAX 10  /* longest period: YYYY-MM-DD */
#define KP_MSG_TEXT_MAX 256 /* nack/rej msg, sw string */
#define KP_X_MAX 4096     /* encoded bytes of one observation's x map */
#define KP_DEPTH_MAX 16   /* msgpack nesting accepted anywhere in a frame */

/* Defaults for the limits a collector announces in `welcome`. */
#define KP_DEFAULT_MAX_BYTES (4u * 1024u * 1024u)
#define KP_DEFAULT_MAX_OBS 10000u
#define KP_DEFAULT_MAX_INFLIGHT 8u
#define KP_DEFAULT_HB_MS 1000u

enum kp_msg_type {
    KP_MSG_UNKNOWN = 0,
    KP_MSG_HELLO,
    KP_MSG_WELCOME,
    KP_MSG_BATCH,
    KP_MSG_ACK,
    KP_MSG_NACK,
    KP_MSG_PING,
    KP_MSG_PONG,
    KP_MSG_REG, /* internal: scorer -> broker {t:"reg", v, sid, schemes:[str]} */
    KP_MSG_HB,  /* internal: scorer -> broker {t:"hb", v, sid} */
};

/* Period kinds of the PROTOCOL.md grammar. */
enum kp_period_kind {
    KP_PERIOD_YEAR,  /* YYYY */
    KP_PERIOD_HALF,  /* YYYY-Hn, n in 1..2 */
    KP_PERIOD_QUARTER, /* YYYY-Qn, n in 1..4 */
    KP_PERIOD_MONTH, /* YYYY-MM, 01..12 */
    KP_PERIOD_DAY,   /* YYYY-MM-DD, a real calendar day */
};

/* One observation, copied out of the frame (nothing points into the frame buffer except
 * `x`, see below). Strings are NUL-terminated. When `reason` != KP_R_OK the observation was
 * refused; fields that could be read are still filled (ref, for the rejection row). */
struct kp_obs {
    char u[KP_CODE_MAX + 1];
    char i[KP_CODE_MAX + 1];
    char p[KP_PERIOD_MAX + 1];
    char ref[KP_REF_MAX + 1];
    double val;      /* always set; an integer value is converted exactly when |v| < 2^53 */
    uint64_t rev;    /* default 0 */
    int64_t at;      /* ms since epoch; default: the batch's `sent` */
    double w;        /* default 1 */
    const uint8_t *x; /* raw msgpack bytes of `x` inside the decoded frame, or NULL */
    size_t x_len;
    enum kp_reason reason;
    char msg[KP_MSG_TEXT_MAX]; /* human message for a refusal, "" when ok */
};

/* A decoded batch. Caller owns it; free with kp_batch_destroy(). */
struct kp_batch {
    char aid[KP_CODE_MAX + 1];
    char scheme[KP_CODE_MAX + 1];
    char src[KP_CODE_MAX + 1];
    uint64_t seq;
    int64_t sent;
    size_t n_obs;
    struct kp_obs *obs; /* n_obs entries */
    size_t n_rejected;  /* observations with reason != KP_R_OK */
};

/* One entry of an ack's rej[]. */
struct kp_rej {
    uint32_t n;
    enum kp_reason code;
    const char *msg;
};

struct kp_ack {
    uint64_t seq;
    uint64_t stored;
    bool dup;
    size_t n_rej;
    struct kp_rej *rej; /* decode: owned by the struct, free with kp_ack_fini() */
};

struct kp_nack {
    bool has_seq; /* false: seq is nil on the wire */
    uint64_t seq;
    enum kp_reason code;
    char msg[KP_MSG_TEXT_MAX];
    bool retry;
};

struct kp_hello {
    char aid[KP_CODE_MAX + 1];
    char scheme[KP_CODE_MAX + 1];
    char sw[KP_MSG_TEXT_MAX];
};

struct kp_welcome {
    uint32_t max_bytes;
    uint32_t max_obs;
    uint32_t max_inflight;
    uint32_t hb_ms;
};

#define KP_REG_MAX_SCHEMES 64
struct kp_reg {
    char sid[KP_CODE_MAX + 1];
    size_t n_schemes;                         /* reg only; 0 for hb */
    char schemes[KP_REG_MAX_SCHEMES][KP_CODE_MAX + 1];
};

/* Limits a decoder enforces. */
struct kp_msg_limits {
    size_t max_bytes; /* whole frame */
    size_t max_obs;   /* observations per batch */
};


/* ---- decoding ----------------------------------------------------------------------- */

/* Reads only `t` and `v` of a frame after a full structural check (counts vs bytes left,
 * depth, no trailing bytes). Returns KP_R_OK and sets *type, or the reason the frame is
 * refused (bad_msgpack, bad_version, bad_type, missing_field, too_large). */
enum kp_reason kp_msg_peek(const void *frame, size_t len, size_t max_bytes,
                           enum kp_msg_type *type);

/* Decodes and validates a batch. On success returns KP_R_OK and *out (caller owns; destroy
 * with kp_batch_destroy). On a batch-level refusal returns the reason, writes a human message
 * to msg (msg_len bytes), sets *seq_out and *has_seq when a valid integer seq could be read (for
 * the nack), and *out stays NULL. Observation-level defects are reported per observation.
 * `x` pointers of the observations point into `frame`, which must outlive the batch's use. */
enum kp_reason kp_batch_decode(const void *frame, size_t len, const struct kp_msg_limits *lim,
                               struct kp_batch **out, bool *has_seq, uint64_t *seq_out,
                               char *msg, size_t msg_len);
void kp_batch_destroy(struct kp_batch **b);

enum kp_reason kp_ack_decode(const void *frame, size_t len, struct kp_ack *out);
void kp_ack_fini(struct kp_ack *a);
enum kp_reason kp_nack_decode(const void *frame, size_t len, struct kp_nack *out);
enum kp_reason kp_hello_decode(const void *frame, size_t len, struct kp_hello *out);
enum kp_reason kp_welcome_decode(const void *frame, size_t len, struct kp_welcome *out);
/* ping and pong: *n is the echoed number. */
enum kp_reason kp_ping_decode(const void *frame, size_t len, bool *is_pong, uint64_t *n);
/* reg and hb (internal). */
enum kp_reason kp_reg_decode(const void *frame, size_t len, bool *is_hb, struct kp_reg *out);

/* ---- validation helpers (also used by adapters before sending) ----------------------- */

/* 1-64 bytes of [A-Za-z0-9._:-]. */
bool kp_code_valid(const char *s, size_t len);
/* PROTOCOL.md period grammar; sets *kind when valid (kind may be NULL). */
bool kp_period_valid(const char *s, size_t len, enum kp_period_kind *kind);
/* Well-formed UTF-8 without NUL bytes. */
bool kp_utf8_valid(const char *s, size_t len);
/* An observation's x as the decoder accepts it: one msgpack map of at most KP_X_MAX bytes,
 * nesting <= KP_DEPTH_MAX, string keys, no binary or ext, strings UTF-8 without NUL (so that
 * kp_msgpack_to_json() succeeds on it). */
bool kp_x_valid(const uint8_t *x, size_t len);

/* ---- encoding: each appends one complete frame to an empty or reset buffer ----------- */
/* Return 0 or KP_EINVAL (an invalid code, period or non-finite value in the input). */

int kp_batch_encode(struct kp_buf *out, const struct kp_batch *b);
int kp_ack_encode(struct kp_buf *out, const struct kp_ack *a);
int kp_nack_encode(struct kp_buf *out, const struct kp_nack *n);
int kp_hello_encode(struct kp_buf *out, const struct kp_hello *h);
int kp_welcome_encode(struct kp_buf *out, const struct kp_welcome *w);
int kp_ping_encode(struct kp_buf *out, bool pong, uint64_t n);
int kp_reg_encode(struct kp_buf *out, bool hb, const struct kp_reg *r);

/* Converts msgpack bytes (an observation's x) to JSON text for storage (jsonb). Writes a
 * NUL-terminated string to out; returns 0 or KP_EINVAL. */
int kp_msgpack_to_json(const uint8_t *mp, size_t len, struct kp_buf *out);

#endif
