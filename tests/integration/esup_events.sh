#!/usr/bin/env bash
# Scenario: the e-supervision profile (deploy/profiles/esup.yaml on the database of
# deploy/sim/esup.sql) turns hand-made administrative-approval cases into exact
# approval_ontime rates per unit and month (rate = 100 × on-time cases / cases) in
# kp_indicator_score (issue 4): a case on time, one completed after its deadline, one with a
# stage over its own limit while the case finished in time, one whose delivery-stage record
# arrives after the case was read (re-emitted as a revision: on time → overdue), one still
# open past its deadline (overdue in the deadline's month, moved by its completion), one
# still within its limit (no event until it completes), a stage still in progress at
# completion (judged as ending then), the Beijing-time month boundary, and a transaction that
# commits late while later ones commit first (the adapter's lag_ms covers it).
. "$(dirname "$0")/lib.sh"
. "$KP_SOURCE_DIR/deploy/sim/esup.sh"

sim_esup_start "$it_work"
ES=$SIM_ESUP_DSN
qe() { psql -X -tA -v ON_ERROR_STOP=1 "$ES" -c "$1"; }

# The profile carries the query of deploy/sim/esup_query.sql, verbatim.
kp_cluster_adapter_profile esup "$KP_SOURCE_DIR/deploy/profiles/esup.yaml" SOURCE_DSN="$ES"
check "the profile's query is esup_query.sql" \
    "$(awk '/^  query: \|/ { on = 1; next } on && /^    / { print substr($0, 5); next } on { exit }' \
        "$it_work/etc/adapter-esup.yaml")" "$(cat "$KP_SOURCE_DIR/deploy/sim/esup_query.sql")"

# it_case(no, unit, accepted, legal_days, done_after_hours or NULL (open), stages...): a case
# and its stages, each stage a triple (start, duration or -1 = in progress, limit) in hours
# after acceptance; names 受理 审查 决定 送达 in order.
qe "CREATE FUNCTION it_case(no text, unit text, acc timestamptz, days int, done_h int,
                            VARIADIC st int[]) RETURNS void LANGUAGE plpgsql AS \$\$
    DECLARE cid bigint; k int;
    BEGIN
        INSERT INTO approval_case (case_no, unit_code, item_name, accepted_at, legal_days,
                                   completed_at, status)
        VALUES (no, unit, '建筑工程施工许可证核发', acc, days,
                acc + done_h * interval '1 hour',
                CASE WHEN done_h IS NULL THEN 'processing' ELSE 'approved' END)
        RETURNING id INTO cid;
        FOR k IN 1 .. array_length(st, 1) / 3 LOOP
            INSERT INTO approval_stage (case_id, seq, stage_name, started_at, finished_at, limit_hours)
            VALUES (cid, k, (ARRAY['受理','审查','决定','送达'])[k], acc + st[3*k-2] * interval '1 hour',
                    CASE WHEN st[3*k-1] >= 0 THEN acc + (st[3*k-2] + st[3*k-1]) * interval '1 hour' END,
                    st[3*k]);
        END LOOP;
    END \$\$" >/dev/null

# Legal limit 10 days (240 h); stage limits 24 / 96 / 48 / 24 h.
# 市公安局 AS-GAJ, March:
#   G1 on time                                                          → 1
#   G2 every stage within its limit, but 40 h waiting for materials: completed 250 h after
#      acceptance, 10 h after its deadline                               → 0
#   G3 受理 took 30 h (limit 24) though the case finished in 120 h       → 0
#   G4 on time as first read; its 送达 record (40 h, limit 24) arrives later → 1, then 0
qe "SELECT it_case('G1', 'AS-GAJ', '2015-03-02 09:00+08', 10, 134, 0,4,24, 4,80,96, 84,30,48, 114,20,24);
    SELECT it_case('G2', 'AS-GAJ', '2015-03-03 09:00+08', 10, 250, 0,20,24, 20,90,96, 150,40,48, 190,20,24);
    SELECT it_case('G3', 'AS-GAJ', '2015-03-04 09:00+08', 10, 120, 0,30,24, 30,60,96, 90,20,48, 110,10,24);
    SELECT it_case('G4', 'AS-GAJ', '2015-03-05 09:00+08', 10, 80, 0,4,24, 4,50,96, 54,20,48)" >/dev/null
