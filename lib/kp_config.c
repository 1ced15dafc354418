/*
 * kp_config: the one configuration loader of every daemon (STYLE.md "Configuration and
 * logs"). A module describes its settings in a table of kp_cfg_entry (key, type, default,
 * bounds, target field, reloadable, help); this file fills a struct from the defaults, from a
 * YAML file parsed with libyaml's document loader (nested maps become dotted keys, sequences
 * of scalars become string lists) and from `--set key=value` overrides, and it prints the
 * table as help. Every refusal names where it happened, `file:line: key: reason`, so an
 * operator fixes a config without reading code; a refused file leaves the defaults in place
 * and never a half-applied file. Reload (SIGHUP) loads a fresh struct with the same table and
 * copies only the reloadable fields over the live one.
 */
#include "kp_config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "kp_err.h"

#define KEY_MAX    256 /* longest dotted key */
#define REASON_MAX 512

static size_t table_len(const struct kp_cfg_entry *table)
{
    size_t n = 0;
    while (table[n].key)
        n++;
    return n;
}

static void *field(void *target, const struct kp_cfg_entry *e)
{
    return (char *)target + e->offset;
}

static const void *cfield(const void *target, const struct kp_cfg_entry *e)
{
    return (const char *)target + e->offset;
}

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* --- lists -------------------------------------------------------------------------------- */

static void list_free(char ***lp)
{
    if (!*lp)
        return;
    for (char **p = *lp; *p; p++)
        free(*p);
    free(*lp);
    *lp = NULL;
}

static size_t list_len(char *const *l)
{
    size_t n = 0;
    while (l && l[n])
        n++;
    return n;
}

static char **list_dup(char *const *l)
{
    if (!l)
        return NULL;
    size_t n = list_len(l);
    char **out = kp_xcalloc(n + 1, sizeof *out);
    for (size_t i = 0; i < n; i++)
        out[i] = kp_xstrdup(l[i]);
    return out;
}

static bool list_eq(char *const *a, char *const *b)
{
    if (!a || !b)
        return a == b;
    size_t i = 0;
    for (; a[i] && b[i]; i++) {
        if (strcmp(a[i], b[i]) != 0)
            return false;
    }
    return !a[i] && !b[i];
}

/* "a, b,c" -> {"a","b","c",NULL}; "" -> {NULL} */
static char **list_split(const char *s)
{
    size_t n = 1;
    for (const char *p = s; *p; p++)
        n += *p == ',';
    char **out = kp_xcalloc(n + 1, sizeof *out);
    if (!*s)
        return out;
    size_t k = 0;
    for (const char *p = s;; p++) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && isspace((unsigned char)*a))
            a++;
        while (b > a && isspace((unsigned char)b[-1]))
            b--;
        char *item = kp_xmalloc((size_t)(b - a) + 1);
        memcpy(item, a, (size_t)(b - a));
        item[b - a] = 0;
        out[k++] = item;
        if (!*end)
            return out;
        p = end;
    }
}

/* --- scalar parsing ----------------------------------------------------------------------- */

static const char *type_name(enum kp_cfg_type t)
{
    switch (t) {
    case KP_CFG_STR:
        return "string";
    case KP_CFG_INT:
        return "int";
    case KP_CFG_DOUBLE:
        return "number";
    case KP_CFG_BOOL:
        return "bool";
    case KP_CFG_MS:
        return "duration";
    case KP_CFG_BYTES:
        return "bytes";
    case KP_CFG_STRLIST:
        return "list";
    }
    return "?";
}

static void fmt_num(char *buf, size_t len, double v)
{
    snprintf(buf, len, "%.15g", v);
}

/* [+-]digits[.digits] at the start of s; copies it to a buffer and converts. */
static bool scan_num(const char *s, double *out, const char **end)
{
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    if (!isdigit((unsigned char)*p))
        return false;
    while (isdigit((unsigned char)*p))
        p++;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p))
            p++;
    }
    char buf[64];
    size_t n = (size_t)(p - s);
    if (n >= sizeof buf)
        return false;
    memcpy(buf, s, n);
    buf[n] = 0;
    *out = strtod(buf, NULL);
    *end = p;
    return isfinite(*out);
}

