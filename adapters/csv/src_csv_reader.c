/*
 * src_csv_reader: decoding, the RFC 4180 record reader, unit names and period spellings of
 * the `csv` source (see src_csv_reader.h). The reader is a small state machine over the whole
 * decoded text rather than a streaming library: the source needs, for every record, the byte
 * offset where the next one starts (its crash cursor, ARCHITECTURE.md guarantee 1) and the
 * line where it began (the dead letters of issue 4), and it needs a malformed record to cost
 * that record only, never the rest of the file.
 */
#include "src_csv_reader.h"

#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "kp_err.h"
#include "kp_msg.h"

/* ---- decoding ---------------------------------------------------------------------------- */

#define BAD_LIST_MAX 4096 /* bad sequences remembered with their file offset */

static const char replacement[3] = {(char)0xEF, (char)0xBF, (char)0xBD}; /* U+FFFD */

static int ascii_casecmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        int ca = (unsigned char)*a, cb = (unsigned char)*b;
        if (ca >= 'A' && ca <= 'Z')
            ca += 'a' - 'A';
        if (cb >= 'A' && cb <= 'Z')
            cb += 'a' - 'A';
        if (ca != cb || !ca)
            return ca - cb;
    }
}

int csv_enc_parse(const char *s, enum csv_enc *out)
{
    static const struct {
        const char *name;
        enum csv_enc e;
    } names[] = {{"auto", CSV_ENC_AUTO}, {"utf-8", CSV_ENC_UTF8}, {"utf8", CSV_ENC_UTF8},
                 {"gbk", CSV_ENC_GBK},   {"cp936", CSV_ENC_GBK},  {"gb18030", CSV_ENC_GB18030}};
    for (size_t k = 0; s && k < sizeof names / sizeof names[0]; k++)
        if (ascii_casecmp(s, names[k].name) == 0) {
            *out = names[k].e;
            return 0;
        }
    return KP_EINVAL;
}

const char *csv_enc_name(enum csv_enc e)
{
    switch (e) {
    case CSV_ENC_AUTO:
        return "auto";
    case CSV_ENC_UTF8:
        return "utf-8";
    case CSV_ENC_GBK:
        return "gbk";
    case CSV_ENC_GB18030:
        return "gb18030";
    }
    return "?";
}

/* Length of the well-formed UTF-8 sequence at p (n bytes left), 0 when there is none: no
 * overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    if (c < 0xC2 || c > 0xF4)
        return 0;
    size_t len = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (n < len)
        return 0;
    for (size_t k = 1; k < len; k++)
        if ((p[k] & 0xC0) != 0x80)
            return 0;
    if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] >= 0xA0) || (c == 0xF0 && p[1] < 0x90) ||
        (c == 0xF4 && p[1] >= 0x90))
        return 0;
    return len;
}

static bool utf8_all_valid(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t l = utf8_seq(p + i, n - i);
        if (!l)
            return false;
        i += l;
    }
    return true;
}

struct dec {
    struct kp_buf out;
    struct csv_text *t;
    size_t bad_cap;
};

static void mark_bad(struct dec *d, size_t in_off, unsigned char byte)
{
    struct csv_text *t = d->t;
    if (t->n_bad < BAD_LIST_MAX) {
        if (t->n_bad == d->bad_cap) {
            d->bad_cap = d->bad_cap ? d->bad_cap * 2 : 16;
            t->bad = kp_xrealloc(t->bad, d->bad_cap * sizeof *t->bad);
        }
        t->bad[t->n_bad].at = d->out.len;
        t->bad[t->n_bad].in_off = in_off;
        t->bad[t->n_bad].byte = byte;
        t->n_bad++;
    }
    kp_buf_append(&d->out, replacement, sizeof replacement);
}

static void decode_utf8(struct dec *d, const unsigned char *in, size_t len, size_t base)
{
    size_t i = 0;
    while (i < len) {
        size_t l = in[i] ? utf8_seq(in + i, len - i) : 0;
        if (!l) {
            mark_bad(d, base + i, in[i]);
            i++;
            continue;
        }
        /* copy the whole run of good sequences at once */
        size_t j = i + l;
        while (j < len && in[j]) {
            size_t m = utf8_seq(in + j, len - j);
            if (!m)
                break;
            j += m;
        }
        kp_buf_append(&d->out, in + i, j - i);
        i = j;
    }
}

