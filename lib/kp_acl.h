/*
 * kp_acl: the authorised-clients file of a CURVE server (collector: adapters; broker:
 * collectors and scorers) and the grants it holds, ARCHITECTURE.md guarantee 5. The file is
 * YAML, a sequence of clients:
 *
 *   - aid: stats                       # the ZAP User-Id (PROTOCOL.md batch.aid)
 *     key: "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"   # its CURVE public key, Z85
 *     # keys: ["...", "..."]           # instead of key: several keys (rotation overlap)
 *     grants:                          # what it may write; absent = nothing
 *       - scheme: anshan-2015          # glob patterns (fnmatch), codes otherwise
 *         src: stats
 *         indicators: ["gdp_*", "fixed_asset_growth"]
 *
 * A key belongs to exactly one aid; an aid appears once. Unknown keys in the file are errors.
 * Loading builds a new immutable object: a reload (SIGHUP) loads the file again and swaps
 * the pointer only when the new file is valid, so a bad edit never opens or closes anything.
 *
 * Also here: the optional "refused" frame of the internal envelope (schemas/INTERNAL.md), by
 * which the collector tells the scorer which observations of a batch the adapter is not
 * granted, so that the scorer stores them as rejections while the others are stored.
 *
 * Pure functions and immutable objects: thread-safe; kp_acl_load blocks on the file.
 */
#ifndef KP_ACL_H
#define KP_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kp_buf.h"
#include "kp_reason.h"

struct kp_acl;

/* Loads and validates path. Caller owns *out; free with kp_acl_destroy(). Returns 0, KP_EIO
 * (unreadable) or KP_ECONFIG with err = "path:line: reason". */
int kp_acl_load(const char *path, struct kp_acl **out, char *err, size_t errlen);
void kp_acl_destroy(struct kp_acl **acl);

/* Number of clients; number of keys over all clients. */
size_t kp_acl_clients(const struct kp_acl *acl);
size_t kp_acl_keys(const struct kp_acl *acl);

/* The aid a client public key (32 bytes) belongs to, or NULL. Borrowed from acl. */
const char *kp_acl_lookup_key(const struct kp_acl *acl, const uint8_t key[32]);
/* True when the aid is listed. */
bool kp_acl_has_aid(const struct kp_acl *acl, const char *aid);

/* Batch-level grant check: KP_R_OK when some grant of aid matches scheme and src; else
 * KP_R_not_granted_scheme with msg saying whether the scheme or only the src is missing. */
enum kp_reason kp_acl_check_batch(const struct kp_acl *acl, const char *aid, const char *scheme,
                                  const char *src, char *msg, size_t msglen);
/* True when some grant of aid matching scheme and src lists a pattern matching indicator. */
bool kp_acl_indicator_granted(const struct kp_acl *acl, const char *aid, const char *scheme,
                              const char *src, const char *indicator);

/* ---- the "refused" envelope frame (schemas/INTERNAL.md) ------------------------------- */

/* One refused observation: its index in the batch's obs and the reason. */
struct kp_refused {
    uint32_t n;
    enum kp_reason code;
};

/* Appends the frame: a msgpack array of [n, code] pairs (code: the reason's wire string).
 * Returns 0 or KP_EINVAL (count 0, or a reason that is KP_R_OK). */
int kp_refused_encode(struct kp_buf *out, const struct kp_refused *r, size_t count);
/* Decodes a frame into out (at most max entries). Returns the number of entries (>= 1), or
 * KP_EPROTO for anything else than that exact shape (unknown reason strings included) or
 * more than max entries. */
int kp_refused_decode(const void *frame, size_t len, struct kp_refused *out, size_t max);

#endif
