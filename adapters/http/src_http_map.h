/*
 * src_http_map: the field mapping of the `http` source (internal to adapters/http/). It turns
 * one JSON item of a department API into one or more records (adp_source.h struct adp_rec)
 * by templates configured in YAML, so that a department profile is configuration, not code
 * (STYLE.md "Department profiles are configuration").
 *
 * A mapping is a list of `field=template` pairs separated by white space, field one of
 * u i p val ref rev at w. A template is literal text with placeholders:
 *
 *   {path}          the item's value at a dotted path ("unit.code"; a segment of digits
 *                   indexes an array): a string as is, an integer in decimal, a real in the
 *                   shortest text that reads back the same, true/false
 *   {path|filter}   the value converted: month quarter half year day (a period from a date
 *                   "YYYY-MM-DD…": 2015-03, 2015-Q1, 2015-H1, 2015, 2015-03-17), ms (an
 *                   ISO-8601 time, "Z" or ±hh:mm, no zone = UTC, to ms since the epoch; an
 *                   integer stays as it is), map:k=v;k=v;*=v (a lookup table, * = otherwise)
 *   {{ and }}       literal braces
 *
 * `fields` (source.http.fields) holds the pairs every record of an item shares; each entry of
 * `observations` (source.http.observations) adds or overrides pairs for one record (none: one
 * record per item from `fields`). The fields u i p val ref are required in every record's set.
 *
 * Bad input never stops the mapping: a placeholder whose value is absent or null makes its
 * field absent (refused centrally as missing_field); a value of the wrong kind (an object or
 * array, a failed conversion) is kept as its JSON or raw text where a number, code or period
 * is expected, so the scorer refuses the record with the precise reason (ARCHITECTURE.md
 * guarantee 4), and makes the field absent where any text would pass (ref). Either way the
 * caller gets a reason to log with the item's position.
 *
 * Not thread-safe per object; the compiled mapping is read-only after creation.
 */
#ifndef SRC_HTTP_MAP_H
#define SRC_HTTP_MAP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "adp_source.h"

/* Longest text kept per field: longer than every PROTOCOL.md limit (ref 256), so a cut value
 * is still refused as too long. */
#define HTTP_FIELD_MAX 300
/* Observations one item may yield at most. */
#define HTTP_OBS_MAX 16

struct http_map;

/* Compiles fields (may be NULL or "") and observations (NULL-terminated list, may be NULL).
 * Returns 0 and *out (caller owns; http_map_destroy), or KP_ECONFIG with err =
 * "source.<key>: reason". */
int http_map_new(const char *fields, char *const *observations, struct http_map **out, char *err,
                 size_t errlen);
void http_map_destroy(struct http_map **m);

/* Records one item yields (1..HTTP_OBS_MAX). */
size_t http_map_count(const struct http_map *m);

/* How an item mapped: cleanly, or the kind of its first problem. */
enum http_map_result { HTTP_MAP_OK, HTTP_MAP_MISSING, HTTP_MAP_BAD };

/* Maps item into recs[0..http_map_count()-1]; the strings point into m's scratch space and
 * stay valid until the next call. Returns HTTP_MAP_OK, or the kind of the first problem with
 * why = "<field>: reason" (a record the scorer will refuse). */
enum http_map_result http_map_item(struct http_map *m, const json_t *item, struct adp_rec *recs,
                                   char *why, size_t whylen);

/* ---- JSON helpers shared with src_http.c ------------------------------------------------ */

/* The value at a dotted path ("" = root itself), or NULL. Borrowed. */
const json_t *http_json_path(const json_t *root, const char *path);
/* A scalar as text (string, integer, real, true/false) into buf. Returns false for null,
 * object or array (buf then holds "" or the compact JSON, cut to buflen). */
bool http_json_text(const json_t *v, char *buf, size_t buflen);
/* Parses ISO-8601 ("YYYY-MM-DD[( |T)hh:mm[:ss[.fff…]]][Z|±hh[:]mm]") to ms since the epoch. */
bool http_iso8601_ms(const char *s, long long *ms);

#endif