static int decode_iconv(struct dec *d, const char *from, const unsigned char *in, size_t len)
{
    iconv_t cd = iconv_open("UTF-8", from);
    if (cd == (iconv_t)-1)
        return KP_EIO;
    size_t i = 0;
    while (i < len) {
        if (in[i] == 0) { /* NUL: never part of a GBK character, never text */
            mark_bad(d, i, 0);
            i++;
            continue;
        }
        size_t j = i;
        while (j < len && in[j])
            j++;
        char *ip = (char *)(uintptr_t)(in + i);
        size_t il = j - i;
        while (il > 0) {
            kp_buf_reserve(&d->out, il * 3 + 16);
            char *op = (char *)d->out.data + d->out.len;
            size_t ol = d->out.cap - d->out.len;
            size_t r = iconv(cd, &ip, &il, &op, &ol);
            d->out.len = (size_t)(op - (char *)d->out.data);
            if (r != (size_t)-1)
                break;
            if (errno == E2BIG)
                continue; /* reserve more and go on */
            /* EILSEQ or EINVAL (a sequence cut by the end or by a NUL): skip one byte */
            size_t at = (size_t)((const unsigned char *)ip - in);
            mark_bad(d, at, in[at]);
            ip++;
            il--;
            iconv(cd, NULL, NULL, NULL, NULL);
        }
        i = j;
    }
    iconv_close(cd);
    return 0;
}

int csv_decode(const char *in_, size_t len, enum csv_enc enc, struct csv_text *out)
{
    memset(out, 0, sizeof *out);
    const unsigned char *in = (const unsigned char *)in_;
    struct dec d = {{0}, out, 0};
    bool bom = len >= 3 && in[0] == 0xEF && in[1] == 0xBB && in[2] == 0xBF;
    if (enc == CSV_ENC_AUTO)
        enc = bom || utf8_all_valid(in, len) ? CSV_ENC_UTF8 : CSV_ENC_GBK;
    int rc = 0;
    if (enc == CSV_ENC_UTF8) {
        size_t skip = bom ? 3 : 0;
        out->bom = bom;
        kp_buf_reserve(&d.out, len + 1);
        decode_utf8(&d, in + skip, len - skip, skip);
    } else {
        rc = decode_iconv(&d, enc == CSV_ENC_GBK ? "GBK" : "GB18030", in, len);
    }
    out->enc = enc;
    out->len = d.out.len;
    kp_buf_cstr(&d.out);
    out->data = (char *)d.out.data;
    if (!out->data) {
        out->data = kp_xstrdup("");
        out->len = 0;
    }
    if (rc != 0)
        csv_text_fini(out);
    return rc;
}

void csv_text_fini(struct csv_text *t)
{
    free(t->data);
    free(t->bad);
    memset(t, 0, sizeof *t);
}

const struct csv_badseq *csv_text_bad_in(const struct csv_text *t, size_t from, size_t to)
{
    size_t lo = 0, hi = t->n_bad; /* first with at >= from */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->bad[mid].at < from)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < t->n_bad && t->bad[lo].at < to ? &t->bad[lo] : NULL;
}

long csv_line_at(const char *text, size_t off)
{
    /* text is NUL-terminated and off <= its length, so text[i + 1] can be read */
    long n = 0;
    for (size_t i = 0; i < off; i++)
        if (text[i] == '\n' || (text[i] == '\r' && text[i + 1] != '\n'))
            n++;
    return n;
}

/* ---- the record reader ------------------------------------------------------------------- */

void csv_reader_init(struct csv_reader *r, const char *text, size_t len, char delim, size_t pos,
                     long line)
{
    memset(r, 0, sizeof *r);
    r->text = text;
    r->len = len;
    r->delim = delim;
    r->pos = pos > len ? len : pos;
    r->line = line;
}

void csv_reader_fini(struct csv_reader *r)
{
    kp_buf_fini(&r->arena);
}

static bool is_stop(const struct csv_reader *r, char c)
{
    return c == r->delim || c == '\r' || c == '\n';
}