static bool parse_ll(const char *s, long long *out)
{
    if (!*s || isspace((unsigned char)*s))
        return false;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

static bool parse_double(const char *s, double *out)
{
    if (!*s || isspace((unsigned char)*s))
        return false;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (*end || !isfinite(v))
        return false;
    *out = v;
    return true;
}

static bool parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

/* number times a unit factor, rounded to an integer that fits a long long */
static bool scaled(double num, double mult, long long *out)
{
    double v = num * mult;
    if (!isfinite(v) || v >= 9.2e18 || v <= -9.2e18)
        return false;
    *out = llround(v);
    return true;
}

static bool parse_ms(const char *s, long long *out)
{
    double num;
    const char *u;
    if (!scan_num(s, &num, &u))
        return false;
    while (*u == ' ')
        u++;
    double mult;
    if (!*u || strcmp(u, "ms") == 0)
        mult = 1;
    else if (strcmp(u, "s") == 0)
        mult = 1000;
    else if (strcmp(u, "m") == 0)
        mult = 60000;
    else if (strcmp(u, "h") == 0)
        mult = 3600000;
    else
        return false;
    return scaled(num, mult, out);
}

static bool parse_bytes(const char *s, long long *out)
{
    static const struct {
        char c;
        double mult;
    } units[] = {{'k', 1024.0}, {'m', 1048576.0}, {'g', 1073741824.0}, {'t', 1099511627776.0}};
    double num;
    const char *u;
    if (!scan_num(s, &num, &u))
        return false;
    while (*u == ' ')
        u++;
    double mult = 0;
    if (!*u || strcasecmp(u, "b") == 0) {
        mult = 1;
    } else {
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            if (tolower((unsigned char)u[0]) != units[i].c)
                continue;
            const char *rest = u + 1; /* "", "b", "ib" */
            if (!*rest || strcasecmp(rest, "b") == 0 || strcasecmp(rest, "ib") == 0)
                mult = units[i].mult;
        }
    }
    if (mult == 0)
        return false;
    return scaled(num, mult, out);
}

static bool check_bounds(const struct kp_cfg_entry *e, double v, char *reason, size_t rlen)
{
    if (e->min > e->max || (v >= e->min && v <= e->max))
        return true;
    char a[40], lo[40], hi[40];
    fmt_num(a, sizeof a, v);
    fmt_num(lo, sizeof lo, e->min);
    fmt_num(hi, sizeof hi, e->max);
    const char *u = e->type == KP_CFG_MS ? "ms" : "";
    snprintf(reason, rlen, "%s%s is out of range [%s%s, %s%s]", a, u, lo, u, hi, u);
    return false;
}

/* Sets the field of e from text (NULL = YAML null: unset a string or list). Returns 0 or -1
 * with reason. The field keeps its old value on failure. */
static int set_text(const struct kp_cfg_entry *e, void *target, const char *text, char *reason,
                    size_t rlen)
{
    void *f = field(target, e);
    long long ll;
    double d;
    bool b;
    switch (e->type) {
    case KP_CFG_STR: {
        char **sp = f;
        free(*sp);
        *sp = text ? kp_xstrdup(text) : NULL;
        return 0;
    }
    case KP_CFG_STRLIST: {
        char ***lp = f;
        list_free(lp);
        *lp = text ? list_split(text) : NULL;
        return 0;
    }
    default:
        break;
    }
    if (!text)
        text = "";
    switch (e->type) {
    case KP_CFG_INT:
        if (!parse_ll(text, &ll)) {
            snprintf(reason, rlen, "expected an integer, got \"%s\"", text);
            return -1;
        }
        if (!check_bounds(e, (double)ll, reason, rlen))
            return -1;
        *(long long *)f = ll;
        return 0;
    case KP_CFG_DOUBLE:
        if (!parse_double(text, &d)) {
            snprintf(reason, rlen, "expected a number, got \"%s\"", text);
            return -1;
        }
        if (!check_bounds(e, d, reason, rlen))
            return -1;
        *(double *)f = d;
        return 0;
    case KP_CFG_BOOL:
        if (!parse_bool(text, &b)) {
            snprintf(reason, rlen, "expected a boolean (true/false, yes/no, on/off), got \"%s\"",
                     text);
            return -1;
        }
        *(bool *)f = b;
        return 0;
    case KP_CFG_MS:
        if (!parse_ms(text, &ll)) {
            snprintf(reason, rlen, "expected a duration (e.g. 250ms, 5s, 2m, 1h), got \"%s\"",
                     text);
            return -1;
        }
        if (!check_bounds(e, (double)ll, reason, rlen))
            return -1;
        *(long long *)f = ll;
        return 0;
    case KP_CFG_BYTES:
        if (!parse_bytes(text, &ll)) {
            snprintf(reason, rlen, "expected a byte size (e.g. 64k, 16M, 2G), got \"%s\"", text);
            return -1;
        }
        if (!check_bounds(e, (double)ll, reason, rlen))
            return -1;
        *(long long *)f = ll;
        return 0;
    default:
        return -1;
    }
}

