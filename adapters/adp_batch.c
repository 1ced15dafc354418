/*
 * adp_batch: turns the text records a source read into one PROTOCOL.md batch frame (see
 * adp_batch_build in adp_pump.h). Valid records go through the shared codec's
 * kp_batch_encode. The shared encoder refuses invalid input by contract, yet the adapter must
 * still send a record that fails the local checks (issue 2: every row ends as an observation
 * or a rejection centrally, never dropped on the way), so for a batch holding such a record
 * this file writes the same map itself with msgpack, each offending value as it was read;
 * the scorer's strict decoder then refuses exactly that observation with its reason code
 * (ARCHITECTURE.md guarantee 4).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "adp_pump.h"
#include "kp_err.h"
#include "kp_msg.h"

/* A numeric field after conversion. */
enum num_kind { NUM_ABSENT, NUM_INT, NUM_UINT, NUM_DOUBLE, NUM_TEXT };
struct num {
    enum num_kind kind;
    int64_t i;
    uint64_t u;
    double d;
    const char *text; /* NUM_TEXT: sent as a string, refused centrally as bad_type */
};

static bool all_digits(const char *s, bool allow_sign)
{
    if (allow_sign && (*s == '-' || *s == '+'))
        s++;
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* val and w: an integer when the text is one that fits int64, else a double; text that is
 * no number stays text. Non-finite numbers stay doubles (refused as not_finite). */
static struct num parse_real(const char *s, bool cut)
{
    struct num n = {.kind = NUM_ABSENT};
    if (!s)
        return n;
    n.text = s;
    n.kind = NUM_TEXT;
    if (cut || !*s)
        return n;
    if (all_digits(s, true)) {
        errno = 0;
        char *end;
        long long v = strtoll(s, &end, 10);
        if (errno == 0 && *end == 0) {
            n.kind = NUM_INT;
            n.i = v;
            return n;
        }
    }
    errno = 0;
    char *end;
    double d = strtod(s, &end);
    if (end == s || *end != 0)
        return n;
    /* strtod accepts hex floats and "nan(...)"; PostgreSQL and CSV give decimal or
     * NaN/Infinity, all of which it reads correctly. Overflow gives ±HUGE_VAL: infinite,
     * refused as not_finite, which is what it is. */
    n.kind = NUM_DOUBLE;
    n.d = d;
    return n;
}

/* An integer field (rev: unsigned; at: signed). Text that is not one stays NUM_TEXT and is
 * sent as read, so the scorer refuses it with a reason. */
static struct num parse_integer(const char *s, bool cut, bool is_signed)
{
    struct num n = {.kind = NUM_ABSENT};
    if (!s)
        return n;
    n.text = s;
    n.kind = NUM_TEXT;
    if (cut || !all_digits(s, is_signed))
        return n;
    errno = 0;
    char *end;
    if (is_signed) {
        long long v = strtoll(s, &end, 10);
        if (errno == 0 && *end == 0) {
            n.kind = NUM_INT;
            n.i = v;
        }
    } else {
        unsigned long long v = strtoull(s, &end, 10);
        if (errno == 0 && *end == 0) {
            n.kind = NUM_UINT;
            n.u = v;
        }
    }
    return n;
}

static double num_double(const struct num *n)
{
    return n->kind == NUM_INT ? (double)n->i : n->kind == NUM_UINT ? (double)n->u : n->d;
}

#define INT_EXACT_MAX (INT64_C(1) << 53)

/* A value the scorer accepts: finite, and an integer only within +-2^53, which a double
 * holds exactly (beyond it the decoder refuses out_of_range rather than round). */
static bool num_finite(const struct num *n)
{
    return (n->kind == NUM_INT && n->i <= INT_EXACT_MAX && n->i >= -INT_EXACT_MAX) ||
           (n->kind == NUM_UINT && n->u <= (uint64_t)INT_EXACT_MAX) ||
           (n->kind == NUM_DOUBLE && isfinite(n->d));
}

struct conv {
    const char *u, *i, *p, *ref;
    struct num val, rev, at, w;
    bool valid;
};

static void convert(const struct adp_out *o, size_t k, struct conv *c)
{
    c->u = adp_out_field(o, k, ADP_F_U);
    c->i = adp_out_field(o, k, ADP_F_I);
    c->p = adp_out_field(o, k, ADP_F_P);
    c->ref = adp_out_field(o, k, ADP_F_REF);
    c->val = parse_real(adp_out_field(o, k, ADP_F_VAL), adp_out_field_cut(o, k, ADP_F_VAL));
    c->rev = parse_integer(adp_out_field(o, k, ADP_F_REV), adp_out_field_cut(o, k, ADP_F_REV),
                           false);
    c->at = parse_integer(adp_out_field(o, k, ADP_F_AT), adp_out_field_cut(o, k, ADP_F_AT), true);
    c->w = parse_real(adp_out_field(o, k, ADP_F_W), adp_out_field_cut(o, k, ADP_F_W));
    c->valid = c->u && kp_code_valid(c->u, strlen(c->u)) && c->i &&
               kp_code_valid(c->i, strlen(c->i)) && c->p &&
               kp_period_valid(c->p, strlen(c->p), NULL) && c->ref && c->ref[0] &&
               strlen(c->ref) <= KP_REF_MAX && kp_utf8_valid(c->ref, strlen(c->ref)) &&
               num_finite(&c->val) && (c->rev.kind == NUM_ABSENT || c->rev.kind == NUM_UINT) &&
               (c->at.kind == NUM_ABSENT || c->at.kind == NUM_INT) &&
               (c->w.kind == NUM_ABSENT || num_finite(&c->w));
}

/* ---- the field-by-field writer ------------------------------------------------------------ */

static int buf_write(void *data, const char *buf, size_t len)
{
    kp_buf_append(data, buf, len);
    return 0;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_kv_str(msgpack_packer *pk, const char *k, const char *v)
{
    pack_str(pk, k);
    pack_str(pk, v);
}

static void pack_num(msgpack_packer *pk, const struct num *n)
{
    switch (n->kind) {
    case NUM_INT:
        msgpack_pack_int64(pk, n->i);
        break;
    case NUM_UINT:
        msgpack_pack_uint64(pk, n->u);
        break;
    case NUM_DOUBLE:
        msgpack_pack_double(pk, n->d);
        break;
    case NUM_TEXT:
        pack_str(pk, n->text);
        break;
    case NUM_ABSENT:
        msgpack_pack_nil(pk);
        break;
    }
}

static void pack_obs(msgpack_packer *pk, const struct conv *c)
{
    const char *skey[4] = {"u", "i", "p", "ref"};
    const char *sval[4] = {c->u, c->i, c->p, c->ref};
    const char *nkey[4] = {"val", "rev", "at", "w"};
    const struct num *nval[4] = {&c->val, &c->rev, &c->at, &c->w};
    size_t count = 0;
    for (int f = 0; f < 4; f++)
        count += (sval[f] != NULL) + (nval[f]->kind != NUM_ABSENT);
    msgpack_pack_map(pk, count);
    for (int f = 0; f < 4; f++)
        if (sval[f])
            pack_kv_str(pk, skey[f], sval[f]);
    for (int f = 0; f < 4; f++)
        if (nval[f]->kind != NUM_ABSENT) {
            pack_str(pk, nkey[f]);
            pack_num(pk, nval[f]);
        }
}

static void write_raw(struct kp_buf *out, const struct adp_batch_hdr *h, const struct conv *cv,
                      size_t n)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write);
    msgpack_pack_map(&pk, 8);
    pack_kv_str(&pk, "t", "batch");
    pack_str(&pk, "v");
    msgpack_pack_uint64(&pk, KP_PROTO_VERSION);
    pack_kv_str(&pk, "aid", h->aid);
    pack_kv_str(&pk, "scheme", h->scheme);
    pack_kv_str(&pk, "src", h->src);
    pack_str(&pk, "seq");
    msgpack_pack_uint64(&pk, h->seq);
    pack_str(&pk, "sent");
    msgpack_pack_int64(&pk, h->sent);
    pack_str(&pk, "obs");
    msgpack_pack_array(&pk, n);
    for (size_t k = 0; k < n; k++)
        pack_obs(&pk, &cv[k]);
}

