SELECT updated_at::text AS wm_ts, id AS wm_id,
       unit_code AS u, indicator_code AS i, period AS p, value AS val,
       'siv-' || id AS ref, revision AS rev,
       (extract(epoch FROM updated_at) * 1000)::bigint AS at
  FROM indicator_value
 WHERE (updated_at, id) > ($1::timestamptz, $2::bigint)
   AND updated_at <= $3::timestamptz
 ORDER BY updated_at, id
 LIMIT $4