bool csv_reader_next(struct csv_reader *r, struct csv_rec *rec)
{
    const char *t = r->text;
    size_t n = r->len, i = r->pos;
    if (i >= n)
        return false;
    kp_buf_reset(&r->arena);
    memset(rec, 0, sizeof *rec);
    rec->off = i;
    rec->line = r->line;
    for (;;) {
        struct csv_field fld = {.start = i, .val = r->arena.len};
        if (i < n && t[i] == '"') {
            fld.quoted = true;
            i++;
            bool closed = false;
            while (i < n) {
                size_t j = i;
                while (j < n && t[j] != '"' && t[j] != '\r' && t[j] != '\n')
                    j++;
                kp_buf_append(&r->arena, t + i, j - i);
                i = j;
                if (i >= n)
                    break;
                if (t[i] == '"') {
                    if (i + 1 < n && t[i + 1] == '"') {
                        kp_buf_append(&r->arena, "\"", 1);
                        i += 2;
                        continue;
                    }
                    i++;
                    closed = true;
                    break;
                }
                /* a line break inside quotes is part of the value */
                size_t brk = t[i] == '\r' && i + 1 < n && t[i + 1] == '\n' ? 2 : 1;
                kp_buf_append(&r->arena, t + i, brk);
                i += brk;
                r->line++;
            }
            if (!closed && !rec->err)
                rec->err = "a quoted field is not closed before the end of the file";
            size_t j = i;
            while (j < n && !is_stop(r, t[j]))
                j++;
            if (j > i) {
                if (!rec->err)
                    rec->err = "text after the closing quote of a field";
                kp_buf_append(&r->arena, t + i, j - i);
                i = j;
            }
        } else {
            size_t j = i;
            while (j < n && !is_stop(r, t[j]))
                j++;
            kp_buf_append(&r->arena, t + i, j - i);
            i = j;
        }
        fld.end = i;
        fld.len = r->arena.len - fld.val;
        kp_buf_append(&r->arena, "", 1);
        if (rec->nf < CSV_MAX_FIELDS)
            r->f[rec->nf++] = fld;
        else if (!rec->err)
            rec->err = "more than 512 fields";
        if (i < n && t[i] == r->delim) {
            i++;
            continue;
        }
        break;
    }
    rec->end = i;
    if (i < n) {
        if (t[i] == '\r' && i + 1 < n && t[i + 1] == '\n')
            i += 2;
        else
            i++;
        r->line++;
    }
    rec->next = i;
    rec->next_line = r->line;
    r->pos = i;
    return true;
}

const char *csv_reader_value(const struct csv_reader *r, const struct csv_rec *rec, size_t k)
{
    if (k >= rec->nf)
        return "";
    return (const char *)r->arena.data + r->f[k].val;
}

bool csv_rec_blank(const struct csv_reader *r, const struct csv_rec *rec)
{
    for (size_t k = 0; k < rec->nf; k++) {
        const char *v = csv_reader_value(r, rec, k);
        for (; *v; v++)
            if (*v != ' ' && *v != '\t')
                return false;
    }
    return true;
}

/* ---- unit names -------------------------------------------------------------------------- */

struct unit {
    char *code, *name, *norm;
};

struct csv_units {
    struct unit *by_norm;  /* sorted by norm */
    struct unit **by_code; /* sorted by code */
    size_t n;
};

/* Drops ASCII white space, U+3000 and U+00A0; reads （） as (). */
static char *norm_name(const char *s)
{
    size_t n = strlen(s);
    char *o = kp_xmalloc(n + 1), *w = o;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
            p++;
        } else if (p[0] == 0xE3 && p[1] == 0x80 && p[2] == 0x80) {
            p += 3;
        } else if (p[0] == 0xC2 && p[1] == 0xA0) {
            p += 2;
        } else if (p[0] == 0xEF && p[1] == 0xBC && (p[2] == 0x88 || p[2] == 0x89)) {
            *w++ = p[2] == 0x88 ? '(' : ')';
            p += 3;
        } else {
            *w++ = (char)*p++;
        }
    }
    *w = 0;
    return o;
}

static int cmp_norm(const void *a, const void *b)
{
    return strcmp(((const struct unit *)a)->norm, ((const struct unit *)b)->norm);
}

static int cmp_code(const void *a, const void *b)
{
    return strcmp((*(struct unit *const *)a)->code, (*(struct unit *const *)b)->code);
}

static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && k->data.scalar.length == strlen(key) &&
            memcmp(k->data.scalar.value, key, k->data.scalar.length) == 0)
            return yaml_document_get_node(doc, p->value);
    }
    return NULL;
}

