/*
 * kp_acl: the authorised-clients file with its grants, and the "refused" envelope frame (see
 * kp_acl.h). The file is read as one YAML document (libyaml) and checked entirely before a
 * struct kp_acl is returned, so a half-valid file never replaces a valid one on reload
 * (ARCHITECTURE.md guarantee 5: a bad edit neither opens nor closes the door).
 */
#include "kp_acl.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "kp_err.h"
#include "kp_keys.h"
#include "kp_msg.h"

#define ACL_PATTERNS_MAX 1024 /* indicator patterns per grant */

struct acl_grant {
    char *scheme, *src;
    char **ind;
    size_t n_ind;
};

struct acl_client {
    char aid[KP_CODE_MAX + 1];
    uint8_t (*keys)[KP_KEY_BYTES];
    size_t n_keys;
    struct acl_grant *grants;
    size_t n_grants;
};

struct kp_acl {
    struct acl_client *c;
    size_t n;
};

/* ---- queries -------------------------------------------------------------------------- */

size_t kp_acl_clients(const struct kp_acl *acl)
{
    return acl ? acl->n : 0;
}

size_t kp_acl_keys(const struct kp_acl *acl)
{
    size_t k = 0;
    for (size_t i = 0; acl && i < acl->n; i++)
        k += acl->c[i].n_keys;
    return k;
}

const char *kp_acl_lookup_key(const struct kp_acl *acl, const uint8_t key[32])
{
    for (size_t i = 0; acl && i < acl->n; i++)
        for (size_t k = 0; k < acl->c[i].n_keys; k++)
            if (memcmp(acl->c[i].keys[k], key, KP_KEY_BYTES) == 0)
                return acl->c[i].aid;
    return NULL;
}

static const struct acl_client *find_aid(const struct kp_acl *acl, const char *aid)
{
    for (size_t i = 0; acl && aid && i < acl->n; i++)
        if (strcmp(acl->c[i].aid, aid) == 0)
            return &acl->c[i];
    return NULL;
}

bool kp_acl_has_aid(const struct kp_acl *acl, const char *aid)
{
    return find_aid(acl, aid) != NULL;
}

static bool match(const char *pattern, const char *s)
{
    return fnmatch(pattern, s, 0) == 0;
}

enum kp_reason kp_acl_check_batch(const struct kp_acl *acl, const char *aid, const char *scheme,
                                  const char *src, char *msg, size_t msglen)
{
    const struct acl_client *c = find_aid(acl, aid);
    bool scheme_ok = false;
    for (size_t g = 0; c && g < c->n_grants; g++) {
        if (!match(c->grants[g].scheme, scheme))
            continue;
        scheme_ok = true;
        if (match(c->grants[g].src, src))
            return KP_R_OK;
    }
    if (!c)
        snprintf(msg, msglen, "adapter %s is no longer in the collector's key file", aid);
    else if (!scheme_ok)
        snprintf(msg, msglen, "adapter %s is not granted scheme %s", aid, scheme);
    else
        snprintf(msg, msglen, "adapter %s is not granted src %s in scheme %s", aid, src, scheme);
    return KP_R_not_granted_scheme;
}

bool kp_acl_indicator_granted(const struct kp_acl *acl, const char *aid, const char *scheme,
                              const char *src, const char *indicator)
{
    const struct acl_client *c = find_aid(acl, aid);
    for (size_t g = 0; c && g < c->n_grants; g++) {
        const struct acl_grant *gr = &c->grants[g];
        if (!match(gr->scheme, scheme) || !match(gr->src, src))
            continue;
        for (size_t k = 0; k < gr->n_ind; k++)
            if (match(gr->ind[k], indicator))
                return true;
    }
    return false;
}

/* ---- destruction ---------------------------------------------------------------------- */

static void grant_fini(struct acl_grant *g)
{
    free(g->scheme);
    free(g->src);
    for (size_t k = 0; k < g->n_ind; k++)
        free(g->ind[k]);
    free(g->ind);
}

void kp_acl_destroy(struct kp_acl **ap)
{
    if (!ap || !*ap)
        return;
    struct kp_acl *a = *ap;
    *ap = NULL;
    for (size_t i = 0; i < a->n; i++) {
        for (size_t g = 0; g < a->c[i].n_grants; g++)
            grant_fini(&a->c[i].grants[g]);
        free(a->c[i].grants);
        free(a->c[i].keys);
    }
    free(a->c);
    free(a);
}

/* ---- loading -------------------------------------------------------------------------- */

