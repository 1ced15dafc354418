#!/usr/bin/env bash
# Scenario: audit findings served by the simulated audit bureau's HTTP API (kp-sim-audit,
# deploy/sim/audit.sh) travel through kp-adapter with the audit profile (http source,
# deploy/profiles/audit.yaml) → kp-collector → kp-broker → kp-scorer and end as exact
# audit_findings and audit_rectification indicator scores of Anshan 2015 (issue 4): one
# finding = one count event (band points) and one rectification event (rate = 100 ×
# rectified / findings). A status change is a new revision that updates the rate; a finding
# published late joins its issue month; malformed findings are refused visibly (rejection
# rows, dead letters) while the good ones go on; injected 500s are retried and a rotated
# token is reported as 401 until the token file follows; the generated months of the
# simulator end as exactly what its API says.
. "$(dirname "$0")/lib.sh"
. "$KP_SOURCE_DIR/deploy/sim/audit.sh"

sim_audit_start "$it_work"
kp_cluster_adapter_profile audit "$KP_SOURCE_DIR/deploy/profiles/audit.yaml" \
    AUDIT_URL="$AUDIT_URL" AUDIT_TOKEN_FILE="$AUDIT_TOKEN_FILE"
check "token file mode" "$(stat -c %a "$AUDIT_TOKEN_FILE")" "600"
"$KP_BUILD_DIR/adapters/kp-adapter" -c "$it_work/etc/adapter-audit.yaml" --check-config >/dev/null

# f ID UNIT ISSUED STATUS: a hand-made finding (the generator leaves these alone); the
# bureau's system numbers its versions 1, 2, ... with every change.
f() {
    sim_audit_finding "{\"id\":\"$1\",\"unit\":\"$2\",\"issued_date\":\"$3\",\"status\":\"$4\",
        \"title\":\"专项资金未按规定用途使用\",\"amount\":12.5}"
}

# March 2015, by hand. Band (audit_findings, count): <1 → 100, [1,3) → 85, [3,6) → 70,
# ≥6 → 50. Rate (audit_rectification, direct): 100 × rectified / findings.
#   海城市 AS-HC   2 findings, 1 rectified        → count 2 → 85;  rate 50
#   台安县 AS-TA   4 findings, 3 rectified        → count 4 → 70;  rate 75
#   岫岩县 AS-XY   6 findings, none rectified     → count 6 → 50;  rate 0
#   发改委 AS-FGW  3 findings, 1 rectified        → count 3 → 70;  rate 33.333333
#   立山区 AS-LS   1 finding "待复核" (a status the profile does not map): its count event
#                  stands (→ 85); its rectification event is refused (bad_type): no rate
#   A-BAD-1 has no unit: both events refused (missing_field) and a dead letter
#   A-BAD-2 is a damaged record (a JSON string): a dead letter only
#   A-BAD-3 is for a unit outside the scheme: both events refused (unknown_unit)
f A-HC-1 AS-HC 2015-03-05 rectified
f A-HC-2 AS-HC 2015-03-18 open
for k in 1 2 3; do f "A-TA-$k" AS-TA "2015-03-0$k" rectified; done
f A-TA-4 AS-TA 2015-03-28 open
for k in 1 2 3 4 5 6; do f "A-XY-$k" AS-XY "2015-03-1$k" open; done
f A-FGW-1 AS-FGW 2015-03-02 rectified
f A-FGW-2 AS-FGW 2015-03-09 open
f A-FGW-3 AS-FGW 2015-03-30 open
f A-LS-1 AS-LS 2015-03-11 待复核
sim_audit_finding '{"id":"A-BAD-1","issued_date":"2015-03-04","status":"open"}'
sim_audit_finding '{"id":"A-BAD-2","raw":"A-BAD-2|AS-HC|<记录损坏>"}'
f A-BAD-3 AS-XJBM 2015-03-06 open

kp_cluster_start broker
kp_cluster_start collector
kp_cluster_start scorer
kp_cluster_start adapter-audit

ind() {
    q "SELECT string_agg(indicator || ' ' || round(value::numeric, 6) || ' ' || round(score::numeric, 6)
                         || ' ' || n_obs, ', ' ORDER BY indicator)
         FROM kp_indicator_score WHERE scheme = 'anshan-2015' AND period = '${2:-2015-03}'
          AND unit = '$1' AND indicator LIKE 'audit%'"
}
kp_wait_sql "$DSN" "SELECT count(*) FROM kp_observation WHERE src = 'audit'" 31 90
kp_wait_sql "$DSN" "SELECT count(*) FROM kp_rejection WHERE src = 'audit'" 5 30
check "海城市 March" "$(ind AS-HC)" \
    "audit_findings 2.000000 85.000000 2, audit_rectification 50.000000 50.000000 2"
