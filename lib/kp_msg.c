/*
 * kp_msg: the strict decoder of every PROTOCOL.md v1 message, the validation helpers and the
 * msgpack-to-JSON conversion of an observation's `x` (the encoders are in kp_msg_enc.c). It
 * sits at the very edge of the pipeline: the collector runs it on every frame an adapter
 * sends, the scorer on every batch it scores, the adapters on every reply. It serves
 * ARCHITECTURE.md guarantee 4 ("every refusal is visible", "the daemons keep running whatever
 * arrives on the wire"): every defect becomes a reason code, nothing aborts, and nothing sized
 * by the frame is allocated before it is checked.
 *
 * Decoding does not build a msgpack-c object tree (msgpack-c reserves memory from declared
 * array/map sizes, so a 5-byte frame could reserve gigabytes). Instead a cursor reads the raw
 * bytes in two steps: mp_scan() walks the whole frame once without allocating (exactly one
 * object, no trailing bytes, no ext types, every declared count within the bytes left, every
 * string inside the frame, nesting <= KP_DEPTH_MAX), then the message decoders read the fields
 * they know with the same cursor. The only allocations are the batch (one struct plus one
 * kp_obs per observation, capped by lim->max_obs and by the bytes of the frame) and an ack's
 * rej[] (capped by the bytes of the frame).
 *
 * Decisions the protocol page leaves open, applied to every message alike:
 *  - A map key that is not a string, or a known key given twice, is bad_msgpack (the frame is
 *    not "one msgpack map with string keys"). Duplicates of unknown keys are not looked for:
 *    unknown keys are ignored anyway, and finding them would cost O(n^2) or an allocation.
 *    Inside one observation the same rule gives that observation bad_msgpack.
 *  - An integer of the right kind but outside the field's domain (a negative seq/rev, a sent
 *    beyond int64, a welcome limit beyond uint32) is bad_field; a value that is not an
 *    integer at all (float, string, nil) is bad_type.
 *  - Nesting deeper than KP_DEPTH_MAX is too_large (it is well-formed msgpack over a limit).
 *  - An unknown `t` is bad_field; a `t` of another known type given to a typed decoder is
 *    bad_field too.
 *  - A nack or rej code that is not a known reason (or is "ok") is bad_field.
 */
#include "kp_msg.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_err.h"

#define INT_EXACT_MAX 9007199254740992.0 /* 2^53: integers up to here convert exactly */
#define INT_EXACT_MAX_U UINT64_C(9007199254740992)

/* ---- the cursor --------------------------------------------------------------------------- */

enum mp_kind { MP_NIL, MP_BOOL, MP_UINT, MP_NINT, MP_FLOAT, MP_STR, MP_BIN, MP_ARRAY, MP_MAP };

/* The head of one msgpack object. Strings and binaries include their body; arrays and maps
 * only their header (the reader stands on their first element). */
struct mp_obj {
    enum mp_kind kind;
    bool b;           /* MP_BOOL */
    uint64_t u;       /* MP_UINT: any integer >= 0, whatever its encoding */
    int64_t i;        /* MP_NINT: an integer < 0 */
    double f;         /* MP_FLOAT (float32 or float64) */
    const uint8_t *s; /* MP_STR, MP_BIN: body */
    uint32_t n;       /* MP_STR, MP_BIN: body bytes; MP_ARRAY: elements; MP_MAP: entries */
};

struct rd {
    const uint8_t *p;
    const uint8_t *end;
};

static size_t rd_left(const struct rd *r)
{
    return (size_t)(r->end - r->p);
}

static bool rd_take(struct rd *r, size_t n, const uint8_t **out)
{
    if (rd_left(r) < n)
        return false;
    *out = r->p;
    r->p += n;
    return true;
}

static uint64_t load_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t k = 0; k < n; k++)
        v = (v << 8) | p[k];
    return v;
}

/* Sign-extends the n-byte two's complement value v (n in 1, 2, 4, 8). */
static int64_t sign_extend(uint64_t v, size_t n)
{
    if (n < 8) {
        uint64_t sign = UINT64_C(1) << (n * 8 - 1);
        if (!(v & sign))
            return (int64_t)v;
        return -(int64_t)((UINT64_C(1) << (n * 8)) - v);
    }
    if (v <= (uint64_t)INT64_MAX)
        return (int64_t)v;
    return -(int64_t)(~v) - 1;
}

static bool rd_len(struct rd *r, size_t width, uint32_t *n)
{
    const uint8_t *q;
    if (!rd_take(r, width, &q))
        return false;
    *n = (uint32_t)load_be(q, width);
    return true;
}

static bool rd_body(struct rd *r, struct mp_obj *o, enum mp_kind kind, uint32_t n)
{
    o->kind = kind;
    o->n = n;
    return rd_take(r, n, &o->s); /* a declared length beyond the frame fails here */
}

static bool rd_int(struct rd *r, struct mp_obj *o, size_t width, bool is_signed)
{
    const uint8_t *q;
    if (!rd_take(r, width, &q))
        return false;
    uint64_t v = load_be(q, width);
    if (is_signed) {
        int64_t i = sign_extend(v, width);
        if (i < 0) {
            o->kind = MP_NINT;
            o->i = i;
            return true;
        }
        v = (uint64_t)i;
    }
    o->kind = MP_UINT;
    o->u = v;
    return true;
}

/* Reads one object head. False on truncation, on the reserved byte 0xc1 and on every ext
 * type (kaoping has none: timestamps are int64 ms). */
