/*
 * src_http: the `http` source of kp-adapter (source.driver: http). It pulls JSON items from a
 * department system's HTTP API through libcurl, maps each item to one or more records with the
 * templates of src_http_map.h (jansson parses the JSON), and persists its position in the API with
 * each spooled batch, so that a restart resumes where the last durable batch ended: items may be
 * sent again (the scorer absorbs the same (src, ref, rev)), none is skipped (issue 4;
 * ARCHITECTURE.md guarantee 1). The audit bureau's findings API is one profile of it
 * (deploy/profiles/audit.yaml).
 *
 * Authentication: none, bearer (`Authorization: Bearer <token>`) or basic (user +
 * password). Secrets come from files that must not be world-readable (or, for tests, inline
 * `source.http.token`); they are re-read when the file changes and never appear in a message.
 *
 * Pagination, source.http.pagination:
 *   cursor  GET url?<cursor_param>=<cursor>&<limit_param>=<n>. The response carries the
 *           position after its last item at <cursor_path> (a change-feed cursor); that
 *           cursor is what is persisted. No cursor in a response: the position stays, and
 *           the same items are read again next poll (harmless duplicates; fix the API).
 *           Optional <more_path>: a boolean saying more items are ready now.
 *   page    GET url?<since_param>=<since>&<page_param>=<k>&<page_size_param>=<n>, the API
 *           answering the items whose <since_field> is at or after <since> (inclusive), in
 *           ascending (<since_field>, id) order. Each poll reads page 1 (and further pages
 *           only while a whole page holds items already sent) and persists the <since_field>
 *           of the last item sent plus the ids (<id_field>) of the items sent at exactly that
 *           value, which are skipped next time: keyset paging over offset pages, so an item
 *           updated during a walk moves forward instead of shifting another out of sight.
 *
 * Failures of one poll, never of the daemon: connection errors, timeouts, 408, 429 and 5xx
 * are retried up to source.http.retries times with exponential backoff and jitter inside the
 * poll, then reported (the runtime polls again after poll_ms). Any other 4xx, a redirect or
 * a body that is not the expected JSON is reported at once with the status and the start of
 * the body, and the source makes no request for a hold-off that doubles from 5 s up to
 * source.http.holdoff_max_ms while the failure repeats (no retry storm against a refusing API);
 * a changed secret file ends the hold-off. The retries sleep on the poll's worker thread
 * (adp_source.h: poll may block), so one poll lasts at most (retries + 1) × timeout_ms plus
 * the backoffs, and a stopping adapter waits for it: keep them modest.
 *
 * Refused items: an item that is not a JSON object, or whose fields do not map cleanly (a
 * field missing, of the wrong kind, a date that is no date, a value not in a map), is a dead
 * letter in source.http.dead_letters (kp_spool_dead_row: file = the request as
 * "<url>?<cursor or since and page>", line = the item's place in the response from 1, code
 * missing_field | bad_field | bad_type, the reason, the item's JSON), written before the batch
 * that passes it, once per place however often it is re-read. With source.http.forward_refused
 * (the default) a refused object item is also sent as read, so the scorer records a rejection
 * row for each of its records (adp_source.h; ARCHITECTURE.md guarantees 1 and 4); the good
 * items of the same response go on either way. One items_refused line per response says so.
 *
 * Configuration keys are source.http.* (STYLE.md: one table; kp-adapter --help lists them).
 */
#ifndef SRC_HTTP_H
#define SRC_HTTP_H

#include <stdbool.h>

#include "adp_source.h"

struct src_http_config {
    char *url;           /* the API endpoint, http:// or https://, may carry fixed parameters */
    char *auth;          /* none | bearer | basic */
    char *token;         /* bearer token inline (tests; prefer token_file) */
    char *token_file;    /* file holding the bearer token */
    char *user;          /* basic auth user */
    char *password_file; /* file holding the basic auth password */
    char *ca_file;       /* CA bundle for https (default: the system's) */
    long long connect_timeout_ms;
    long long timeout_ms; /* whole request */
    long long retries;    /* extra attempts after a transient failure */
    long long backoff_min_ms;
    long long backoff_max_ms;
    long long holdoff_max_ms;
    long long max_response_bytes;
    char *pagination; /* cursor | page */
    char *items;      /* JSON path of the item array ("" = the body is the array) */
    char *cursor_param;
    char *cursor_path;
    char *more_path;
    char *limit_param;
    char *page_param;
    char *page_size_param;
    long long page_size;
    char *since_param;
    char *since_field;
    char *id_field;
    char *fields;        /* field=template pairs shared by an item's records */
    char **observations; /* one entry per record an item yields */
    char *dead_letters;  /* SQLite file of the refused items (kp_spool_dead_row) */
    bool forward_refused;
};

extern const struct adp_source adp_source_http;

#endif