check "台安县 March" "$(ind AS-TA)" \
    "audit_findings 4.000000 70.000000 4, audit_rectification 75.000000 75.000000 4"
check "岫岩县 March" "$(ind AS-XY)" \
    "audit_findings 6.000000 50.000000 6, audit_rectification 0.000000 0.000000 6"
check "发改委 March" "$(ind AS-FGW)" \
    "audit_findings 3.000000 70.000000 3, audit_rectification 33.333333 33.333333 3"
check "立山区 March: the count stands, the unmapped status is refused" "$(ind AS-LS)" \
    "audit_findings 1.000000 85.000000 1"
check "台安县 first quarter (events pooled)" "$(ind AS-TA 2015-Q1)" \
    "audit_findings 4.000000 70.000000 4, audit_rectification 75.000000 75.000000 4"
check "rejections" \
    "$(q "SELECT string_agg(ref || ' ' || code, ', ' ORDER BY ref) FROM kp_rejection WHERE src = 'audit'")" \
    "A-BAD-1:count missing_field, A-BAD-1:rect missing_field, A-BAD-3:count unknown_unit, A-BAD-3:rect unknown_unit, A-LS-1:rect bad_type"
check "provenance: one finding, two records, its version as rev" \
    "$(q "SELECT string_agg(indicator || ' ' || ref || ' ' || rev || ' ' || adapter, ', ' ORDER BY ref)
           FROM kp_observation WHERE unit = 'AS-FGW' AND ref LIKE 'A-FGW-1:%'")" \
    "audit_findings A-FGW-1:count 1 audit, audit_rectification A-FGW-1:rect 1 audit"
dlq=$("$KP_BUILD_DIR/kpctl/kpctl" dlq list -c "$it_work/etc/adapter-audit.yaml")
check "dead letters: A-BAD-1, A-BAD-2 and A-LS-1, with their place and reason" \
    "$(printf '%s\n' "$dlq" | grep -c -E 'findings\?cursor=.*:[0-9]+ +(missing_field|bad_type|bad_field)')" "3"
grep -q 'id A-BAD-1: u: unit is missing' <<<"$dlq" ||
    { echo "FAIL: dead letter of A-BAD-1 lacks its reason" >&2; echo "$dlq" >&2; exit 1; }

# Revisions. 岫岩县 rectifies one finding (version 2): rate 1/6. 海城市's rectification of
# A-HC-1 fails review: reopened (version 2): rate 0. 铁东区's finding of 03-20 is published
# only now (a late commit): it joins March.
f A-XY-1 AS-XY 2015-03-11 rectified
f A-HC-1 AS-HC 2015-03-05 open
f A-TD-1 AS-TD 2015-03-20 open
kp_wait_sql "$DSN" "SELECT round(value::numeric, 6) FROM kp_indicator_score WHERE period = '2015-03'
                      AND unit = 'AS-XY' AND indicator = 'audit_rectification'" 16.666667 30
kp_wait_sql "$DSN" "SELECT round(value::numeric, 6) FROM kp_indicator_score WHERE period = '2015-03'
                      AND unit = 'AS-TD' AND indicator = 'audit_findings'" 1.000000 30
kp_wait_sql "$DSN" "SELECT round(value::numeric, 6) FROM kp_indicator_score WHERE period = '2015-03'
                      AND unit = 'AS-HC' AND indicator = 'audit_rectification'" 0.000000 30
check "岫岩县 after the revision" "$(ind AS-XY)" \
    "audit_findings 6.000000 50.000000 6, audit_rectification 16.666667 16.666667 6"
check "海城市 after the reopening" "$(ind AS-HC)" \
    "audit_findings 2.000000 85.000000 2, audit_rectification 0.000000 0.000000 2"
check "铁东区 late finding" "$(ind AS-TD)" \
    "audit_findings 1.000000 85.000000 1, audit_rectification 0.000000 0.000000 1"
check "both revisions of A-XY-1:rect kept with provenance" \
    "$(q "SELECT string_agg(rev || ':' || value, ' ' ORDER BY rev) FROM kp_observation
           WHERE ref = 'A-XY-1:rect'")" "1:0 2:1"

# Faults: three 500s are retried inside one poll (4 attempts), the data still arrives.
sim_audit_fail 500 3
f A-TD-1 AS-TD 2015-03-20 rectified
kp_wait_sql "$DSN" "SELECT round(value::numeric, 6) FROM kp_indicator_score WHERE period = '2015-03'
                      AND unit = 'AS-TD' AND indicator = 'audit_rectification'" 100.000000 30
check "500s injected and absorbed" "$(sim_audit_stats | jq .injected_fail)" "3"
check "retries logged" "$(grep -c 'code=http_retry .*HTTP 500' "$it_work/logs/adapter-audit.log")" "3"

