/*
 * scr_alert: the scorer's alert shell (issue 7), between the pure evaluator (score_alert.h) and
 * the outside world: the hooks of the batch transaction (scr_batch.c), the timer of the
 * time-driven rules, the `alert` table and NOTIFY kaoping_alert, the ZeroMQ PUB socket of
 * `kpctl tap`, and the Alertmanager sender thread (scr_alert_am.c). Cross-file names carry the
 * `scr__` prefix. Everything but the sender runs on the scorer's loop thread.
 */
#ifndef SCR_ALERT_H
#define SCR_ALERT_H

#include <stddef.h>
#include <stdint.h>

struct scr;
struct scr_scheme;
struct kp_batch;
struct kp_metrics;
struct scr_config;

/* Creates the alert state of a started scorer: one evaluator slot per scheme, the timer
 * (alerts.tick_ms), the PUB socket (alerts.pub) and the sender (alerts.alertmanager_url).
 * Returns 0, KP_EZMQ/KP_EINVAL (the PUB endpoint cannot be bound) or KP_EINVAL (a bad
 * Alertmanager URL). On failure s->alerts may hold a partial state: scr__alert_stop() frees it. */
int scr__alert_start(struct scr *s);

/* Stops the sender (joins its thread, aborting a post in flight), closes the timer and the PUB
 * socket; calls done(arg) once everything is closed and freed (possibly before returning).
 * Accepts s->alerts == NULL (then calls done at once). */
void scr__alert_stop(struct scr *s, void (*done)(void *), void *arg);

/* Batch path, inside the batch's transaction, before the engine applies the batch: (re)loads
 * the scheme's evaluator when it is not in step with the engine and the database (first use, a
 * rebuilt engine, observations caught up from another scorer, a failed transaction): primes it
 * from the engine, restores the open alerts from `alert`, the open task nodes from
 * `observation` and the adapters' last batch times from `batch`. Returns 0 or KP_EDB. */
int scr__alert_prepare(struct scr *s, struct scr_scheme *sch);

/* Batch path, after the score rows are written and before COMMIT: feeds the engine's changes,
 * the task nodes (x.due) and the adapters' heartbeats of the nb batches stored in this
 * transaction (a group, scr_process_group) to the evaluator, evaluates once,
 * writes the transitions into `alert` and NOTIFYs kaoping_alert, in the same transaction; queues
 * the PUB messages (alert transitions, score changes) for after the COMMIT. Returns 0 or
 * KP_EDB (the caller rolls back; the evaluator is reloaded before its next use). */
int scr__alert_batch(struct scr *s, struct scr_scheme *sch, const struct kp_batch *const *bs,
                     size_t nb);

/* Batch path, after COMMIT: publishes the queued PUB messages and wakes the sender. */
void scr__alert_committed(struct scr *s, struct scr_scheme *sch);

/* The evaluator's clock: ms since the epoch. Tests only: when the environment variable
 * KP_FAKE_NOW_FILE names a file holding a time in ms since the epoch, the clock reads that
 * time plus the real time elapsed since the file was last written (so a test sets the clock by
 * rewriting the file, and time flows on from there). Alertmanager's endsAt uses the real clock.
 * Loop thread. */
int64_t scr__alert_now(void);

/* ---- scr_alert_am.c: the Alertmanager sender ------------------------------------------- */

struct scr_am;

/* Starts the sender thread with its own PostgreSQL connection. schemes: the scheme ids whose
 * alerts it delivers (copied). Returns 0 or KP_EINVAL (bad URL). Caller owns *out; stop with
 * scr__am_stop(). */
int scr__am_start(const struct scr_config *cfg, const char *dsn, const char *const *schemes,
                  size_t n_schemes, struct kp_metrics *metrics, struct scr_am **out);
/* Makes the sender look at the table now (after a COMMIT that wrote transitions). Any thread. */
void scr__am_wake(struct scr_am *am);
/* Stops and joins the thread (a post in flight is aborted), frees. Accepts NULL. */
void scr__am_stop(struct scr_am **am);

#endif
