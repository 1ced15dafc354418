/*
 * score_yaml: the libyaml document helpers the scheme loader (score_scheme.c) and its
 * `alerts:` section (score_alert_rules.c) share: the first-error recorder that writes
 * `file:line: reason` (line of the offending YAML node), node access, typed scalar getters
 * and strict mapping/sequence checks. Cross-file names carry the `score__` prefix
 * (STYLE.md "Names").
 */
#ifndef SCORE_YAML_H
#define SCORE_YAML_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <yaml.h>

/* One document being read: where errors go. Only the first error is kept. */
struct score__yaml {
    const char *path;
    yaml_document_t *doc;
    char *err;
    size_t errlen;
    bool failed;
};

/* Record the first error as "path:line: reason" and return -1 (later errors are dropped).
 * score__yaml_fail takes the line of the node n (0 when n is NULL). */
int score__yaml_vfail_line(struct score__yaml *Y, int line, const char *fmt, va_list ap);
__attribute__((format(printf, 3, 4))) int
score__yaml_fail(struct score__yaml *Y, const yaml_node_t *n, const char *fmt, ...);
__attribute__((format(printf, 3, 4))) int score__yaml_fail_line(struct score__yaml *Y, int line,
                                                                const char *fmt, ...);

int score__yaml_line_of(const yaml_node_t *n);
yaml_node_t *score__yaml_node_at(struct score__yaml *Y, int i);
bool score__yaml_is_scalar(const yaml_node_t *n);
const char *score__yaml_scalar(const yaml_node_t *n);

/* 1-64 bytes of [A-Za-z0-9._:-]. */
bool score__yaml_code_ok(const char *s);

/* Typed getters: 0, or -1 with the error recorded against n and named by key. */
int score__yaml_get_str(struct score__yaml *Y, const yaml_node_t *n, const char *key, size_t max,
                        char **out);
int score__yaml_get_num(struct score__yaml *Y, const yaml_node_t *n, const char *key, double *out);
int score__yaml_get_bool(struct score__yaml *Y, const yaml_node_t *n, const char *key, bool *out);
int score__yaml_get_int(struct score__yaml *Y, const yaml_node_t *n, const char *key, int lo,
                        int hi, int *out);

/* Checks that n is a mapping whose keys are scalars from `allowed` (NULL-terminated), each
 * at most once. */
int score__yaml_map_check(struct score__yaml *Y, const yaml_node_t *n, const char *what,
                          const char *const *allowed);
/* The value of `key` in mapping n, or NULL. */
yaml_node_t *score__yaml_map_get(struct score__yaml *Y, const yaml_node_t *n, const char *key);
/* The key node of `key` (for errors that concern the key), or the mapping itself. */
const yaml_node_t *score__yaml_map_key_node(struct score__yaml *Y, const yaml_node_t *n,
                                            const char *key);
/* *out = the value of `key`; -1 with "what: missing 'key'" when absent. */
int score__yaml_need(struct score__yaml *Y, const yaml_node_t *map, const char *what,
                     const char *key, yaml_node_t **out);

int score__yaml_seq_check(struct score__yaml *Y, const yaml_node_t *n, const char *what);
size_t score__yaml_seq_len(const yaml_node_t *seq);

#define SCORE__YAML_SEQ_EACH(seq, it)                                                              \
    for (yaml_node_item_t *it = (seq)->data.sequence.items.start;                                  \
         it < (seq)->data.sequence.items.top; it++)

#endif