# The bureau rotates its token: 401 reported with its body, no retry storm; the token file
# follows and the adapter goes on without a restart.
new_token=$(od -An -tx1 -N18 /dev/urandom | tr -d ' \n')
sim_audit_token "$new_token"
f A-XY-2 AS-XY 2015-03-12 rectified
for i in $(seq 1 50); do
    grep -q 'code=source_failed .*HTTP 401' "$it_work/logs/adapter-audit.log" && break
    sleep 0.2
done
grep 'code=source_failed .*HTTP 401.*missing or invalid credentials' "$it_work/logs/adapter-audit.log" >/dev/null ||
    { echo "FAIL: the 401 was not reported with its body" >&2; exit 1; }
refused_before=$(sim_audit_stats | jq .refused_auth)
sleep 3
refused_after=$(sim_audit_stats | jq .refused_auth)
check "held off after a 401: at most one more request in 3 s" \
    "$([ $((refused_after - refused_before)) -le 1 ] && echo yes || echo "no: $refused_before → $refused_after")" "yes"
printf '%s\n' "$new_token" >"$AUDIT_TOKEN_FILE.new"
chmod 600 "$AUDIT_TOKEN_FILE.new"
mv "$AUDIT_TOKEN_FILE.new" "$AUDIT_TOKEN_FILE"
kp_wait_sql "$DSN" "SELECT round(value::numeric, 6) FROM kp_indicator_score WHERE period = '2015-03'
                      AND unit = 'AS-XY' AND indicator = 'audit_rectification'" 33.333333 30
if grep -q "$new_token" "$it_work/logs/adapter-audit.log"; then
    echo "FAIL: the token appears in the adapter's log" >&2
    exit 1
fi

# Generated months: the simulator issues findings for all 70 units, some late, rectifies,
# reopens, corrects, and makes bad rows. Whatever it serves ends as exactly these cells.
for m in 1 2 4; do sim_audit_step "$m"; done
feed() {
    local cursor="" page more all="[]"
    while :; do
        page=$(curl -fsS --max-time 10 -H "Authorization: Bearer $(cat "$AUDIT_TOKEN_FILE")" \
            "$AUDIT_URL?limit=1000${cursor:+&cursor=$cursor}")
        all=$(jq -c --argjson a "$all" '$a + .items' <<<"$page")
        more=$(jq -r .has_more <<<"$page")
        cursor=$(jq -r .next_cursor <<<"$page")
        [ "$more" = true ] || break
    done
    printf '%s\n' "$all"
}
expected() {
    feed | jq -r '
        def band: if . < 1 then 100 elif . < 3 then 85 elif . < 6 then 70 else 50 end;
        [ .[] | objects
          | select((.unit // "") != "" and .unit != "AS-XJBM"
                   and ((.issued_date // "") | test("^2015-[0-9]{2}-[0-9]{2}$"))) ]
        | group_by(.unit + " " + .issued_date[0:7])[]
        | (map(select(.status == "rectified" or .status == "open"))) as $st
        | "\(.[0].unit) \(.[0].issued_date[0:7]) audit_findings \(length) \(length | band)",
          (if ($st | length) > 0 then
             "\(.[0].unit) \(.[0].issued_date[0:7]) audit_rectification \(100 * ($st | map(select(.status == "rectified")) | length) / ($st | length)) x"
           else empty end)' |
        awk '{ printf "%s %s %s %.6f %s\n", $1, $2, $3, $4, ($5 == "x" ? sprintf("%.6f", $4) : sprintf("%.6f", $5)) }' |
        sort
}
actual() {
    q "SELECT unit || ' ' || period || ' ' || indicator || ' ' || value || ' ' || score
         FROM kp_indicator_score
        WHERE scheme = 'anshan-2015' AND indicator LIKE 'audit%' AND period ~ '^2015-[0-9]{2}$'" |
        awk '{ printf "%s %s %s %.6f %.6f\n", $1, $2, $3, $4, $5 }' | sort
}
ok=""
for i in $(seq 1 90); do
    exp_cells=$(expected)
    act_cells=$(actual)
    if [ "$exp_cells" = "$act_cells" ]; then
        ok=yes
        break
    fi
    sleep 1
done
if [ -z "$ok" ]; then
    echo "FAIL: the scores differ from what the API serves (< expected, > actual):" >&2
    diff <(printf '%s\n' "$exp_cells") <(printf '%s\n' "$act_cells") >&2 || true
    exit 1
fi
check "generated cells for many units and months" \
    "$([ "$(printf '%s\n' "$exp_cells" | wc -l)" -gt 60 ] && echo yes || echo no)" "yes"
check "every batch recorded once" "$(q "SELECT count(*) = count(DISTINCT (adapter, seq)) FROM batch")" "t"
check "nothing waits in the adapter's spool" "$(kp_cluster_metric adapter-audit kaoping_adapter_spool_depth)" "0"
sim_audit_stop
echo "audit_http: all checks passed"