struct load {
    const char *path;
    yaml_document_t *doc;
    char *err;
    size_t errlen;
};

static int fail(struct load *l, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct load *l, const yaml_node_t *n, const char *fmt, ...)
{
    size_t k = (size_t)snprintf(l->err, l->errlen, "%s:%d: ", l->path,
                                n ? (int)n->start_mark.line + 1 : 1);
    if (k < l->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(l->err + k, l->errlen - k, fmt, ap);
        va_end(ap);
    }
    return KP_ECONFIG;
}

static yaml_node_t *node(struct load *l, int id)
{
    return yaml_document_get_node(l->doc, id);
}

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* A code or a glob pattern over codes: 1-64 characters of [A-Za-z0-9._:-*?[]!]. */
static bool pattern_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > KP_CODE_MAX)
        return false;
    for (const char *p = s; *p; p++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-*?[]!", *p))
            return false;
    return true;
}

static int get_pattern(struct load *l, yaml_node_t *v, const char *what, char **out)
{
    const char *s = scalar(v);
    if (!s || !pattern_valid(s))
        return fail(l, v, "%s: expected a code or glob pattern ([A-Za-z0-9._:-*?[]!], 1-64)", what);
    *out = kp_xstrdup(s);
    return 0;
}

static int load_grant(struct load *l, yaml_node_t *gn, struct acl_grant *g)
{
    if (gn->type != YAML_MAPPING_NODE)
        return fail(l, gn, "grants: each grant is a map {scheme, src, indicators}");
    yaml_node_t *ind = NULL;
    for (yaml_node_pair_t *p = gn->data.mapping.pairs.start; p < gn->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(l, p->key), *v = node(l, p->value);
        const char *key = scalar(k);
        int rc = 0;
        if (!key)
            return fail(l, k, "grants: keys must be scalars");
        if (!strcmp(key, "scheme")) {
            if (g->scheme)
                return fail(l, k, "scheme: given twice");
            rc = get_pattern(l, v, "scheme", &g->scheme);
        } else if (!strcmp(key, "src")) {
            if (g->src)
                return fail(l, k, "src: given twice");
            rc = get_pattern(l, v, "src", &g->src);
        } else if (!strcmp(key, "indicators")) {
            if (ind)
                return fail(l, k, "indicators: given twice");
            ind = v;
        } else {
            return fail(l, k, "%s: unknown key (scheme, src, indicators)", key);
        }
        if (rc)
            return rc;
    }
    if (!g->scheme)
        return fail(l, gn, "grant: scheme is required");
    if (!g->src)
        return fail(l, gn, "grant: src is required");
    if (!ind)
        return fail(l, gn, "grant: indicators is required (a list of patterns; \"*\" for all)");
    if (ind->type != YAML_SEQUENCE_NODE)
        return fail(l, ind, "indicators: expected a list of patterns");
    size_t n = (size_t)(ind->data.sequence.items.top - ind->data.sequence.items.start);
    if (n > ACL_PATTERNS_MAX)
        return fail(l, ind, "indicators: at most %d patterns", ACL_PATTERNS_MAX);
    g->ind = kp_xcalloc(n ? n : 1, sizeof *g->ind);
    for (size_t k = 0; k < n; k++) {
        int rc = get_pattern(l, node(l, ind->data.sequence.items.start[k]), "indicators",
                             &g->ind[g->n_ind]);
        if (rc)
            return rc;
        g->n_ind++;
    }
    return 0;
}

static int add_key(struct load *l, yaml_node_t *v, struct acl_client *c, size_t cap)
{
    const char *s = scalar(v);
    if (!s || kp_keys_z85_decode(s, c->keys[c->n_keys]) != 0)
        return fail(l, v, "key: expected a CURVE public key (40 Z85 characters, quoted)");
    KP_ASSERT(c->n_keys < cap);
    c->n_keys++;
    return 0;
}