static void zero_field(const struct kp_cfg_entry *e, void *target)
{
    void *f = field(target, e);
    switch (e->type) {
    case KP_CFG_STR:
        *(char **)f = NULL;
        break;
    case KP_CFG_STRLIST:
        *(char ***)f = NULL;
        break;
    case KP_CFG_INT:
    case KP_CFG_MS:
    case KP_CFG_BYTES:
        *(long long *)f = 0;
        break;
    case KP_CFG_DOUBLE:
        *(double *)f = 0;
        break;
    case KP_CFG_BOOL:
        *(bool *)f = false;
        break;
    }
}

/* --- public: defaults, set, fini ---------------------------------------------------------- */

int kp_config_defaults(const struct kp_cfg_entry *table, void *target, char *err, size_t errlen)
{
    for (const struct kp_cfg_entry *e = table; e->key; e++)
        zero_field(e, target);
    for (const struct kp_cfg_entry *e = table; e->key; e++) {
        if (!e->def)
            continue;
        char reason[REASON_MAX];
        if (set_text(e, target, e->def, reason, sizeof reason) != 0) {
            seterr(err, errlen, "%s: bad default: %s", e->key, reason);
            kp_config_fini(table, target);
            return KP_ECONFIG;
        }
    }
    return 0;
}

void kp_config_fini(const struct kp_cfg_entry *table, void *target)
{
    for (const struct kp_cfg_entry *e = table; e->key; e++) {
        void *f = field(target, e);
        if (e->type == KP_CFG_STR) {
            free(*(char **)f);
            *(char **)f = NULL;
        } else if (e->type == KP_CFG_STRLIST) {
            list_free((char ***)f);
        }
    }
}

static const struct kp_cfg_entry *find_entry(const struct kp_cfg_entry *table, const char *key)
{
    for (const struct kp_cfg_entry *e = table; e->key; e++) {
        if (strcmp(e->key, key) == 0)
            return e;
    }
    return NULL;
}

int kp_config_set(const struct kp_cfg_entry *table, void *target, const char *key,
                  const char *value, char *err, size_t errlen)
{
    const struct kp_cfg_entry *e = key ? find_entry(table, key) : NULL;
    if (!e) {
        seterr(err, errlen, "%s: unknown key", key ? key : "(null)");
        return KP_ECONFIG;
    }
    char reason[REASON_MAX];
    if (set_text(e, target, value ? value : "", reason, sizeof reason) != 0) {
        seterr(err, errlen, "%s: %s", key, reason);
        return KP_ECONFIG;
    }
    return 0;
}

/* --- YAML walk ---------------------------------------------------------------------------- */

struct load {
    const char *path;
    const struct kp_cfg_entry *table;
    void *target;
    yaml_document_t *doc;
    int *seen_line; /* per entry: line where the file set it, 0 = not in the file */
    bool *provided; /* per entry: a non-null value came from the file or a --set */
    char *err;
    size_t errlen;
};

static int line_of(const yaml_node_t *n)
{
    return (int)n->start_mark.line + 1;
}

static int fail_at(struct load *l, const yaml_node_t *n, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail_at(struct load *l, const yaml_node_t *n, const char *key, const char *fmt, ...)
{
    char reason[REASON_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    seterr(l->err, l->errlen, "%s:%d: %s: %s", l->path, line_of(n), key, reason);
    return KP_ECONFIG;
}

static const char *node_kind(const yaml_node_t *n)
{
    return n->type == YAML_SEQUENCE_NODE ? "a list" : "a map";
}

static bool is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    return !*v || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
           strcmp(v, "NULL") == 0;
}

/* Any table key below prefix ("db" -> "db.dsn")? */
static bool has_children(const struct kp_cfg_entry *table, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const struct kp_cfg_entry *e = table; e->key; e++) {
        if (strncmp(e->key, prefix, n) == 0 && e->key[n] == '.')
            return true;
    }
    return false;
}

