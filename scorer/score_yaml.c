/*
 * score_yaml: libyaml document helpers shared by the scheme loader and its alert rules
 * (score_yaml.h). Every refusal is `file:line: reason` with the line of the YAML node.
 */
#include "score_yaml.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_err.h"

int score__yaml_vfail_line(struct score__yaml *Y, int line, const char *fmt, va_list ap)
{
    if (Y->failed)
        return -1;
    Y->failed = true;
    int off = snprintf(Y->err, Y->errlen, "%s:%d: ", Y->path, line);
    if (off >= 0 && (size_t)off < Y->errlen)
        vsnprintf(Y->err + off, Y->errlen - (size_t)off, fmt, ap);
    return -1;
}

int score__yaml_fail(struct score__yaml *Y, const yaml_node_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    score__yaml_vfail_line(Y, n ? (int)n->start_mark.line + 1 : 0, fmt, ap);
    va_end(ap);
    return -1;
}

int score__yaml_fail_line(struct score__yaml *Y, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    score__yaml_vfail_line(Y, line, fmt, ap);
    va_end(ap);
    return -1;
}

int score__yaml_line_of(const yaml_node_t *n)
{
    return (int)n->start_mark.line + 1;
}

yaml_node_t *score__yaml_node_at(struct score__yaml *Y, int i)
{
    return yaml_document_get_node(Y->doc, i);
}

bool score__yaml_is_scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE;
}

const char *score__yaml_scalar(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

bool score__yaml_code_ok(const char *s)
{
    size_t len = strlen(s);
    if (len < 1 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return false;
    }
    return true;
}

/* ---- typed getters -------------------------------------------------------------------- */

int score__yaml_get_str(struct score__yaml *Y, const yaml_node_t *n, const char *key, size_t max,
                        char **out)
{
    if (!score__yaml_is_scalar(n))
        return score__yaml_fail(Y, n, "%s: expected a string", key);
    if (n->data.scalar.length == 0 || n->data.scalar.length > max)
        return score__yaml_fail(Y, n, "%s: length must be 1-%zu bytes", key, max);
    if (strlen(score__yaml_scalar(n)) != n->data.scalar.length)
        return score__yaml_fail(Y, n, "%s: contains a NUL byte", key);
    *out = kp_xstrdup(score__yaml_scalar(n));
    return 0;
}

int score__yaml_get_num(struct score__yaml *Y, const yaml_node_t *n, const char *key, double *out)
{
    if (!score__yaml_is_scalar(n))
        return score__yaml_fail(Y, n, "%s: expected a number", key);
    const char *s = score__yaml_scalar(n);
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v))
        return score__yaml_fail(Y, n, "%s: '%s' is not a finite number", key, s);
    *out = v;
    return 0;
}

int score__yaml_get_bool(struct score__yaml *Y, const yaml_node_t *n, const char *key, bool *out)
{
    if (score__yaml_is_scalar(n)) {
        const char *s = score__yaml_scalar(n);
        if (!strcmp(s, "true") || !strcmp(s, "yes")) {
            *out = true;
            return 0;
        }
        if (!strcmp(s, "false") || !strcmp(s, "no")) {
            *out = false;
            return 0;
        }
    }
    return score__yaml_fail(Y, n, "%s: expected true or false", key);
}

int score__yaml_get_int(struct score__yaml *Y, const yaml_node_t *n, const char *key, int lo,
                        int hi, int *out)
{
    double v = 0;
    if (score__yaml_get_num(Y, n, key, &v))
        return -1;
    if (v != floor(v) || v < lo || v > hi)
        return score__yaml_fail(Y, n, "%s: expected an integer in %d..%d", key, lo, hi);
    *out = (int)v;
    return 0;
}

/* ---- mappings and sequences ----------------------------------------------------------- */

int score__yaml_map_check(struct score__yaml *Y, const yaml_node_t *n, const char *what,
                          const char *const *allowed)
{
    if (!n || n->type != YAML_MAPPING_NODE)
        return score__yaml_fail(Y, n, "%s: expected a mapping", what);
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = score__yaml_node_at(Y, p->key);
        if (!score__yaml_is_scalar(k))
            return score__yaml_fail(Y, k, "%s: keys must be strings", what);
        const char *ks = score__yaml_scalar(k);
        bool known = false;
        for (const char *const *a = allowed; *a; a++)
            if (!strcmp(*a, ks))
                known = true;
        if (!known)
            return score__yaml_fail(Y, k, "%s: unknown key '%s'", what, ks);
        for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < p; q++)
            if (!strcmp(score__yaml_scalar(score__yaml_node_at(Y, q->key)), ks))
                return score__yaml_fail(Y, k, "%s: duplicate key '%s'", what, ks);
    }
    return 0;
}

/* Keys that are not scalars never match (map_check refuses them anyway). */
static const yaml_node_pair_t *find_pair(struct score__yaml *Y, const yaml_node_t *n,
                                         const char *key)
{
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = score__yaml_node_at(Y, p->key);
        if (score__yaml_is_scalar(k) && !strcmp(score__yaml_scalar(k), key))
            return p;
    }
    return NULL;
}

yaml_node_t *score__yaml_map_get(struct score__yaml *Y, const yaml_node_t *n, const char *key)
{
    const yaml_node_pair_t *p = find_pair(Y, n, key);
    return p ? score__yaml_node_at(Y, p->value) : NULL;
}

const yaml_node_t *score__yaml_map_key_node(struct score__yaml *Y, const yaml_node_t *n,
                                            const char *key)
{
    const yaml_node_pair_t *p = find_pair(Y, n, key);
    return p ? score__yaml_node_at(Y, p->key) : n;
}

int score__yaml_need(struct score__yaml *Y, const yaml_node_t *map, const char *what,
                     const char *key, yaml_node_t **out)
{
    *out = score__yaml_map_get(Y, map, key);
    if (!*out)
        return score__yaml_fail(Y, map, "%s: missing '%s'", what, key);
    return 0;
}

int score__yaml_seq_check(struct score__yaml *Y, const yaml_node_t *n, const char *what)
{
    if (!n || n->type != YAML_SEQUENCE_NODE)
        return score__yaml_fail(Y, n, "%s: expected a sequence", what);
    return 0;
}

size_t score__yaml_seq_len(const yaml_node_t *seq)
{
    return (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
}