static int load_client(struct load *l, yaml_node_t *cn, struct acl_client *c)
{
    if (cn->type != YAML_MAPPING_NODE)
        return fail(l, cn, "each client is a map {aid, key, grants}");
    yaml_node_t *key = NULL, *keys = NULL, *grants = NULL;
    bool have_aid = false;
    for (yaml_node_pair_t *p = cn->data.mapping.pairs.start; p < cn->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(l, p->key), *v = node(l, p->value);
        const char *name = scalar(k);
        if (!name)
            return fail(l, k, "keys of a client must be scalars");
        if (!strcmp(name, "aid")) {
            const char *s = scalar(v);
            if (have_aid)
                return fail(l, k, "aid: given twice");
            if (!s || !kp_code_valid(s, strlen(s)))
                return fail(l, v, "aid: must be 1-64 characters of [A-Za-z0-9._:-]");
            snprintf(c->aid, sizeof c->aid, "%s", s);
            have_aid = true;
        } else if (!strcmp(name, "key")) {
            if (key)
                return fail(l, k, "key: given twice");
            key = v;
        } else if (!strcmp(name, "keys")) {
            if (keys)
                return fail(l, k, "keys: given twice");
            keys = v;
        } else if (!strcmp(name, "grants")) {
            if (grants)
                return fail(l, k, "grants: given twice");
            grants = v;
        } else {
            return fail(l, k, "%s: unknown key (aid, key, keys, grants)", name);
        }
    }
    if (!have_aid)
        return fail(l, cn, "client: aid is required");
    if (!key && !keys)
        return fail(l, cn, "client %s: key (or keys) is required", c->aid);
    if (keys && keys->type != YAML_SEQUENCE_NODE)
        return fail(l, keys, "keys: expected a list of public keys");
    size_t nk =
        (key ? 1 : 0) +
        (keys ? (size_t)(keys->data.sequence.items.top - keys->data.sequence.items.start) : 0);
    if (nk == 0)
        return fail(l, cn, "client %s: at least one key is required", c->aid);
    if (nk > 64)
        return fail(l, cn, "client %s: at most 64 keys", c->aid);
    c->keys = kp_xcalloc(nk, sizeof *c->keys);
    int rc;
    if (key && (rc = add_key(l, key, c, nk)) != 0)
        return rc;
    for (size_t k = 0; keys && k < nk - (key ? 1 : 0); k++)
        if ((rc = add_key(l, node(l, keys->data.sequence.items.start[k]), c, nk)) != 0)
            return rc;
    if (grants && !(grants->type == YAML_SCALAR_NODE && !strcmp(scalar(grants), ""))) {
        if (grants->type != YAML_SEQUENCE_NODE)
            return fail(l, grants, "grants: expected a list of {scheme, src, indicators}");
        size_t ng = (size_t)(grants->data.sequence.items.top - grants->data.sequence.items.start);
        if (ng > ACL_PATTERNS_MAX)
            return fail(l, grants, "grants: at most %d", ACL_PATTERNS_MAX);
        c->grants = kp_xcalloc(ng ? ng : 1, sizeof *c->grants);
        for (size_t g = 0; g < ng; g++) {
            c->n_grants++;
            rc = load_grant(l, node(l, grants->data.sequence.items.start[g]), &c->grants[g]);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static int load_doc(struct load *l, struct kp_acl *a)
{
    yaml_node_t *root = yaml_document_get_root_node(l->doc);
    if (!root) /* an empty file: nobody is authorised */
        return 0;
    if (root->type == YAML_SCALAR_NODE && !strcmp(scalar(root), ""))
        return 0;
    if (root->type != YAML_SEQUENCE_NODE)
        return fail(l, root, "expected a list of clients (- aid: ..., key: ..., grants: ...)");
    size_t n = (size_t)(root->data.sequence.items.top - root->data.sequence.items.start);
    a->c = kp_xcalloc(n ? n : 1, sizeof *a->c);
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *cn = node(l, root->data.sequence.items.start[i]);
        a->n++;
        int rc = load_client(l, cn, &a->c[i]);
        if (rc)
            return rc;
        for (size_t j = 0; j < i; j++) {
            if (!strcmp(a->c[j].aid, a->c[i].aid))
                return fail(l, cn, "aid %s: listed twice", a->c[i].aid);
            for (size_t k = 0; k < a->c[i].n_keys; k++)
                for (size_t m = 0; m < a->c[j].n_keys; m++)
                    if (!memcmp(a->c[i].keys[k], a->c[j].keys[m], KP_KEY_BYTES))
                        return fail(l, cn, "aid %s: its key is also the key of %s", a->c[i].aid,
                                    a->c[j].aid);
        }
        for (size_t k = 0; k < a->c[i].n_keys; k++)
            for (size_t m = 0; m < k; m++)
                if (!memcmp(a->c[i].keys[k], a->c[i].keys[m], KP_KEY_BYTES))
                    return fail(l, cn, "aid %s: the same key listed twice", a->c[i].aid);
    }
    return 0;
}

int kp_acl_load(const char *path, struct kp_acl **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return KP_EIO;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    int rc;
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, errlen, "%s:%d: %s", path, (int)parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "YAML syntax error");
        yaml_parser_delete(&parser);
        fclose(f);
        return KP_ECONFIG;
    }
    struct load l = {path, &doc, err, errlen};
    struct kp_acl *a = kp_xcalloc(1, sizeof *a);
    rc = load_doc(&l, a);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
    if (rc) {
        kp_acl_destroy(&a);
        return rc;
    }
    *out = a;
    return 0;
}

