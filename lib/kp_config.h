/*
 * kp_config: YAML configuration (libyaml) described by one table per module: key, type,
 * default, bounds, target field, reloadable, help (STYLE.md "Configuration and logs").
 * Nested YAML maps are addressed by dotted keys ("db.dsn"). The same table fills defaults,
 * validates, prints help and drives --check-config and SIGHUP reload. Errors read
 * `file:line: key: reason`. Not thread-safe; call from the main thread.
 */
#ifndef KP_CONFIG_H
#define KP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum kp_cfg_type {
    KP_CFG_STR,    /* char * (heap; freed by kp_config_fini) */
    KP_CFG_INT,    /* long long, bounded by min/max */
    KP_CFG_DOUBLE, /* double, bounded by min/max, finite */
    KP_CFG_BOOL,   /* bool: true/false/yes/no/on/off */
    KP_CFG_MS,     /* long long milliseconds; accepts 250ms, 5s, 2m, 1h or a bare number of ms */
    KP_CFG_BYTES,  /* long long bytes; accepts 64k, 16M, 2G or a bare number (binary multiples;
                      k/K/kB/KiB alike, also T) */
    KP_CFG_STRLIST /* char ** NULL-terminated (heap); a YAML sequence of scalars; as default or
                      --set text, comma-separated ("a, b"); NULL default or YAML null = NULL */
};

struct kp_cfg_entry {
    const char *key;     /* dotted path, e.g. "source.query" */
    enum kp_cfg_type type;
    const char *def;     /* default as text, NULL = no default (required when `required`) */
    double min, max;     /* bounds for numeric types (ignored when min > max) */
    size_t offset;       /* offsetof(target struct, field) */
    bool required;
    bool reloadable;     /* may change on SIGHUP */
    const char *help;
};
#define KP_CFG_END {NULL, KP_CFG_STR, NULL, 0, 0, 0, false, false, NULL}

/* Sets every field of `target` to its default. Returns 0, or KP_ECONFIG when a default does
 * not parse (a programming error; err says which key). */
int kp_config_defaults(const struct kp_cfg_entry *table, void *target, char *err, size_t errlen);

/* Loads `path` over the defaults. Unknown keys, duplicate keys, type errors, out-of-bounds
 * values and missing required keys fail with KP_ECONFIG and err = "path:line: key: reason"
 * (a missing required key names the line the document starts on; a YAML null `key: ~` unsets
 * a string and does not count as given). On failure `target` holds defaults only (never a
 * half-applied file). target must hold no heap fields (fresh, or after kp_config_fini). */
int kp_config_load(const char *path, const struct kp_cfg_entry *table, void *target, char *err,
                   size_t errlen);

/* Sets one key from text (command-line override "key=value"). Same errors as the loader,
 * err = "key: reason". */
int kp_config_set(const struct kp_cfg_entry *table, void *target, const char *key,
                  const char *value, char *err, size_t errlen);

/* Copies the reloadable fields of `fresh` into `live` (both loaded with the same table);
 * sets *changed_nonreloadable when another field differs (those are left as they were). */
void kp_config_apply_reload(const struct kp_cfg_entry *table, void *live, const void *fresh,
                            bool *changed_nonreloadable);

/* Prints the table: key, type, default, bounds, reloadable, help. */
void kp_config_print_help(const struct kp_cfg_entry *table, FILE *out);

/* Frees heap fields (strings, lists) of target and sets them to NULL; safe to call twice. */
void kp_config_fini(const struct kp_cfg_entry *table, void *target);

/* --- the command line every daemon's main shares ------------------------------------------ */

#define KP_CLI_MAX_SETS 16

/* What kp_cli_parse found. Strings point into argv (borrowed). */
struct kp_cli {
    const char *config_path; /* -c FILE | --config FILE | --config=FILE; NULL if absent */
    bool check_config;       /* --check-config: load, validate, report and exit */
    bool help;               /* -h | --help */
    bool insecure;           /* --insecure: allow plain TCP without CURVE (tests, dev) */
    const char *sets[KP_CLI_MAX_SETS]; /* --set key=value | --set=key=value, in order */
    size_t n_sets;
};

/* Parses argv[1..argc-1] into *out (zeroed first). Returns 0, or KP_EINVAL with err = "unknown
 * option: --x", "option --config needs a value", "--set needs key=value: x", "too many --set
 * options (max 16)" or "unexpected argument: x". */
int kp_cli_parse(int argc, char **argv, struct kp_cli *out, char *err, size_t errlen);

/* Fills target from the command line: defaults, then the config file when one was given,
 * then each --set in order; required keys are checked last, so a --set can supply one.
 * Returns 0 or KP_ECONFIG with err as kp_config_load writes it, or "--set key: reason" for
 * a bad override. On failure target holds defaults only. target must hold no heap fields
 * (fresh, or after kp_config_fini). */
int kp_config_from_cli(const struct kp_cli *cli, const struct kp_cfg_entry *table, void *target,
                       char *err, size_t errlen);

#endif