static const char *scalar(yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

void csv_units_destroy(struct csv_units **up)
{
    if (!up || !*up)
        return;
    struct csv_units *u = *up;
    for (size_t k = 0; k < u->n; k++) {
        free(u->by_norm[k].code);
        free(u->by_norm[k].name);
        free(u->by_norm[k].norm);
    }
    free(u->by_norm);
    free(u->by_code);
    free(u);
    *up = NULL;
}

int csv_units_load(const char *path, const char *want_scheme, struct csv_units **out, char *err,
                   size_t errlen)
{
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return KP_ECONFIG;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, fp);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, errlen, "%s:%lu: %s", path, (unsigned long)parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "YAML error");
        yaml_parser_delete(&parser);
        fclose(fp);
        return KP_ECONFIG;
    }
    yaml_parser_delete(&parser);
    fclose(fp);

    int rc = KP_ECONFIG;
    struct csv_units *u = kp_xcalloc(1, sizeof *u);
    size_t cap = 0;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    const char *sc = scalar(map_get(&doc, root, "scheme"));
    yaml_node_t *groups = map_get(&doc, root, "groups");
    if (!sc || !groups || groups->type != YAML_SEQUENCE_NODE) {
        snprintf(err, errlen, "%s: not an assessment scheme (no scheme: and groups:)", path);
        goto done;
    }
    if (want_scheme && strcmp(sc, want_scheme) != 0) {
        snprintf(err, errlen, "%s: is scheme %s, not %s", path, sc, want_scheme);
        goto done;
    }
    for (yaml_node_item_t *g = groups->data.sequence.items.start;
         g < groups->data.sequence.items.top; g++) {
        yaml_node_t *units = map_get(&doc, yaml_document_get_node(&doc, *g), "units");
        if (!units || units->type != YAML_SEQUENCE_NODE)
            continue;
        for (yaml_node_item_t *it = units->data.sequence.items.start;
             it < units->data.sequence.items.top; it++) {
            yaml_node_t *un = yaml_document_get_node(&doc, *it);
            const char *code = scalar(map_get(&doc, un, "code"));
            const char *name = scalar(map_get(&doc, un, "name"));
            if (!code || !name) {
                snprintf(err, errlen, "%s:%lu: a unit without code or name", path,
                         un ? (unsigned long)un->start_mark.line + 1 : 0ul);
                goto done;
            }
            if (u->n == cap) {
                cap = cap ? cap * 2 : 64;
                u->by_norm = kp_xrealloc(u->by_norm, cap * sizeof *u->by_norm);
            }
            struct unit *x = &u->by_norm[u->n++];
            x->code = kp_xstrdup(code);
            x->name = kp_xstrdup(name);
            x->norm = norm_name(name);
        }
    }
    if (u->n == 0) {
        snprintf(err, errlen, "%s: the scheme lists no units", path);
        goto done;
    }
    qsort(u->by_norm, u->n, sizeof *u->by_norm, cmp_norm);
    for (size_t k = 1; k < u->n; k++)
        if (strcmp(u->by_norm[k - 1].norm, u->by_norm[k].norm) == 0) {
            snprintf(err, errlen, "%s: units %s and %s have the same name %s", path,
                     u->by_norm[k - 1].code, u->by_norm[k].code, u->by_norm[k].name);
            goto done;
        }
    u->by_code = kp_xcalloc(u->n, sizeof *u->by_code);
    for (size_t k = 0; k < u->n; k++)
        u->by_code[k] = &u->by_norm[k];
    qsort(u->by_code, u->n, sizeof *u->by_code, cmp_code);
    rc = 0;
done:
    yaml_document_delete(&doc);
    if (rc != 0)
        csv_units_destroy(&u);
    *out = u;
    return rc;
}

size_t csv_units_count(const struct csv_units *u)
{
    return u ? u->n : 0;
}

bool csv_units_has_code(const struct csv_units *u, const char *code)
{
    struct unit key = {.code = (char *)(uintptr_t)code}, *kp = &key;
    return u && bsearch(&kp, u->by_code, u->n, sizeof *u->by_code, cmp_code) != NULL;
}

const char *csv_units_code(const struct csv_units *u, const char *name)
{
    if (!u || !name)
        return NULL;
    char *norm = norm_name(name);
    struct unit key = {.norm = norm};
    const struct unit *hit = bsearch(&key, u->by_norm, u->n, sizeof *u->by_norm, cmp_norm);
    const char *code = hit ? hit->code : NULL;
    if (!code) {
        struct unit ck = {.code = norm}, *ckp = &ck;
        struct unit **h = bsearch(&ckp, u->by_code, u->n, sizeof *u->by_code, cmp_code);
        code = h ? (*h)->code : NULL;
    }
    free(norm);
    return code;
}

