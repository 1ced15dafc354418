/*
 * kp_time: clocks. Wall time for protocol timestamps, monotonic time for timers and
 * latency. Thread-safe.
 */
#ifndef KP_TIME_H
#define KP_TIME_H

#include <stdint.h>

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t kp_now_ms(void);
/* Monotonic nanoseconds (CLOCK_MONOTONIC). */
uint64_t kp_mono_ns(void);

#endif