static bool rd_head(struct rd *r, struct mp_obj *o)
{
    const uint8_t *q;
    uint32_t n;
    memset(o, 0, sizeof *o);
    if (!rd_take(r, 1, &q))
        return false;
    uint8_t c = q[0];
    if (c <= 0x7f) {
        o->kind = MP_UINT;
        o->u = c;
        return true;
    }
    if (c >= 0xe0) {
        o->kind = MP_NINT;
        o->i = (int64_t)c - 256;
        return true;
    }
    if ((c & 0xf0) == 0x80) {
        o->kind = MP_MAP;
        o->n = c & 0x0f;
        return true;
    }
    if ((c & 0xf0) == 0x90) {
        o->kind = MP_ARRAY;
        o->n = c & 0x0f;
        return true;
    }
    if ((c & 0xe0) == 0xa0)
        return rd_body(r, o, MP_STR, c & 0x1f);
    switch (c) {
    case 0xc0:
        o->kind = MP_NIL;
        return true;
    case 0xc2:
    case 0xc3:
        o->kind = MP_BOOL;
        o->b = c == 0xc3;
        return true;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        return rd_len(r, (size_t)1 << (c - 0xc4), &n) && rd_body(r, o, MP_BIN, n);
    case 0xca: {
        if (!rd_take(r, 4, &q))
            return false;
        uint32_t bits = (uint32_t)load_be(q, 4);
        float f;
        memcpy(&f, &bits, sizeof f);
        o->kind = MP_FLOAT;
        o->f = (double)f;
        return true;
    }
    case 0xcb: {
        if (!rd_take(r, 8, &q))
            return false;
        uint64_t bits = load_be(q, 8);
        memcpy(&o->f, &bits, sizeof o->f);
        o->kind = MP_FLOAT;
        return true;
    }
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
        return rd_int(r, o, (size_t)1 << (c - 0xcc), false);
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3:
        return rd_int(r, o, (size_t)1 << (c - 0xd0), true);
    case 0xd9:
    case 0xda:
    case 0xdb:
        return rd_len(r, (size_t)1 << (c - 0xd9), &n) && rd_body(r, o, MP_STR, n);
    case 0xdc:
    case 0xdd:
        o->kind = MP_ARRAY;
        return rd_len(r, c == 0xdc ? 2 : 4, &o->n);
    case 0xde:
    case 0xdf:
        o->kind = MP_MAP;
        return rd_len(r, c == 0xde ? 2 : 4, &o->n);
    default: /* 0xc1 (never used), 0xc7-0xc9 and 0xd4-0xd8 (ext) */
        return false;
    }
}

/* Skips one whole object. Keeps no stack: a pending-count only, never above the bytes left
 * (each pending object needs at least one byte), so hostile counts fail at once. */
static bool rd_skip(struct rd *r)
{
    uint64_t pending = 1;
    while (pending > 0) {
        struct mp_obj o;
        if (!rd_head(r, &o))
            return false;
        pending--;
        if (o.kind == MP_ARRAY)
            pending += o.n;
        else if (o.kind == MP_MAP)
            pending += 2 * (uint64_t)o.n;
        if (pending > rd_left(r))
            return false;
    }
    return true;
}

/* ---- messages ----------------------------------------------------------------------------- */

static enum kp_reason fail(char *msg, size_t msg_len, enum kp_reason r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static enum kp_reason fail(char *msg, size_t msg_len, enum kp_reason r, const char *fmt, ...)
{
    if (msg && msg_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, msg_len, fmt, ap);
        va_end(ap);
    }
    return r;
}

/* ---- structural pre-scan ------------------------------------------------------------------ */

/* Walks one whole frame without allocating: exactly one object and no trailing bytes, every
 * head well-formed (no ext, no 0xc1), every str/bin body inside the frame, every array/map
 * count no larger than the bytes left (one byte per element at least, two per map entry),
 * nesting <= KP_DEPTH_MAX. Only after this passes is anything sized by the frame allocated. */
static enum kp_reason mp_scan(const uint8_t *p, size_t len, char *msg, size_t msg_len)
{
    struct rd r = {p, p + len};
    uint64_t open[KP_DEPTH_MAX]; /* items still to read in each open container */
    int depth = 0;
    for (;;) {
        struct mp_obj o;
        size_t at = (size_t)(r.p - p);
        if (!rd_head(&r, &o))
            return fail(msg, msg_len, KP_R_bad_msgpack,
                        "not well-formed msgpack at byte %zu (truncated, ext or reserved)", at);
        if (o.kind == MP_ARRAY || o.kind == MP_MAP) {
            uint64_t items = o.kind == MP_MAP ? 2 * (uint64_t)o.n : o.n;
            if (items > rd_left(&r))
                return fail(msg, msg_len, KP_R_bad_msgpack,
                            "%s at byte %zu declares %" PRIu32 " entries, more than the %zu bytes left",
                            o.kind == MP_MAP ? "map" : "array", at, o.n, rd_left(&r));
            if (depth == KP_DEPTH_MAX)
                return fail(msg, msg_len, KP_R_too_large, "nesting deeper than %d levels",
                            KP_DEPTH_MAX);
            open[depth++] = items;
        }
        while (depth > 0 && open[depth - 1] == 0)
            depth--;
        if (depth == 0)
            break;
        open[depth - 1]--;
    }
    if (r.p != r.end)
        return fail(msg, msg_len, KP_R_bad_msgpack, "%zu trailing bytes after the message",
                    rd_left(&r));
    return KP_R_OK;
}

/* ---- validation helpers ------------------------------------------------------------------- */