/* ---- periods ----------------------------------------------------------------------------- */

static bool eat(const char **p, const char *lit)
{
    size_t n = strlen(lit);
    if (strncmp(*p, lit, n) != 0)
        return false;
    *p += n;
    return true;
}

/* Reads 1..max ASCII digits. */
static int digits(const char **p, int max, int *v)
{
    int n = 0, x = 0;
    while (n < max && **p >= '0' && **p <= '9') {
        x = x * 10 + (**p - '0');
        (*p)++;
        n++;
    }
    *v = x;
    return n;
}

static bool done_valid(char *out, size_t cap)
{
    return cap > 0 && kp_period_valid(out, strlen(out), NULL);
}

bool csv_period_norm(const char *in, char *out, size_t cap)
{
    if (!cap)
        return false;
    out[0] = 0;
    /* trim */
    while (*in == ' ' || *in == '\t')
        in++;
    size_t n = strlen(in);
    while (n && (in[n - 1] == ' ' || in[n - 1] == '\t'))
        n--;
    char buf[64];
    if (n == 0 || n >= sizeof buf)
        return false;
    memcpy(buf, in, n);
    buf[n] = 0;
    if (kp_period_valid(buf, n, NULL)) {
        snprintf(out, cap, "%s", buf);
        return true;
    }
    const char *p = buf;
    int y, m, d, q;
    if (digits(&p, 4, &y) != 4)
        return false;
    if (*p >= '0' && *p <= '9') { /* 201503 or 20150331 */
        if (digits(&p, 2, &m) != 2)
            return false;
        if (!*p) {
            snprintf(out, cap, "%04d-%02d", y, m);
            return done_valid(out, cap);
        }
        if (digits(&p, 2, &d) != 2 || *p)
            return false;
        snprintf(out, cap, "%04d-%02d-%02d", y, m, d);
        return done_valid(out, cap);
    }
    const char *y_end = p;
    if (!*p || ((eat(&p, "年度") || eat(&p, "年")) && !*p)) {
        snprintf(out, cap, "%04d", y);
        return done_valid(out, cap);
    }
    p = y_end;
    if (eat(&p, "Q") || eat(&p, "q") || eat(&p, "-Q") || eat(&p, "-q")) {
        if (digits(&p, 1, &q) != 1 || *p)
            return false;
        snprintf(out, cap, "%04d-Q%d", y, q);
        return done_valid(out, cap);
    }
    if (eat(&p, "年")) {
        if (eat(&p, "上半年") && !*p) {
            snprintf(out, cap, "%04d-H1", y);
            return done_valid(out, cap);
        }
        if (eat(&p, "下半年") && !*p) {
            snprintf(out, cap, "%04d-H2", y);
            return done_valid(out, cap);
        }
        const char *save = p;
        eat(&p, "第");
        if (digits(&p, 1, &q) == 1 && (eat(&p, "季度") || eat(&p, "季")) && !*p) {
            snprintf(out, cap, "%04d-Q%d", y, q);
            return done_valid(out, cap);
        }
        p = save;
        if (digits(&p, 2, &m) < 1 || !eat(&p, "月"))
            return false;
        if (!*p) {
            snprintf(out, cap, "%04d-%02d", y, m);
            return done_valid(out, cap);
        }
        if (digits(&p, 2, &d) < 1 || !(eat(&p, "日") || eat(&p, "号")) || *p)
            return false;
        snprintf(out, cap, "%04d-%02d-%02d", y, m, d);
        return done_valid(out, cap);
    }
    char sep = *p;
    if (sep != '-' && sep != '/' && sep != '.')
        return false;
    p++;
    if (digits(&p, 2, &m) < 1)
        return false;
    if (!*p) {
        snprintf(out, cap, "%04d-%02d", y, m);
        return done_valid(out, cap);
    }
    if (*p != sep)
        return false;
    p++;
    if (digits(&p, 2, &d) < 1 || *p)
        return false;
    snprintf(out, cap, "%04d-%02d-%02d", y, m, d);
    return done_valid(out, cap);
}
