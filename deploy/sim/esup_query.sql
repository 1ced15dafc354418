SELECT e.wm_ts, e.id AS wm_id,
       e.unit_code AS u, 'approval_ontime' AS i, e.period AS p, e.ontime AS val,
       e.case_no AS ref, e.revision AS rev,
       (extract(epoch FROM e.event_at) * 1000)::bigint AS at
  FROM approval_case_event e
 WHERE (e.wm_ts, e.id) > ($1::timestamptz, $2::bigint)
   AND e.wm_ts <= $3::timestamptz
 ORDER BY e.wm_ts, e.id
 LIMIT $4