static int set_from_node(struct load *l, const struct kp_cfg_entry *e, yaml_node_t *v)
{
    size_t idx = (size_t)(e - l->table);
    char reason[REASON_MAX];
    if (e->type == KP_CFG_STRLIST) {
        char ***lp = field(l->target, e);
        if (is_null(v)) {
            list_free(lp);
            return 0;
        }
        if (v->type != YAML_SEQUENCE_NODE)
            return fail_at(l, v, e->key, "expected a list of strings");
        size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
        for (size_t i = 0; i < n; i++) {
            yaml_node_t *it = yaml_document_get_node(l->doc, v->data.sequence.items.start[i]);
            if (!it || it->type != YAML_SCALAR_NODE)
                return fail_at(l, it ? it : v, e->key, "expected a list of strings, item is %s",
                               it ? node_kind(it) : "missing");
        }
        char **list = kp_xcalloc(n + 1, sizeof *list);
        for (size_t i = 0; i < n; i++) {
            yaml_node_t *it = yaml_document_get_node(l->doc, v->data.sequence.items.start[i]);
            list[i] = kp_xstrdup((const char *)it->data.scalar.value);
        }
        list_free(lp);
        *lp = list;
        l->provided[idx] = true;
        return 0;
    }
    if (v->type != YAML_SCALAR_NODE)
        return fail_at(l, v, e->key, "expected a single value, got %s", node_kind(v));
    bool null = is_null(v);
    const char *text = null && e->type == KP_CFG_STR ? NULL : (const char *)v->data.scalar.value;
    if (set_text(e, l->target, text, reason, sizeof reason) != 0)
        return fail_at(l, v, e->key, "%s", reason);
    l->provided[idx] = text != NULL;
    return 0;
}

static int walk_map(struct load *l, yaml_node_t *map, const char *prefix)
{
    yaml_node_pair_t *start = map->data.mapping.pairs.start;
    yaml_node_pair_t *top = map->data.mapping.pairs.top;
    for (yaml_node_pair_t *p = start; p < top; p++) {
        yaml_node_t *k = yaml_document_get_node(l->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(l->doc, p->value);
        if (!k || !v)
            continue;
        if (k->type != YAML_SCALAR_NODE)
            return fail_at(l, k, *prefix ? prefix : "(top level)", "a key must be a plain string");
        const char *name = (const char *)k->data.scalar.value;
        char full[KEY_MAX];
        int fl = snprintf(full, sizeof full, "%s%s%s", prefix, *prefix ? "." : "", name);
        if (fl < 0 || (size_t)fl >= sizeof full)
            return fail_at(l, k, name, "unknown key");
        /* the same key twice in one map */
        for (yaml_node_pair_t *q = start; q < p; q++) {
            yaml_node_t *qk = yaml_document_get_node(l->doc, q->key);
            if (qk && qk->type == YAML_SCALAR_NODE &&
                strcmp((const char *)qk->data.scalar.value, name) == 0)
                return fail_at(l, k, full, "duplicate key (first set on line %d)", line_of(qk));
        }
        const struct kp_cfg_entry *e = find_entry(l->table, full);
        if (e) {
            size_t idx = (size_t)(e - l->table);
            /* also set another way ("db.dsn:" beside "db: {dsn: }") */
            if (l->seen_line[idx])
                return fail_at(l, k, full, "duplicate key (first set on line %d)",
                               l->seen_line[idx]);
            l->seen_line[idx] = line_of(k);
            int rc = set_from_node(l, e, v);
            if (rc)
                return rc;
        } else if (has_children(l->table, full)) {
            if (v->type != YAML_MAPPING_NODE)
                return fail_at(l, v, full, "expected a map, got %s",
                               v->type == YAML_SEQUENCE_NODE ? "a list" : "a single value");
            int rc = walk_map(l, v, full);
            if (rc)
                return rc;
        } else {
            return fail_at(l, k, full, "unknown key");
        }
    }
    return 0;
}

static void syntax_error(struct load *l, const yaml_parser_t *p)
{
    char ctx[160] = "";
    if (p->context)
        snprintf(ctx, sizeof ctx, " (%s on line %d)", p->context, (int)p->context_mark.line + 1);
    seterr(l->err, l->errlen, "%s:%d: YAML syntax error: %s%s", l->path,
           (int)p->problem_mark.line + 1, p->problem ? p->problem : "unreadable", ctx);
}

/* Parses path and applies it over target. *doc_line is the line the document starts on. */
static int load_file(struct load *l, int *doc_line)
{
    *doc_line = 1;
    FILE *fp = fopen(l->path, "rb");
    if (!fp) {
        seterr(l->err, l->errlen, "%s: cannot open: %s", l->path, strerror(errno));
        return KP_ECONFIG;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        fclose(fp);
        seterr(l->err, l->errlen, "%s: out of memory", l->path);
        return KP_ECONFIG;
    }
    yaml_parser_set_input_file(&parser, fp);
    int rc = 0;
    if (!yaml_parser_load(&parser, &doc)) {
        syntax_error(l, &parser);
        yaml_parser_delete(&parser);
        fclose(fp);
        return KP_ECONFIG;
    }
    l->doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root) {
        *doc_line = line_of(root);
        if (root->type == YAML_MAPPING_NODE)
            rc = walk_map(l, root, "");
        else if (!is_null(root))
            rc = fail_at(l, root, "(top level)", "expected a map of keys, got %s",
                         root->type == YAML_SEQUENCE_NODE ? "a list" : "a single value");
    }
    yaml_document_delete(&doc);
    l->doc = NULL;
    if (rc == 0 && root) {
        /* a second document is refused rather than silently ignored */
        yaml_document_t doc2;
        if (!yaml_parser_load(&parser, &doc2)) {
            syntax_error(l, &parser);
            rc = KP_ECONFIG;
        } else {
            yaml_node_t *r2 = yaml_document_get_root_node(&doc2);
            if (r2) {
                seterr(l->err, l->errlen, "%s:%d: only one YAML document is allowed", l->path,
                       line_of(r2));
                rc = KP_ECONFIG;
            }
            yaml_document_delete(&doc2);
        }
    }
    yaml_parser_delete(&parser);
    fclose(fp);
    return rc;
}