/* ---- the refused frame ------------------------------------------------------------------ */

static void put_u8(struct kp_buf *b, uint8_t c)
{
    kp_buf_append(b, &c, 1);
}

static void put_be(struct kp_buf *b, uint64_t v, int bytes)
{
    for (int k = bytes - 1; k >= 0; k--)
        put_u8(b, (uint8_t)(v >> (8 * k)));
}

int kp_refused_encode(struct kp_buf *out, const struct kp_refused *r, size_t count)
{
    if (count == 0 || count > UINT32_MAX)
        return KP_EINVAL;
    for (size_t i = 0; i < count; i++)
        if (r[i].code == KP_R_OK || r[i].code >= KP_R__COUNT)
            return KP_EINVAL;
    if (count < 16) {
        put_u8(out, (uint8_t)(0x90 | count));
    } else if (count <= 0xffff) {
        put_u8(out, 0xdc);
        put_be(out, count, 2);
    } else {
        put_u8(out, 0xdd);
        put_be(out, count, 4);
    }
    for (size_t i = 0; i < count; i++) {
        put_u8(out, 0x92);
        put_u8(out, 0xce); /* uint32 */
        put_be(out, r[i].n, 4);
        const char *s = kp_reason_str(r[i].code);
        size_t n = strlen(s);
        put_u8(out, 0xd9); /* str8: reason strings are short */
        put_u8(out, (uint8_t)n);
        kp_buf_append(out, s, n);
    }
    return 0;
}

struct rd {
    const uint8_t *p, *end;
};

static bool get_be(struct rd *r, int bytes, uint64_t *v)
{
    if (r->end - r->p < bytes)
        return false;
    *v = 0;
    for (int k = 0; k < bytes; k++)
        *v = (*v << 8) | *r->p++;
    return true;
}

static bool get_uint(struct rd *r, uint64_t *v)
{
    if (r->p >= r->end)
        return false;
    uint8_t c = *r->p++;
    if (c <= 0x7f) {
        *v = c;
        return true;
    }
    switch (c) {
    case 0xcc:
        return get_be(r, 1, v);
    case 0xcd:
        return get_be(r, 2, v);
    case 0xce:
        return get_be(r, 4, v);
    case 0xcf:
        return get_be(r, 8, v);
    default:
        return false;
    }
}

static bool get_str(struct rd *r, const char **s, size_t *n)
{
    if (r->p >= r->end)
        return false;
    uint8_t c = *r->p++;
    uint64_t len;
    if ((c & 0xe0) == 0xa0)
        len = c & 0x1f;
    else if (c == 0xd9 && get_be(r, 1, &len))
        ;
    else if (c == 0xda && get_be(r, 2, &len))
        ;
    else
        return false;
    if ((uint64_t)(r->end - r->p) < len)
        return false;
    *s = (const char *)r->p;
    *n = (size_t)len;
    r->p += len;
    return true;
}

int kp_refused_decode(const void *frame, size_t len, struct kp_refused *out, size_t max)
{
    struct rd r = {frame, (const uint8_t *)frame + len};
    if (!frame || len == 0)
        return KP_EPROTO;
    uint8_t c = *r.p++;
    uint64_t count;
    if ((c & 0xf0) == 0x90)
        count = c & 0x0f;
    else if (c == 0xdc && get_be(&r, 2, &count))
        ;
    else if (c == 0xdd && get_be(&r, 4, &count))
        ;
    else
        return KP_EPROTO;
    if (count == 0 || count > max || count > (uint64_t)(r.end - r.p) / 3 || count > INT32_MAX)
        return KP_EPROTO;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t n;
        const char *s;
        size_t sl;
        if (r.p >= r.end || *r.p++ != 0x92 || !get_uint(&r, &n) || n > UINT32_MAX ||
            !get_str(&r, &s, &sl))
            return KP_EPROTO;
        enum kp_reason code = kp_reason_parse(s, sl);
        if (code == KP_R__COUNT || code == KP_R_OK)
            return KP_EPROTO;
        out[i].n = (uint32_t)n;
        out[i].code = code;
    }
    if (r.p != r.end)
        return KP_EPROTO;
    return (int)count;
}
