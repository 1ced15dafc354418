/*
 * kp_reason: the reason codes of PROTOCOL.md ("Reason codes"), one X-macro table so enum,
 * wire string and documentation never drift. A reason code is data: it ends in a nack, a
 * `rej` entry of an ack and a kp_rejection row (ARCHITECTURE.md guarantee 4).
 */
#ifndef KP_REASON_H
#define KP_REASON_H

#include <stdbool.h>
#include <stddef.h>

/* X(name, retry, help). Codes are never reused for another meaning; append only. */
#define KP_REASON_MAP(X)                                                                           \
    X(bad_msgpack, false, "frame is not one well-formed msgpack map")                              \
    X(bad_version, false, "unknown protocol version v")                                            \
    X(bad_type, false, "a field has the wrong msgpack type")                                       \
    X(missing_field, false, "a required field is absent")                                          \
    X(bad_field, false, "a field's value is outside its grammar or charset")                       \
    X(too_large, false, "a frame, string or array exceeds its limit")                              \
    X(not_granted_scheme, false, "the adapter is not granted this scheme")                         \
    X(not_granted_indicator, false, "the adapter is not granted this indicator")                   \
    X(unknown_unit, false, "the unit is not in the scheme")                                        \
    X(unknown_indicator, false, "the indicator is not a leaf of the scheme")                       \
    X(bad_period, false, "the period does not match the period grammar")                           \
    X(not_finite, false, "the value is NaN or infinite")                                           \
    X(out_of_range, false, "the value is outside the indicator's allowed range")                   \
    X(overloaded, true, "the pipeline is overloaded; retry later")                                 \
    X(scorer_unavailable, true, "no live scorer serves this scheme; retry later")                  \
    X(bad_aid, false, "aid does not match the authenticated adapter")                              \
    X(unknown_scheme, false, "the scheme is not served by this scorer")

enum kp_reason {
    KP_R_OK = 0,
#define KP__REASON_ENUM(name, retry, help) KP_R_##name,
    KP_REASON_MAP(KP__REASON_ENUM)
#undef KP__REASON_ENUM
        KP_R__COUNT
};

/* Wire string of a reason ("bad_field"); "ok" for KP_R_OK. Static storage. */
const char *kp_reason_str(enum kp_reason r);
/* True when a nack with this reason must carry retry:true (PROTOCOL.md "nack"). */
bool kp_reason_retry(enum kp_reason r);
/* Parses a wire string; returns KP_R__COUNT when unknown. */
enum kp_reason kp_reason_parse(const char *s, size_t len);

#endif