/* defaults -> file -> sets -> required; target holds defaults only on failure */
static int load_all(const char *path, const char *const *sets, size_t n_sets,
                    const struct kp_cfg_entry *table, void *target, char *err, size_t errlen)
{
    int rc = kp_config_defaults(table, target, err, errlen);
    if (rc)
        return rc;
    size_t n = table_len(table);
    struct load l = {
        .path = path,
        .table = table,
        .target = target,
        .seen_line = kp_xcalloc(n + 1, sizeof(int)),
        .provided = kp_xcalloc(n + 1, sizeof(bool)),
        .err = err,
        .errlen = errlen,
    };
    int doc_line = 1;
    if (path)
        rc = load_file(&l, &doc_line);
    for (size_t i = 0; rc == 0 && i < n_sets; i++) {
        const char *eq = strchr(sets[i], '=');
        char key[KEY_MAX];
        size_t kl = eq ? (size_t)(eq - sets[i]) : 0;
        if (!eq || kl == 0 || kl >= sizeof key) {
            seterr(err, errlen, "--set %s: expected key=value", sets[i]);
            rc = KP_ECONFIG;
            break;
        }
        memcpy(key, sets[i], kl);
        key[kl] = 0;
        char e2[REASON_MAX];
        if (kp_config_set(table, target, key, eq + 1, e2, sizeof e2) != 0) {
            seterr(err, errlen, "--set %s", e2);
            rc = KP_ECONFIG;
            break;
        }
        const struct kp_cfg_entry *e = find_entry(table, key);
        l.provided[e - table] = true;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!table[i].required || l.provided[i])
            continue;
        if (path)
            seterr(err, errlen, "%s:%d: %s: required key missing", path, doc_line, table[i].key);
        else
            seterr(err, errlen, "%s: required key missing", table[i].key);
        rc = KP_ECONFIG;
    }
    free(l.seen_line);
    free(l.provided);
    if (rc) {
        kp_config_fini(table, target);
        kp_config_defaults(table, target, NULL, 0);
    }
    return rc;
}

int kp_config_load(const char *path, const struct kp_cfg_entry *table, void *target, char *err,
                   size_t errlen)
{
    if (!path) {
        seterr(err, errlen, "no configuration file given");
        return KP_ECONFIG;
    }
    return load_all(path, NULL, 0, table, target, err, errlen);
}

int kp_config_from_cli(const struct kp_cli *cli, const struct kp_cfg_entry *table, void *target,
                       char *err, size_t errlen)
{
    return load_all(cli->config_path, cli->sets, cli->n_sets, table, target, err, errlen);
}

/* --- reload ------------------------------------------------------------------------------- */