# 海城市 AS-HC, March: H1 and H3 on time; H2 on time, written first but committed 1.5 s after
# H3 (within lag_ms 2 s); H4 still open (审查 in progress) past its deadline of 03-19 → 0.
qe "SELECT it_case('H1', 'AS-HC', '2015-03-10 09:00+08', 10, 100, 0,4,24, 4,60,96, 64,20,48, 84,16,24);
    SELECT it_case('H4', 'AS-HC', '2015-03-09 09:00+08', 10, NULL, 0,4,24, 4,-1,96)" >/dev/null
# 市住房城乡建设委 AS-ZJW:
#   Z1 accepted 2015-05-04 with a limit that ends 30 days from today: open within its limit,
#      no event yet; completes in May on time later                    → 1 (2015-05)
#   Z2 completed 2015-04-01 01:00 Beijing time (2015-03-31 in UTC)      → 1 (2015-04)
#   Z3 送达 still open when the case completed 16 h into it (limit 24)  → 1 (2015-04)
#   Z4 送达 still open when the case completed 36 h into it (limit 24)  → 0 (2015-04)
qe "SELECT it_case('Z1', 'AS-ZJW', '2015-05-04 09:00+08', (current_date - date '2015-05-04') + 30,
                   NULL, 0,4,24, 4,-1,96);
    SELECT it_case('Z2', 'AS-ZJW', '2015-03-25 09:00+08', 10, 160, 0,4,24, 4,90,96, 94,40,48, 134,20,24);
    SELECT it_case('Z3', 'AS-ZJW', '2015-04-06 09:00+08', 10, 90, 0,4,24, 4,50,96, 54,20,48, 74,-1,24);
    SELECT it_case('Z4', 'AS-ZJW', '2015-04-07 09:00+08', 10, 110, 0,4,24, 4,50,96, 54,20,48, 74,-1,24)" >/dev/null
check "Z1 is no event yet (its wm_ts is its deadline, in the future)" \
    "$(qe "SELECT wm_ts > clock_timestamp() FROM approval_case WHERE case_no = 'Z1'")" t

kp_cluster_start broker
kp_cluster_start collector
kp_cluster_start scorer
kp_cluster_start adapter-esup

# The late commit: H2 is written (its updated_at taken) and held open 1.5 s; H3 commits in
# the meantime with a later updated_at. Both must arrive.
psql -X -q -v ON_ERROR_STOP=1 "$ES" \
    -c "BEGIN" \
    -c "SELECT it_case('H2', 'AS-HC', '2015-03-11 09:00+08', 10, 100, 0,4,24, 4,60,96, 64,20,48, 84,16,24)" \
    -c "SELECT pg_sleep(1.5)" -c "COMMIT" >/dev/null &
late=$!
sleep 0.3
qe "SELECT it_case('H3', 'AS-HC', '2015-03-12 09:00+08', 10, 100, 0,4,24, 4,60,96, 64,20,48, 84,16,24)" >/dev/null
wait "$late"
check "H2 was stamped before H3 and committed after it" \
    "$(qe "SELECT (SELECT updated_at FROM approval_case WHERE case_no = 'H2') <
                  (SELECT updated_at FROM approval_case WHERE case_no = 'H3')")" t

rate() { # UNIT PERIOD → "value score n_obs"
    q "SELECT round(value::numeric, 6) || ' ' || round(score::numeric, 6) || ' ' || n_obs
         FROM kp_indicator_score WHERE scheme = 'anshan-2015' AND indicator = 'approval_ontime'
          AND unit = '$1' AND period = '$2'"
}
kp_wait_sql "$DSN" "SELECT count(*) FROM kp_observation WHERE src = 'esup'" 11 60
check "AS-GAJ 2015-03: G1 1, G2 0, G3 0, G4 1 → 50" "$(rate AS-GAJ 2015-03)" "50.000000 50.000000 4"
check "AS-HC 2015-03: H1 1, H2 1 (late commit), H3 1, H4 0 (open past its deadline) → 75" \
    "$(rate AS-HC 2015-03)" "75.000000 75.000000 4"
check "AS-ZJW 2015-04: Z2 1 (Beijing month), Z3 1, Z4 0 → 66.67" "$(rate AS-ZJW 2015-04)" \
    "66.666667 66.666667 3"
check "AS-ZJW 2015-03: nothing (Z2 completed in April, Beijing time)" "$(rate AS-ZJW 2015-03)" ""
check "Z1 (open within its limit) not delivered" \
    "$(q "SELECT count(*) FROM kp_observation WHERE ref = 'Z1'")" 0
check "AS-ZJW 2015-05: no score yet" "$(rate AS-ZJW 2015-05)" ""
check "the quarter pools the month's events" "$(rate AS-GAJ 2015-Q1)" "50.000000 50.000000 4"