/* ---- the entry point ------------------------------------------------------------------- */

static void copy_code(char *dst, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = 0;
}

int adp_batch_build(struct kp_buf *out, const struct adp_batch_hdr *h, const struct adp_out *o,
                    size_t *n_invalid)
{
    kp_buf_reset(out);
    *n_invalid = 0;
    if (!kp_code_valid(h->aid, strlen(h->aid)) || !kp_code_valid(h->scheme, strlen(h->scheme)) ||
        !kp_code_valid(h->src, strlen(h->src)))
        return KP_EINVAL;
    size_t n = o->n;
    struct conv *cv = kp_xcalloc(n ? n : 1, sizeof *cv);
    for (size_t k = 0; k < n; k++) {
        convert(o, k, &cv[k]);
        if (!cv[k].valid)
            (*n_invalid)++;
    }
    int rc = KP_EINVAL;
    if (*n_invalid == 0) {
        struct kp_batch b;
        memset(&b, 0, sizeof b);
        copy_code(b.aid, sizeof b.aid, h->aid);
        copy_code(b.scheme, sizeof b.scheme, h->scheme);
        copy_code(b.src, sizeof b.src, h->src);
        b.seq = h->seq;
        b.sent = h->sent;
        b.n_obs = n;
        b.obs = kp_xcalloc(n ? n : 1, sizeof *b.obs);
        for (size_t k = 0; k < n; k++) {
            struct kp_obs *ob = &b.obs[k];
            const struct conv *c = &cv[k];
            copy_code(ob->u, sizeof ob->u, c->u);
            copy_code(ob->i, sizeof ob->i, c->i);
            copy_code(ob->p, sizeof ob->p, c->p);
            copy_code(ob->ref, sizeof ob->ref, c->ref);
            ob->val = num_double(&c->val);
            ob->rev = c->rev.kind == NUM_UINT ? c->rev.u : 0;
            ob->at = c->at.kind == NUM_INT ? c->at.i : h->sent;
            ob->w = c->w.kind == NUM_ABSENT ? 1.0 : num_double(&c->w);
            ob->reason = KP_R_OK;
        }
        rc = kp_batch_encode(out, &b);
        free(b.obs);
    }
    if (rc != 0) {
        /* Some record is invalid (or the shared encoder is stricter than our checks): write
         * the frame field by field. */
        kp_buf_reset(out);
        write_raw(out, h, cv, n);
    }
    free(cv);
    return 0;
}