static bool field_eq(const struct kp_cfg_entry *e, const void *a, const void *b)
{
    const void *fa = cfield(a, e), *fb = cfield(b, e);
    switch (e->type) {
    case KP_CFG_STR: {
        const char *sa = *(char *const *)fa, *sb = *(char *const *)fb;
        return (!sa || !sb) ? sa == sb : strcmp(sa, sb) == 0;
    }
    case KP_CFG_STRLIST:
        return list_eq(*(char **const *)fa, *(char **const *)fb);
    case KP_CFG_INT:
    case KP_CFG_MS:
    case KP_CFG_BYTES:
        return *(const long long *)fa == *(const long long *)fb;
    case KP_CFG_DOUBLE:
        return *(const double *)fa == *(const double *)fb;
    case KP_CFG_BOOL:
        return *(const bool *)fa == *(const bool *)fb;
    }
    return true;
}

void kp_config_apply_reload(const struct kp_cfg_entry *table, void *live, const void *fresh,
                            bool *changed_nonreloadable)
{
    bool changed = false;
    for (const struct kp_cfg_entry *e = table; e->key; e++) {
        if (field_eq(e, live, fresh))
            continue;
        if (!e->reloadable) {
            changed = true;
            continue;
        }
        void *f = field(live, e);
        const void *g = cfield(fresh, e);
        switch (e->type) {
        case KP_CFG_STR: {
            const char *src = *(char *const *)g;
            free(*(char **)f);
            *(char **)f = src ? kp_xstrdup(src) : NULL;
            break;
        }
        case KP_CFG_STRLIST:
            list_free((char ***)f);
            *(char ***)f = list_dup(*(char **const *)g);
            break;
        case KP_CFG_INT:
        case KP_CFG_MS:
        case KP_CFG_BYTES:
            *(long long *)f = *(const long long *)g;
            break;
        case KP_CFG_DOUBLE:
            *(double *)f = *(const double *)g;
            break;
        case KP_CFG_BOOL:
            *(bool *)f = *(const bool *)g;
            break;
        }
    }
    if (changed_nonreloadable)
        *changed_nonreloadable = changed;
}

/* --- help --------------------------------------------------------------------------------- */

void kp_config_print_help(const struct kp_cfg_entry *table, FILE *out)
{
    for (const struct kp_cfg_entry *e = table; e->key; e++) {
        fprintf(out, "  %s (%s", e->key, type_name(e->type));
        if (e->required)
            fprintf(out, ", required");
        if (e->reloadable)
            fprintf(out, ", reloadable");
        fprintf(out, ")");
        if (e->def)
            fprintf(out, " default: %s", *e->def ? e->def : "\"\"");
        if (e->min <= e->max && e->type != KP_CFG_STR && e->type != KP_CFG_STRLIST &&
            e->type != KP_CFG_BOOL) {
            char lo[40], hi[40];
            fmt_num(lo, sizeof lo, e->min);
            fmt_num(hi, sizeof hi, e->max);
            fprintf(out, " range: [%s, %s]%s", lo, hi, e->type == KP_CFG_MS ? " ms" : "");
        }
        fprintf(out, "\n");
        if (e->help && *e->help)
            fprintf(out, "      %s\n", e->help);
    }
}

/* --- command line ------------------------------------------------------------------------- */

int kp_cli_parse(int argc, char **argv, struct kp_cli *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            if (i + 1 >= argc) {
                seterr(err, errlen, "option %s needs a value", a);
                return KP_EINVAL;
            }
            out->config_path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            if (!a[9]) {
                seterr(err, errlen, "option --config needs a value");
                return KP_EINVAL;
            }
            out->config_path = a + 9;
        } else if (strcmp(a, "--check-config") == 0) {
            out->check_config = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            out->help = true;
        } else if (strcmp(a, "--insecure") == 0) {
            out->insecure = true;
        } else if (strcmp(a, "--set") == 0 || strncmp(a, "--set=", 6) == 0) {
            if (a[5] == '=') {
                val = a + 6;
            } else {
                if (i + 1 >= argc) {
                    seterr(err, errlen, "option --set needs a value");
                    return KP_EINVAL;
                }
                val = argv[++i];
            }
            const char *eq = strchr(val, '=');
            if (!eq || eq == val) {
                seterr(err, errlen, "--set needs key=value: %s", val);
                return KP_EINVAL;
            }
            if (out->n_sets >= KP_CLI_MAX_SETS) {
                seterr(err, errlen, "too many --set options (max %d)", KP_CLI_MAX_SETS);
                return KP_EINVAL;
            }
            out->sets[out->n_sets++] = val;
        } else if (a[0] == '-' && a[1]) {
            seterr(err, errlen, "unknown option: %s", a);
            return KP_EINVAL;
        } else {
            seterr(err, errlen, "unexpected argument: %s", a);
            return KP_EINVAL;
        }
    }
    return 0;
}
