/*
 * kp_reason: wire strings and retry flags of the reason codes, generated from the single
 * KP_REASON_MAP table of kp_reason.h (PROTOCOL.md "Reason codes"). The codec, the collector
 * and the scorer turn every refusal into one of these codes; this file is the only place a
 * code becomes a string or a string becomes a code, so enum and wire never drift.
 */
#include "kp_reason.h"

#include <string.h>

static const char *const reason_names[KP_R__COUNT] = {
    [KP_R_OK] = "ok",
#define KP__REASON_NAME(name, retry, help) [KP_R_##name] = #name,
    KP_REASON_MAP(KP__REASON_NAME)
#undef KP__REASON_NAME
};

static const bool reason_retry[KP_R__COUNT] = {
    [KP_R_OK] = false,
#define KP__REASON_RETRY(name, retry, help) [KP_R_##name] = (retry),
    KP_REASON_MAP(KP__REASON_RETRY)
#undef KP__REASON_RETRY
};

const char *kp_reason_str(enum kp_reason r)
{
    if ((int)r < 0 || r >= KP_R__COUNT)
        return "unknown";
    return reason_names[r];
}

bool kp_reason_retry(enum kp_reason r)
{
    if ((int)r < 0 || r >= KP_R__COUNT)
        return false;
    return reason_retry[r];
}

/* "ok" is not a wire reason (no nack or rej entry ever carries it), so it does not parse:
 * a result other than KP_R__COUNT is always a real refusal code. */
enum kp_reason kp_reason_parse(const char *s, size_t len)
{
    if (!s)
        return KP_R__COUNT;
    for (int r = KP_R_OK + 1; r < KP_R__COUNT; r++) {
        const char *name = reason_names[r];
        if (strlen(name) == len && memcmp(name, s, len) == 0)
            return (enum kp_reason)r;
    }
    return KP_R__COUNT;
}