bool kp_code_valid(const char *s, size_t len)
{
    if (!s || len < 1 || len > KP_CODE_MAX)
        return false;
    for (size_t k = 0; k < len; k++) {
        unsigned char c = (unsigned char)s[k];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

static int digits(const char *s, size_t n)
{
    int v = 0;
    for (size_t k = 0; k < n; k++) {
        if (s[k] < '0' || s[k] > '9')
            return -1;
        v = v * 10 + (s[k] - '0');
    }
    return v;
}

static int days_in_month(int year, int month)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : days[month - 1];
}

/* PROTOCOL.md batch.obs.p: YYYY, YYYY-Hn, YYYY-Qn, YYYY-MM, YYYY-MM-DD; years 1900..2999. */
bool kp_period_valid(const char *s, size_t len, enum kp_period_kind *kind)
{
    enum kp_period_kind k;
    if (!s || (len != 4 && len != 7 && len != 10))
        return false;
    int year = digits(s, 4);
    if (year < 1900 || year > 2999)
        return false;
    if (len == 4) {
        k = KP_PERIOD_YEAR;
    } else {
        if (s[4] != '-')
            return false;
        if (len == 7 && s[5] == 'H') {
            if (s[6] < '1' || s[6] > '2')
                return false;
            k = KP_PERIOD_HALF;
        } else if (len == 7 && s[5] == 'Q') {
            if (s[6] < '1' || s[6] > '4')
                return false;
            k = KP_PERIOD_QUARTER;
        } else {
            int month = digits(s + 5, 2);
            if (month < 1 || month > 12)
                return false;
            k = KP_PERIOD_MONTH;
            if (len == 10) {
                int day = s[7] == '-' ? digits(s + 8, 2) : -1;
                if (day < 1 || day > days_in_month(year, month))
                    return false;
                k = KP_PERIOD_DAY;
            }
        }
    }
    if (kind)
        *kind = k;
    return true;
}

bool kp_utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    if (!s)
        return len == 0;
    size_t k = 0;
    while (k < len) {
        unsigned char c = u[k];
        if (c == 0)
            return false;
        if (c < 0x80) {
            k++;
            continue;
        }
        size_t more;
        uint32_t cp, min;
        if (c >= 0xc2 && c <= 0xdf) {
            more = 1;
            cp = c & 0x1f;
            min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            more = 2;
            cp = c & 0x0f;
            min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            more = 3;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            return false;
        }
        if (len - k - 1 < more)
            return false;
        for (size_t m = 1; m <= more; m++) {
            unsigned char b = u[k + m];
            if ((b & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (b & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        k += more + 1;
    }
    return true;
}

/* ---- msgpack to JSON ---------------------------------------------------------------------- */

static void json_string(struct kp_buf *out, const uint8_t *s, size_t n)
{
    kp_buf_append(out, "\"", 1);
    size_t run = 0; /* bytes copied verbatim */
    for (size_t k = 0; k < n; k++) {
        uint8_t c = s[k];
        const char *esc = NULL;
        char hex[8];
        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        default:
            if (c < 0x20) {
                snprintf(hex, sizeof hex, "\\u%04x", c);
                esc = hex;
            }
        }
        if (!esc)
            continue;
        kp_buf_append(out, s + run, k - run);
        kp_buf_append_str(out, esc);
        run = k + 1;
    }
    kp_buf_append(out, s + run, n - run);
    kp_buf_append(out, "\"", 1);
}

/* Shortest "%.*g" text that reads back as the same double. Assumes the C locale's decimal
 * point, as every kaoping daemon runs (none calls setlocale for LC_NUMERIC). */
static void json_double(struct kp_buf *out, double d)
{
    char tmp[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    kp_buf_append_str(out, tmp);
}

/* Converts (out != NULL) or only checks (out == NULL) one object at the reader. The object
 * must have passed mp_scan(), which bounds the recursion to KP_DEPTH_MAX. False when it has
 * no JSON form kaoping stores: a binary, a non-string key, a string that is not UTF-8 or
 * holds a NUL (PostgreSQL's jsonb refuses \u0000). Non-finite floats become null. */
static bool json_value(struct rd *r, struct kp_buf *out)
{
    struct mp_obj o;
    if (!rd_head(r, &o))
        return false;
    switch (o.kind) {
    case MP_NIL:
        if (out)
            kp_buf_append_str(out, "null");
        return true;
    case MP_BOOL:
        if (out)
            kp_buf_append_str(out, o.b ? "true" : "false");
        return true;
    case MP_UINT:
        if (out)
            kp_buf_printf(out, "%" PRIu64, o.u);
        return true;
    case MP_NINT:
        if (out)
            kp_buf_printf(out, "%" PRId64, o.i);
        return true;
    case MP_FLOAT:
        if (out) {
            if (isfinite(o.f))
                json_double(out, o.f);
            else
                kp_buf_append_str(out, "null");
        }
        return true;
    case MP_STR:
        if (!kp_utf8_valid((const char *)o.s, o.n))
            return false;
        if (out)
            json_string(out, o.s, o.n);
        return true;
    case MP_BIN:
        return false;
    case MP_ARRAY:
        if (out)
            kp_buf_append(out, "[", 1);
        for (uint32_t k = 0; k < o.n; k++) {
            if (out && k)
                kp_buf_append(out, ",", 1);
            if (!json_value(r, out))
                return false;
        }
        if (out)
            kp_buf_append(out, "]", 1);
        return true;
    case MP_MAP:
        if (out)
            kp_buf_append(out, "{", 1);
        for (uint32_t k = 0; k < o.n; k++) {
            struct mp_obj key;
            if (!rd_head(r, &key) || key.kind != MP_STR ||
                !kp_utf8_valid((const char *)key.s, key.n))
                return false;
            if (out) {
                if (k)
                    kp_buf_append(out, ",", 1);
                json_string(out, key.s, key.n);
                kp_buf_append(out, ":", 1);
            }
            if (!json_value(r, out))
                return false;
        }
        if (out)
            kp_buf_append(out, "}", 1);
        return true;
    }
    return false;
}

int kp_msgpack_to_json(const uint8_t *mp, size_t len, struct kp_buf *out)
{
    if (!out || !mp)
        return KP_EINVAL;
    if (mp_scan(mp, len, NULL, 0) != KP_R_OK)
        return KP_EINVAL;
    struct rd r = {mp, mp + len};
    struct mp_obj top;
    struct rd peek = r;
    if (!rd_head(&peek, &top) || top.kind != MP_MAP)
        return KP_EINVAL;
    size_t mark = out->len;
    if (!json_value(&r, out)) {
        out->len = mark;
        kp_buf_cstr(out);
        return KP_EINVAL;
    }
    kp_buf_cstr(out);
    return 0;
}

/* PROTOCOL.md batch.obs.x: a map, at most KP_X_MAX encoded bytes, storable as jsonb. The
 * bytes must already have passed mp_scan() (as part of their frame or alone). */
static enum kp_reason x_check(const uint8_t *x, size_t len, char *msg, size_t msg_len)
{
    struct rd r = {x, x + len};
    struct mp_obj o;
    struct rd peek = r;
    if (!rd_head(&peek, &o) || o.kind != MP_MAP)
        return fail(msg, msg_len, KP_R_bad_type, "x: not a map");
    if (len > KP_X_MAX)
        return fail(msg, msg_len, KP_R_too_large, "x: %zu bytes, more than %d", len, KP_X_MAX);
    if (!json_value(&r, NULL))
        return fail(msg, msg_len, KP_R_bad_field,
                    "x: has a binary, a non-string key or a string that is not UTF-8");
    return KP_R_OK;
}

bool kp_x_valid(const uint8_t *x, size_t len)
{
    if (!x || !len)
        return false;
    return mp_scan(x, len, NULL, 0) == KP_R_OK && x_check(x, len, NULL, 0) == KP_R_OK;
}

/* ---- fields of a map ---------------------------------------------------------------------- */

/* One key a decoder knows, and where its value lies once the map is read. */
struct fld {
    const char *name;
    bool present;
    const uint8_t *start, *end;
};

/* Reads the n entries of a map (the reader stands on the first key) and records the value
 * of every known key. Unknown keys are skipped (PROTOCOL.md "Unknown keys are ignored"). */
static enum kp_reason rd_fields(struct rd *r, uint32_t n, struct fld *f, size_t nf,
                                const char *where, char *msg, size_t msg_len)
{
    for (uint32_t k = 0; k < n; k++) {
        struct mp_obj key;
        if (!rd_head(r, &key))
            return fail(msg, msg_len, KP_R_bad_msgpack, "%s: truncated", where);
        if (key.kind != MP_STR)
            return fail(msg, msg_len, KP_R_bad_msgpack, "%s: a key is not a string", where);
        struct fld *hit = NULL;
        for (size_t j = 0; j < nf && !hit; j++)
            if (strlen(f[j].name) == key.n && memcmp(f[j].name, key.s, key.n) == 0)
                hit = &f[j];
        const uint8_t *start = r->p;
        if (!rd_skip(r))
            return fail(msg, msg_len, KP_R_bad_msgpack, "%s: truncated", where);
        if (hit) {
            if (hit->present)
                return fail(msg, msg_len, KP_R_bad_msgpack, "%s: key \"%s\" given twice", where,
                            hit->name);
            hit->present = true;
            hit->start = start;
            hit->end = r->p;
        }
    }
    return KP_R_OK;
}

/* A reader on a present field's value, and its head. */
static struct rd fld_head(const struct fld *f, struct mp_obj *o)
{
    struct rd r = {f->start, f->end};
    if (!rd_head(&r, o)) /* cannot happen after rd_fields(); keeps the reader honest */
        memset(o, 0, sizeof *o);
    return r;
}

static enum kp_reason need(const struct fld *f, char *msg, size_t msg_len)
{
    if (!f->present)
        return fail(msg, msg_len, KP_R_missing_field, "%s: missing", f->name);
    return KP_R_OK;
}

static enum kp_reason get_uint(const struct fld *f, uint64_t max, uint64_t *out, char *msg,
                               size_t msg_len)
{
    struct mp_obj o;
    enum kp_reason r = need(f, msg, msg_len);
    if (r)
        return r;
    fld_head(f, &o);
    if (o.kind == MP_NINT)
        return fail(msg, msg_len, KP_R_bad_field, "%s: negative", f->name);
    if (o.kind != MP_UINT)
        return fail(msg, msg_len, KP_R_bad_type, "%s: not an integer", f->name);
    if (o.u > max)
        return fail(msg, msg_len, KP_R_bad_field, "%s: above %" PRIu64, f->name, max);
    *out = o.u;
    return KP_R_OK;
}

static enum kp_reason get_int64(const struct fld *f, int64_t *out, char *msg, size_t msg_len)
{
    struct mp_obj o;
    enum kp_reason r = need(f, msg, msg_len);
    if (r)
        return r;
    fld_head(f, &o);
    if (o.kind == MP_NINT) {
        *out = o.i;
        return KP_R_OK;
    }
    if (o.kind != MP_UINT)
        return fail(msg, msg_len, KP_R_bad_type, "%s: not an integer", f->name);
    if (o.u > (uint64_t)INT64_MAX)
        return fail(msg, msg_len, KP_R_bad_field, "%s: beyond int64", f->name);
    *out = (int64_t)o.u;
    return KP_R_OK;
}

static enum kp_reason get_bool(const struct fld *f, bool *out, char *msg, size_t msg_len)
{
    struct mp_obj o;
    enum kp_reason r = need(f, msg, msg_len);
    if (r)
        return r;
    fld_head(f, &o);
    if (o.kind != MP_BOOL)
        return fail(msg, msg_len, KP_R_bad_type, "%s: not a boolean", f->name);
    *out = o.b;
    return KP_R_OK;
}

static enum kp_reason get_str(const struct fld *f, struct mp_obj *o, char *msg, size_t msg_len)
{
    enum kp_reason r = need(f, msg, msg_len);
    if (r)
        return r;
    fld_head(f, o);
    if (o->kind != MP_STR)
        return fail(msg, msg_len, KP_R_bad_type, "%s: not a string", f->name);
    return KP_R_OK;
}

/* PROTOCOL.md "Codes": 1-64 bytes of [A-Za-z0-9._:-]. out has KP_CODE_MAX + 1 bytes. */
static enum kp_reason get_code(const struct fld *f, char *out, char *msg, size_t msg_len)
{
    struct mp_obj o;
    enum kp_reason r = get_str(f, &o, msg, msg_len);
    if (r)
        return r;
    if (!kp_code_valid((const char *)o.s, o.n))
        return fail(msg, msg_len, KP_R_bad_field,
                    "%s: not a code (1-64 bytes of A-Z a-z 0-9 . _ : -)", f->name);
    memcpy(out, o.s, o.n);
    out[o.n] = 0;
    return KP_R_OK;
}

/* A human text or ref: UTF-8 without NUL, at most cap - 1 bytes. */
static enum kp_reason get_text(const struct fld *f, char *out, size_t cap, char *msg,
                               size_t msg_len)
{
    struct mp_obj o;
    enum kp_reason r = get_str(f, &o, msg, msg_len);
    if (r)
        return r;
    if (o.n > cap - 1)
        return fail(msg, msg_len, KP_R_too_large, "%s: longer than %zu bytes", f->name, cap - 1);
    if (!kp_utf8_valid((const char *)o.s, o.n))
        return fail(msg, msg_len, KP_R_bad_field, "%s: not UTF-8 text (or holds a NUL)", f->name);
    memcpy(out, o.s, o.n);
    out[o.n] = 0;
    return KP_R_OK;
}

/* An int or float, finite. exact: integers beyond +-2^53 (which a double cannot hold
 * exactly) are out_of_range (PROTOCOL.md batch.obs.val). */
static enum kp_reason get_number(const struct fld *f, bool exact, double *out, char *msg,
                                 size_t msg_len)
{
    struct mp_obj o;
    enum kp_reason r = need(f, msg, msg_len);
    if (r)
        return r;
    fld_head(f, &o);
    switch (o.kind) {
    case MP_UINT:
        if (exact && o.u > INT_EXACT_MAX_U)
            return fail(msg, msg_len, KP_R_out_of_range, "%s: integer beyond 2^53", f->name);
        *out = (double)o.u;
        return KP_R_OK;
    case MP_NINT:
        if (exact && o.i < -(int64_t)INT_EXACT_MAX_U)
            return fail(msg, msg_len, KP_R_out_of_range, "%s: integer beyond -2^53", f->name);
        *out = (double)o.i;
        return KP_R_OK;
    case MP_FLOAT:
        if (!isfinite(o.f))
            return fail(msg, msg_len, KP_R_not_finite, "%s: NaN or infinite", f->name);
        *out = o.f;
        return KP_R_OK;
    default:
        return fail(msg, msg_len, KP_R_bad_type, "%s: not a number", f->name);
    }
}

/* ---- common head of every message --------------------------------------------------------- */

enum { F_T, F_V }; /* every field table starts with t and v */

static const struct {
    const char *name;
    enum kp_msg_type type;
} msg_types[] = {
    {"hello", KP_MSG_HELLO}, {"welcome", KP_MSG_WELCOME}, {"batch", KP_MSG_BATCH},
    {"ack", KP_MSG_ACK},     {"nack", KP_MSG_NACK},       {"ping", KP_MSG_PING},
    {"pong", KP_MSG_PONG},   {"reg", KP_MSG_REG},         {"hb", KP_MSG_HB},
};

/* Checks the frame's size and structure and reads its top-level map into f. */
static enum kp_reason open_map(const void *frame, size_t len, size_t max_bytes, struct fld *f,
                               size_t nf, char *msg, size_t msg_len)
{
    if (len > max_bytes) /* PROTOCOL.md welcome.max_bytes: refused before any parsing */
        return fail(msg, msg_len, KP_R_too_large, "frame of %zu bytes, more than %zu", len,
                    max_bytes);
    if (!frame)
        return fail(msg, msg_len, KP_R_bad_msgpack, "no frame");
    const uint8_t *p = frame;
    enum kp_reason r = mp_scan(p, len, msg, msg_len);
    if (r)
        return r;
    struct rd rd = {p, p + len};
    struct mp_obj top;
    if (!rd_head(&rd, &top) || top.kind != MP_MAP)
        return fail(msg, msg_len, KP_R_bad_msgpack, "the message is not a map");
    return rd_fields(&rd, top.n, f, nf, "message", msg, msg_len);
}

/* t and v (PROTOCOL.md "Messages"): t missing/mistyped, v missing/mistyped/not 1, t unknown. */
static enum kp_reason check_tv(const struct fld *f, enum kp_msg_type *type, char *msg,
                               size_t msg_len)
{
    struct mp_obj t, v;
    enum kp_reason r = get_str(&f[F_T], &t, msg, msg_len);
    if (r)
        return r;
    if ((r = need(&f[F_V], msg, msg_len)))
        return r;
    fld_head(&f[F_V], &v);
    if (v.kind == MP_NINT || (v.kind == MP_UINT && v.u != KP_PROTO_VERSION))
        return fail(msg, msg_len, KP_R_bad_version, "v: only version %d is spoken",
                    KP_PROTO_VERSION);
    if (v.kind != MP_UINT)
        return fail(msg, msg_len, KP_R_bad_type, "v: not an integer");
    for (size_t k = 0; k < sizeof msg_types / sizeof msg_types[0]; k++) {
        if (strlen(msg_types[k].name) == t.n && memcmp(msg_types[k].name, t.s, t.n) == 0) {
            *type = msg_types[k].type;
            return KP_R_OK;
        }
    }
    *type = KP_MSG_UNKNOWN;
    return fail(msg, msg_len, KP_R_bad_field, "t: unknown message type");
}

/* open_map + check_tv + the type must be one of want (want2 may equal want). */
static enum kp_reason open_msg(const void *frame, size_t len, struct fld *f, size_t nf,
                               enum kp_msg_type want, enum kp_msg_type want2,
                               enum kp_msg_type *got, char *msg, size_t msg_len)
{
    enum kp_msg_type type = KP_MSG_UNKNOWN;
    enum kp_reason r = open_map(frame, len, SIZE_MAX, f, nf, msg, msg_len);
    if (!r)
        r = check_tv(f, &type, msg, msg_len);
    if (r)
        return r;
    if (type != want && type != want2)
        return fail(msg, msg_len, KP_R_bad_field, "t: not the expected message type");
    if (got)
        *got = type;
    return KP_R_OK;
}

enum kp_reason kp_msg_peek(const void *frame, size_t len, size_t max_bytes,
                           enum kp_msg_type *type)
{
    struct fld f[] = {{.name = "t"}, {.name = "v"}};
    enum kp_msg_type t = KP_MSG_UNKNOWN;
    enum kp_reason r = open_map(frame, len, max_bytes, f, 2, NULL, 0);
    if (!r)
        r = check_tv(f, &t, NULL, 0);
    if (type)
        *type = r ? KP_MSG_UNKNOWN : t;
    return r;
}

/* ---- batch -------------------------------------------------------------------------------- */

enum { O_U, O_I, O_P, O_VAL, O_REF, O_REV, O_AT, O_W, O_X, O__N };

/* Keeps the first refusal of an observation; later defects only stop their own field. */
static void note(struct kp_obs *o, enum kp_reason r, const char *msg)
{
    if (r != KP_R_OK && o->reason == KP_R_OK) {
        o->reason = r;
        snprintf(o->msg, sizeof o->msg, "%s", msg);
    }
}

/* Decodes one element of obs[] (bytes [start, end), already scanned) into o. Every field
 * that can be read is filled even when another one refuses the observation. */
static void decode_obs(const uint8_t *start, const uint8_t *end, int64_t sent, struct kp_obs *o)
{
    char m[KP_MSG_TEXT_MAX];
    struct rd r = {start, end};
    struct mp_obj h;
    o->w = 1;       /* PROTOCOL.md batch.obs.w default */
    o->at = sent;   /* PROTOCOL.md batch.obs.at default */
    if (!rd_head(&r, &h) || h.kind != MP_MAP) {
        note(o, KP_R_bad_type, "observation: not a map");
        return;
    }
    struct fld f[O__N] = {
        [O_U] = {.name = "u"},     [O_I] = {.name = "i"},     [O_P] = {.name = "p"},
        [O_VAL] = {.name = "val"}, [O_REF] = {.name = "ref"}, [O_REV] = {.name = "rev"},
        [O_AT] = {.name = "at"},   [O_W] = {.name = "w"},     [O_X] = {.name = "x"},
    };
    enum kp_reason rr = rd_fields(&r, h.n, f, O__N, "observation", m, sizeof m);
    if (rr) {
        note(o, rr, m);
        return;
    }

    note(o, get_code(&f[O_U], o->u, m, sizeof m), m);
    note(o, get_code(&f[O_I], o->i, m, sizeof m), m);

    struct mp_obj p;
    rr = get_str(&f[O_P], &p, m, sizeof m);
    if (!rr && !kp_period_valid((const char *)p.s, p.n, NULL))
        rr = fail(m, sizeof m, KP_R_bad_period,
                  "p: not a period (YYYY, YYYY-Hn, YYYY-Qn, YYYY-MM, YYYY-MM-DD)");
    if (!rr) {
        memcpy(o->p, p.s, p.n);
        o->p[p.n] = 0;
    }
    note(o, rr, m);

    note(o, get_number(&f[O_VAL], true, &o->val, m, sizeof m), m);

    struct mp_obj ref;
    rr = get_str(&f[O_REF], &ref, m, sizeof m);
    if (!rr && ref.n == 0)
        rr = fail(m, sizeof m, KP_R_bad_field, "ref: empty");
    if (!rr)
        rr = get_text(&f[O_REF], o->ref, sizeof o->ref, m, sizeof m);
    note(o, rr, m);

    if (f[O_REV].present)
        note(o, get_uint(&f[O_REV], UINT64_MAX, &o->rev, m, sizeof m), m);
    if (f[O_AT].present)
        note(o, get_int64(&f[O_AT], &o->at, m, sizeof m), m);
    if (f[O_W].present)
        note(o, get_number(&f[O_W], false, &o->w, m, sizeof m), m);
    if (f[O_X].present) {
        size_t x_len = (size_t)(f[O_X].end - f[O_X].start);
        rr = x_check(f[O_X].start, x_len, m, sizeof m);
        if (!rr) {
            o->x = f[O_X].start;
            o->x_len = x_len;
        }
        note(o, rr, m);
    }
}

enum { B_T, B_V, B_AID, B_SCHEME, B_SRC, B_SEQ, B_SENT, B_OBS, B__N };

enum kp_reason kp_batch_decode(const void *frame, size_t len, const struct kp_msg_limits *lim,
                               struct kp_batch **out, bool *has_seq, uint64_t *seq_out,
                               char *msg, size_t msg_len)
{
    struct kp_msg_limits dflt = {KP_DEFAULT_MAX_BYTES, KP_DEFAULT_MAX_OBS};
    struct kp_batch hdr;
    struct fld f[B__N] = {
        [B_T] = {.name = "t"},           [B_V] = {.name = "v"},
        [B_AID] = {.name = "aid"},       [B_SCHEME] = {.name = "scheme"},
        [B_SRC] = {.name = "src"},       [B_SEQ] = {.name = "seq"},
        [B_SENT] = {.name = "sent"},     [B_OBS] = {.name = "obs"},
    };
    enum kp_msg_type type = KP_MSG_UNKNOWN;
    enum kp_reason r;

    if (!lim)
        lim = &dflt;
    if (out)
        *out = NULL;
    if (has_seq)
        *has_seq = false;
    if (msg && msg_len)
        msg[0] = 0;
    if (!out)
        return fail(msg, msg_len, KP_R_bad_msgpack, "no output");
    memset(&hdr, 0, sizeof hdr);

    if ((r = open_map(frame, len, lim->max_bytes, f, B__N, msg, msg_len)))
        return r;
    /* PROTOCOL.md nack.seq: a readable integer seq goes into the nack, whatever else fails. */
    if (get_uint(&f[B_SEQ], UINT64_MAX, &hdr.seq, NULL, 0) == KP_R_OK) {
        if (has_seq)
            *has_seq = true;
        if (seq_out)
            *seq_out = hdr.seq;
    }
    if ((r = check_tv(f, &type, msg, msg_len)))
        return r;
    if (type != KP_MSG_BATCH)
        return fail(msg, msg_len, KP_R_bad_field, "t: not a batch");
    if ((r = get_code(&f[B_AID], hdr.aid, msg, msg_len)) ||
        (r = get_code(&f[B_SCHEME], hdr.scheme, msg, msg_len)) ||
        (r = get_code(&f[B_SRC], hdr.src, msg, msg_len)) ||
        (r = get_uint(&f[B_SEQ], UINT64_MAX, &hdr.seq, msg, msg_len)) ||
        (r = get_int64(&f[B_SENT], &hdr.sent, msg, msg_len)) ||
        (r = need(&f[B_OBS], msg, msg_len)))
        return r;

    struct mp_obj obs;
    struct rd rd = fld_head(&f[B_OBS], &obs);
    if (obs.kind != MP_ARRAY)
        return fail(msg, msg_len, KP_R_bad_type, "obs: not an array");
    /* PROTOCOL.md batch.obs "array <= max_obs"; mp_scan() has bounded n by the frame too. */
    if (obs.n > lim->max_obs)
        return fail(msg, msg_len, KP_R_too_large, "obs: %" PRIu32 " observations, more than %zu",
                    obs.n, lim->max_obs);

    struct kp_batch *b = kp_xmalloc(sizeof *b);
    *b = hdr;
    b->n_obs = obs.n;
    b->obs = obs.n ? kp_xcalloc(obs.n, sizeof *b->obs) : NULL;
    for (uint32_t k = 0; k < obs.n; k++) {
        const uint8_t *start = rd.p;
        if (!rd_skip(&rd)) { /* cannot happen after mp_scan() */
            kp_batch_destroy(&b);
            return fail(msg, msg_len, KP_R_bad_msgpack, "obs: truncated");
        }
        decode_obs(start, rd.p, b->sent, &b->obs[k]);
        if (b->obs[k].reason != KP_R_OK)
            b->n_rejected++;
    }
    *out = b;
    return KP_R_OK;
}

void kp_batch_destroy(struct kp_batch **b)
{
    if (!b || !*b)
        return;
    free((*b)->obs);
    free(*b);
    *b = NULL;
}

/* ---- ack, nack ---------------------------------------------------------------------------- */

enum { R_N, R_CODE, R_MSG, R__N };

/* Reads one rej[] entry. Checks only when dst is NULL; fills dst and copies its msg to *text
 * (advancing it) otherwise. *text_bytes grows by the bytes its msg needs. */
static enum kp_reason rej_entry(const uint8_t *start, const uint8_t *end, struct kp_rej *dst,
                                char **text, size_t *text_bytes)
{
    char m[KP_MSG_TEXT_MAX];
    struct rd r = {start, end};
    struct mp_obj h, code;
    uint64_t n = 0;
    enum kp_reason rr, rc;
    struct fld f[R__N] = {[R_N] = {.name = "n"}, [R_CODE] = {.name = "code"},
                          [R_MSG] = {.name = "msg"}};
    if (!rd_head(&r, &h) || h.kind != MP_MAP)
        return KP_R_bad_type;
    if ((rr = rd_fields(&r, h.n, f, R__N, "rej", NULL, 0)) ||
        (rr = get_uint(&f[R_N], UINT32_MAX, &n, NULL, 0)) ||
        (rr = get_str(&f[R_CODE], &code, NULL, 0)) ||
        (rr = get_text(&f[R_MSG], m, sizeof m, NULL, 0)))
        return rr;
    rc = kp_reason_parse((const char *)code.s, code.n);
    if (rc == KP_R__COUNT)
        return KP_R_bad_field;
    size_t mlen = strlen(m);
    *text_bytes += mlen + 1;
    if (dst) {
        dst->n = (uint32_t)n;
        dst->code = rc;
        memcpy(*text, m, mlen + 1);
        dst->msg = *text;
        *text += mlen + 1;
    }
    return KP_R_OK;
}

enum { A_T, A_V, A_SEQ, A_STORED, A_DUP, A_REJ, A__N };

enum kp_reason kp_ack_decode(const void *frame, size_t len, struct kp_ack *out)
{
    struct fld f[A__N] = {
        [A_T] = {.name = "t"},           [A_V] = {.name = "v"},   [A_SEQ] = {.name = "seq"},
        [A_STORED] = {.name = "stored"}, [A_DUP] = {.name = "dup"}, [A_REJ] = {.name = "rej"},
    };
    struct kp_ack a;
    struct mp_obj rej;
    enum kp_reason r;
    if (!out)
        return KP_R_bad_msgpack;
    memset(out, 0, sizeof *out);
    memset(&a, 0, sizeof a);
    if ((r = open_msg(frame, len, f, A__N, KP_MSG_ACK, KP_MSG_ACK, NULL, NULL, 0)) ||
        (r = get_uint(&f[A_SEQ], UINT64_MAX, &a.seq, NULL, 0)) ||
        (r = get_uint(&f[A_STORED], UINT64_MAX, &a.stored, NULL, 0)) ||
        (r = get_bool(&f[A_DUP], &a.dup, NULL, 0)) || (r = need(&f[A_REJ], NULL, 0)))
        return r;
    struct rd rd = fld_head(&f[A_REJ], &rej);
    if (rej.kind != MP_ARRAY)
        return KP_R_bad_type;

    /* First pass: check every entry and size the text; nothing is allocated yet. */
    size_t text_bytes = 0;
    struct rd walk = rd;
    for (uint32_t k = 0; k < rej.n; k++) {
        const uint8_t *start = walk.p;
        if (!rd_skip(&walk))
            return KP_R_bad_msgpack;
        if ((r = rej_entry(start, walk.p, NULL, NULL, &text_bytes)))
            return r;
    }
    /* Second pass: one block, entries then their texts; bounded by the frame's bytes. */
    if (rej.n) {
        size_t head = (size_t)rej.n * sizeof(struct kp_rej);
        a.rej = kp_xmalloc(head + text_bytes);
        char *text = (char *)a.rej + head;
        size_t unused = 0;
        for (uint32_t k = 0; k < rej.n; k++) {
            const uint8_t *start = rd.p;
            rd_skip(&rd);
            rej_entry(start, rd.p, &a.rej[k], &text, &unused);
        }
        a.n_rej = rej.n;
    }
    *out = a;
    return KP_R_OK;
}

void kp_ack_fini(struct kp_ack *a)
{
    if (!a)
        return;
    free(a->rej);
    a->rej = NULL;
    a->n_rej = 0;
}

enum { N_T, N_V, N_SEQ, N_CODE, N_MSG, N_RETRY, N__N };

enum kp_reason kp_nack_decode(const void *frame, size_t len, struct kp_nack *out)
{
    struct fld f[N__N] = {
        [N_T] = {.name = "t"},       [N_V] = {.name = "v"},     [N_SEQ] = {.name = "seq"},
        [N_CODE] = {.name = "code"}, [N_MSG] = {.name = "msg"}, [N_RETRY] = {.name = "retry"},
    };
    struct kp_nack n;
    struct mp_obj seq, code;
    enum kp_reason r;
    if (!out)
        return KP_R_bad_msgpack;
    memset(out, 0, sizeof *out);
    memset(&n, 0, sizeof n);
    if ((r = open_msg(frame, len, f, N__N, KP_MSG_NACK, KP_MSG_NACK, NULL, NULL, 0)) ||
        (r = need(&f[N_SEQ], NULL, 0)))
        return r;
    fld_head(&f[N_SEQ], &seq);
    if (seq.kind != MP_NIL) { /* PROTOCOL.md nack.seq: uint or nil */
        if ((r = get_uint(&f[N_SEQ], UINT64_MAX, &n.seq, NULL, 0)))
            return r;
        n.has_seq = true;
    }
    if ((r = get_str(&f[N_CODE], &code, NULL, 0)))
        return r;
    n.code = kp_reason_parse((const char *)code.s, code.n);
    if (n.code == KP_R__COUNT)
        return KP_R_bad_field;
    if ((r = get_text(&f[N_MSG], n.msg, sizeof n.msg, NULL, 0)) ||
        (r = get_bool(&f[N_RETRY], &n.retry, NULL, 0)))
        return r;
    *out = n;
    return KP_R_OK;
}

/* ---- hello, welcome, ping/pong, reg/hb ---------------------------------------------------- */

enum { H_T, H_V, H_AID, H_SCHEME, H_SW, H__N };

enum kp_reason kp_hello_decode(const void *frame, size_t len, struct kp_hello *out)
{
    struct fld f[H__N] = {
        [H_T] = {.name = "t"},           [H_V] = {.name = "v"}, [H_AID] = {.name = "aid"},
        [H_SCHEME] = {.name = "scheme"}, [H_SW] = {.name = "sw"},
    };
    struct kp_hello h;
    enum kp_reason r;
    if (!out)
        return KP_R_bad_msgpack;
    memset(out, 0, sizeof *out);
    memset(&h, 0, sizeof h);
    if ((r = open_msg(frame, len, f, H__N, KP_MSG_HELLO, KP_MSG_HELLO, NULL, NULL, 0)) ||
        (r = get_code(&f[H_AID], h.aid, NULL, 0)) ||
        (r = get_code(&f[H_SCHEME], h.scheme, NULL, 0)) ||
        (r = get_text(&f[H_SW], h.sw, sizeof h.sw, NULL, 0)))
        return r;
    *out = h;
    return KP_R_OK;
}

enum { W_T, W_V, W_MAX_BYTES, W_MAX_OBS, W_MAX_INFLIGHT, W_HB_MS, W__N };

enum kp_reason kp_welcome_decode(const void *frame, size_t len, struct kp_welcome *out)
{
    struct fld f[W__N] = {
        [W_T] = {.name = "t"},
        [W_V] = {.name = "v"},
        [W_MAX_BYTES] = {.name = "max_bytes"},
        [W_MAX_OBS] = {.name = "max_obs"},
        [W_MAX_INFLIGHT] = {.name = "max_inflight"},
        [W_HB_MS] = {.name = "hb_ms"},
    };
    uint64_t v[4] = {0};
    enum kp_reason r;
    if (!out)
        return KP_R_bad_msgpack;
    memset(out, 0, sizeof *out);
    if ((r = open_msg(frame, len, f, W__N, KP_MSG_WELCOME, KP_MSG_WELCOME, NULL, NULL, 0)))
        return r;
    for (int k = 0; k < 4; k++)
        if ((r = get_uint(&f[W_MAX_BYTES + k], UINT32_MAX, &v[k], NULL, 0)))
            return r;
    out->max_bytes = (uint32_t)v[0];
    out->max_obs = (uint32_t)v[1];
    out->max_inflight = (uint32_t)v[2];
    out->hb_ms = (uint32_t)v[3];
    return KP_R_OK;
}

enum kp_reason kp_ping_decode(const void *frame, size_t len, bool *is_pong, uint64_t *n)
{
    struct fld f[] = {{.name = "t"}, {.name = "v"}, {.name = "n"}};
    enum kp_msg_type type = KP_MSG_UNKNOWN;
    uint64_t v = 0;
    enum kp_reason r;
    if ((r = open_msg(frame, len, f, 3, KP_MSG_PING, KP_MSG_PONG, &type, NULL, 0)) ||
        (r = get_uint(&f[2], UINT64_MAX, &v, NULL, 0)))
        return r;
    if (is_pong)
        *is_pong = type == KP_MSG_PONG;
    if (n)
        *n = v;
    return KP_R_OK;
}

enum kp_reason kp_reg_decode(const void *frame, size_t len, bool *is_hb, struct kp_reg *out)
{
    struct fld f[] = {{.name = "t"}, {.name = "v"}, {.name = "sid"}, {.name = "schemes"}};
    enum kp_msg_type type = KP_MSG_UNKNOWN;
    struct mp_obj arr;
    enum kp_reason r;
    if (!out)
        return KP_R_bad_msgpack;
    memset(out, 0, sizeof *out);
    if ((r = open_msg(frame, len, f, 4, KP_MSG_REG, KP_MSG_HB, &type, NULL, 0)) ||
        (r = get_code(&f[2], out->sid, NULL, 0)))
        goto refused;
    if (type == KP_MSG_HB)
        goto done; /* an hb's other keys, schemes included, are ignored */
    if ((r = need(&f[3], NULL, 0)))
        goto refused;
    struct rd rd = fld_head(&f[3], &arr);
    if (arr.kind != MP_ARRAY) {
        r = KP_R_bad_type;
        goto refused;
    }
    if (arr.n > KP_REG_MAX_SCHEMES) {
        r = KP_R_too_large;
        goto refused;
    }
    for (uint32_t k = 0; k < arr.n; k++) {
        struct fld e = {.name = "schemes[]", .present = true, .start = rd.p};
        rd_skip(&rd);
        e.end = rd.p;
        if ((r = get_code(&e, out->schemes[k], NULL, 0)))
            goto refused;
    }
    out->n_schemes = arr.n;
done:
    if (is_hb)
        *is_hb = type == KP_MSG_HB;
    return KP_R_OK;
refused:
    memset(out, 0, sizeof *out);
    return r;
}