# Revisions:
#   G4's 送达 record arrives (40 h, limit 24): the case is re-emitted, overdue → 25
#   H4 completes on 2015-04-02: still overdue, now in April → AS-HC March 100, April 0
#   Z1 completes on 2015-05-10 with every stage within its limit → AS-ZJW May 100
qe "INSERT INTO approval_stage (case_id, seq, stage_name, started_at, finished_at, limit_hours)
    SELECT id, 4, '送达', accepted_at + interval '74 hours', accepted_at + interval '114 hours', 24
      FROM approval_case WHERE case_no = 'G4'" >/dev/null
qe "BEGIN;
    UPDATE approval_stage SET finished_at = started_at + interval '70 hours'
     WHERE seq = 2 AND case_id = (SELECT id FROM approval_case WHERE case_no = 'H4');
    UPDATE approval_case SET completed_at = '2015-04-02 10:00+08', status = 'approved'
     WHERE case_no = 'H4';
    COMMIT" >/dev/null
qe "BEGIN;
    UPDATE approval_stage SET finished_at = started_at + interval '90 hours'
     WHERE seq = 2 AND case_id = (SELECT id FROM approval_case WHERE case_no = 'Z1');
    INSERT INTO approval_stage (case_id, seq, stage_name, started_at, finished_at, limit_hours)
    SELECT id, s.seq, s.name, accepted_at + s.h0 * interval '1 hour',
           accepted_at + s.h1 * interval '1 hour', s.lim
      FROM approval_case, (VALUES (3, '决定', 94, 134, 48), (4, '送达', 134, 154, 24)) s(seq, name, h0, h1, lim)
     WHERE case_no = 'Z1';
    UPDATE approval_case SET completed_at = accepted_at + interval '154 hours', status = 'approved'
     WHERE case_no = 'Z1';
    COMMIT" >/dev/null

kp_wait_sql "$DSN" "SELECT round(value::numeric, 6) FROM kp_indicator_score
                     WHERE indicator = 'approval_ontime' AND unit = 'AS-GAJ' AND period = '2015-03'" 25.000000 60
kp_wait_sql "$DSN" "SELECT count(*) FROM kp_indicator_score
                     WHERE indicator = 'approval_ontime' AND unit = 'AS-ZJW' AND period = '2015-05'" 1 60
kp_wait_sql "$DSN" "SELECT count(*) FROM kp_indicator_score
                     WHERE indicator = 'approval_ontime' AND unit = 'AS-HC' AND period = '2015-04'" 1 60
check "AS-GAJ 2015-03 after G4's late stage record → 25" "$(rate AS-GAJ 2015-03)" "25.000000 25.000000 4"
check "AS-HC 2015-03 after H4 moved to April → 100" "$(rate AS-HC 2015-03)" "100.000000 100.000000 3"
check "AS-HC 2015-04: H4 completed late → 0" "$(rate AS-HC 2015-04)" "0.000000 0.000000 1"
check "AS-ZJW 2015-05: Z1 on time → 100" "$(rate AS-ZJW 2015-05)" "100.000000 100.000000 1"
check "AS-ZJW 2015-04 unchanged" "$(rate AS-ZJW 2015-04)" "66.666667 66.666667 3"
check "G4's revisions, in order: on time, then overdue" \
    "$(q "SELECT string_agg(period || ':' || value, ' ' ORDER BY rev) FROM kp_observation WHERE ref = 'G4'")" \
    "2015-03:1 2015-03:0"
check "H4's revisions, in order: overdue in March, then overdue in April" \
    "$(q "SELECT string_agg(period || ':' || value, ' ' ORDER BY rev) FROM kp_observation WHERE ref = 'H4'")" \
    "2015-03:0 2015-04:0"
# Every case's latest revision in the source is the latest stored one.
psql -X -q -v ON_ERROR_STOP=1 "$ES" \
    -c "\\copy (SELECT case_no, revision FROM approval_case) TO '$it_work/esup-src.tsv'"
q "CREATE TABLE it_src (ref text, rev int)" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 "$DSN" -c "\\copy it_src FROM '$it_work/esup-src.tsv'"
check "latest revision of every case stored" \
    "$(q "SELECT count(*) FROM it_src s WHERE s.rev = (SELECT max(rev) FROM kp_observation o WHERE o.ref = s.ref)")" 12
check "no rejections" "$(q "SELECT count(*) FROM kp_rejection")" 0
check "observations = Σ n_obs of the batches (nothing sent twice)" \
    "$(q "SELECT count(*) FROM observation")" "$(q "SELECT sum(n_obs) FROM batch")"
echo "esup_events: all checks passed"
