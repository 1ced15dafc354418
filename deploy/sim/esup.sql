-- A simulated e-supervision system (电子监察系统): the city's administrative-approval cases
-- (行政审批办件) with their legal time limits (法定时限), tracked stage by stage (受理, 审查,
-- 决定, 送达) across the assessed units, thousands of cases a day. The `sql` adapter source
-- reads one event per case through the view approval_case_event with the query in
-- esup_query.sql (profile deploy/profiles/esup.yaml) into the Anshan 2015 leaf
-- approval_ontime (行政审批按时办结率, input rate: val 1 on time, 0 overdue).
--
-- What counts (DOMAIN.md "E-supervision"):
--   * a case is ON TIME (val 1) when it completed by its deadline AND none of its stages ran
--     over its own stage limit; one stage over its limit makes the case overdue (val 0) even
--     when the whole case finished in time (the yellow card of e-supervision);
--   * the period is the month (Beijing time) the case completed;
--   * a case still open once its deadline has passed is an overdue event of the deadline's
--     month, read as soon as the database clock passes the deadline (no job needs to mark
--     it); its later completion is a new revision, which may move it to another month;
--   * a case still open within its limit is no event yet.
-- The deadline is accepted_at + legal_days calendar days here (the real systems count working
-- days and store the deadline they computed; due_at plays that part).
--
-- Watermark: every write of a case bumps its `revision` and `updated_at` (trigger), and every
-- write of one of its stages touches the case (statement triggers), so a stage record that
-- arrives late, or finishes over its limit after the case was read, re-emits the case as a
-- new revision. `wm_ts` is updated_at, except that an open case is not due before its
-- deadline: greatest(updated_at, due_at). Rows whose wm_ts lies in the future are invisible
-- to the adapter's query until the database clock (minus lag) passes it.
--
-- The second half of the file is the simulator (sim_* tables, esup_sim_* routines); a real
-- e-supervision database has only the first half.

SET client_min_messages = warning;

-- ---- the e-supervision database -----------------------------------------------------------

-- The catalogue of approval items (行政审批事项目录) with their legal time limits.
CREATE TABLE approval_item (
    id          integer PRIMARY KEY,
    item_name   text NOT NULL UNIQUE,
    legal_days  integer NOT NULL CHECK (legal_days > 0)
);
INSERT INTO approval_item (id, item_name, legal_days) VALUES
    (1, '企业投资项目备案', 5),
    (2, '建设项目环境影响评价文件审批', 30),
    (3, '建设工程规划许可证核发', 20),
    (4, '建筑工程施工许可证核发', 15),
    (5, '食品经营许可', 20),
    (6, '药品零售企业经营许可', 30),
    (7, '排污许可证核发', 20),
    (8, '道路运输经营许可', 20),
    (9, '户口迁移审批', 10),
    (10, '民办学校设立审批', 30),
    (11, '医疗机构执业登记', 45),
    (12, '特种设备使用登记', 15),
    (13, '取水许可', 45),
    (14, '林木采伐许可证核发', 10),
    (15, '公共场所卫生许可', 20),
    (16, '社会团体成立登记', 60),
    (17, '出版物零售单位设立审批', 20),
    (18, '人力资源服务许可', 20);

CREATE TABLE approval_case (
    id            bigserial PRIMARY KEY,
    case_no       text NOT NULL UNIQUE,           -- 办件编号: the event's ref
    unit_code     text NOT NULL,                  -- 承办单位: the assessed unit
    item_name     text NOT NULL,                  -- 审批事项
    accepted_at   timestamptz NOT NULL,           -- 受理时间
    legal_days    integer NOT NULL CHECK (legal_days > 0),  -- 法定时限
    due_at        timestamptz NOT NULL,           -- 办结期限 (trigger)
    completed_at  timestamptz,                    -- 办结时间
    status        text NOT NULL DEFAULT 'processing'
                  CHECK (status IN ('processing', 'approved', 'refused')),
    revision      integer NOT NULL DEFAULT 0,     -- trigger
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),  -- trigger
    wm_ts         timestamptz GENERATED ALWAYS AS (
                      CASE WHEN completed_at IS NULL THEN greatest(updated_at, due_at)
                           ELSE updated_at END) STORED,
    CHECK ((status = 'processing') = (completed_at IS NULL))
);
CREATE INDEX approval_case_wm ON approval_case (wm_ts, id);

CREATE TABLE approval_stage (
    id            bigserial PRIMARY KEY,
    case_id       bigint NOT NULL REFERENCES approval_case (id) ON DELETE CASCADE,
    seq           smallint NOT NULL,              -- order inside the case
    stage_name    text NOT NULL,                  -- 受理 审查 决定 送达
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,                    -- NULL: in progress
    limit_hours   integer NOT NULL CHECK (limit_hours > 0),  -- 环节时限
    UNIQUE (case_id, seq)
);

-- Every write of a case is a revision: a new (updated_at, id) and a higher revision.
CREATE FUNCTION approval_case_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.due_at := NEW.accepted_at + make_interval(days => NEW.legal_days);
    NEW.updated_at := clock_timestamp();
    IF TG_OP = 'UPDATE' THEN
        NEW.revision := OLD.revision + 1;
    ELSE
        NEW.revision := 0;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER approval_case_stamp BEFORE INSERT OR UPDATE ON approval_case
    FOR EACH ROW EXECUTE FUNCTION approval_case_stamp();

-- Every write of stages touches their cases once per statement (a new revision of each).
CREATE FUNCTION approval_stage_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE approval_case c SET updated_at = clock_timestamp()
         WHERE c.id IN (SELECT case_id FROM new_rows);
    ELSIF TG_OP = 'UPDATE' THEN
        UPDATE approval_case c SET updated_at = clock_timestamp()
         WHERE c.id IN (SELECT case_id FROM new_rows UNION SELECT case_id FROM old_rows);
    ELSE
        UPDATE approval_case c SET updated_at = clock_timestamp()
         WHERE c.id IN (SELECT case_id FROM old_rows);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER approval_stage_ins AFTER INSERT ON approval_stage
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION approval_stage_touch();
CREATE TRIGGER approval_stage_upd AFTER UPDATE ON approval_stage
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION approval_stage_touch();
CREATE TRIGGER approval_stage_del AFTER DELETE ON approval_stage
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION approval_stage_touch();

-- One row per case with what the assessment needs. A row is an event once its wm_ts is in
-- the past: a completed case at once, an open one when its deadline passes. A stage still in
-- progress when its case completed is judged as ending at the completion.
CREATE VIEW approval_case_event AS
SELECT c.id, c.case_no, c.unit_code, c.item_name, c.wm_ts, c.revision,
       coalesce(c.completed_at, c.due_at) AS event_at,
       to_char(coalesce(c.completed_at, c.due_at) AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM')
           AS period,
       CASE WHEN c.completed_at IS NOT NULL AND c.completed_at <= c.due_at
                 AND NOT EXISTS (
                     SELECT 1 FROM approval_stage s
                      WHERE s.case_id = c.id
                        AND coalesce(s.finished_at, c.completed_at)
                            > s.started_at + make_interval(hours => s.limit_hours))
            THEN 1 ELSE 0 END AS ontime
  FROM approval_case c;

-- ---- the simulator ---------------------------------------------------------------------------
-- Not part of a real e-supervision database. The simulator plans every case in advance
-- (sim_case, sim_stage) and publishes it into approval_case/approval_stage as simulated time
-- passes, one simulated day per transaction: a case appears once its outcome is known at the
-- end of the day (completed, or open past its deadline), its stages appear as they start and
-- finish, and a few stage records arrive days after their case completed (the data exchange
-- from the business system lags), which re-emits the case as a revision.

-- The units and how they behave: volume share and the chances of the three kinds of delay.
-- Filled by esup_sim_setup() from the unit codes (the scheme's approval_ontime cells).
CREATE TABLE sim_unit (
    unit_code     text PRIMARY KEY,
    volume        double precision,   -- relative share of the day's cases
    p_late        double precision,   -- case completes after its deadline
    p_stage       double precision,   -- one stage over its limit, case in time
    p_latecommit  double precision    -- the delivery stage's record arrives days late
);

CREATE TABLE sim_case (
    case_no          text PRIMARY KEY,
    unit_code        text NOT NULL,
    item_id          integer NOT NULL,
    accepted_at      timestamptz NOT NULL,
    legal_days       integer NOT NULL,
    completes_at     timestamptz NOT NULL,
    late_seq         smallint,        -- the stage whose record arrives late, or NULL
    late_arrives_at  timestamptz,
    refused          boolean NOT NULL,
    case_id          bigint           -- approval_case.id once published
);
CREATE INDEX sim_case_unpublished ON sim_case (accepted_at) WHERE case_id IS NULL;
CREATE INDEX sim_case_case_id ON sim_case (case_id);

CREATE TABLE sim_stage (
    case_no       text NOT NULL,
    seq           smallint NOT NULL,
    stage_name    text NOT NULL,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NOT NULL,
    limit_hours   integer NOT NULL,
    PRIMARY KEY (case_no, seq)
);

-- Cases published and not yet settled (open, or a stage record still to arrive).
CREATE TABLE sim_open (
    case_no       text PRIMARY KEY,
    case_id       bigint NOT NULL
);

CREATE SEQUENCE sim_case_no_seq;

-- A number in [0, 1) that depends only on the text: stable per-unit behaviour.
CREATE FUNCTION sim_hash01(t text) RETURNS double precision LANGUAGE sql IMMUTABLE AS $$
    SELECT (('x' || substr(md5(t), 1, 8))::bit(32)::bigint & 2147483647) / 2147483648.0
$$;

CREATE FUNCTION esup_sim_setup() RETURNS integer LANGUAGE sql AS $$
    UPDATE sim_unit SET
        volume = coalesce(volume, 0.3 + 2.7 * sim_hash01(unit_code || ':volume')),
        p_late = coalesce(p_late, 0.01 + 0.09 * sim_hash01(unit_code || ':late')),
        p_stage = coalesce(p_stage, 0.01 + 0.06 * sim_hash01(unit_code || ':stage')),
        p_latecommit = coalesce(p_latecommit, 0.02);
    SELECT count(*)::integer FROM sim_unit;
$$;

-- One simulated day (Beijing time): plans about n_cases new cases accepted that day across
-- the units, then publishes everything whose state changed by the end of the day. With
-- commit_delay > 0 the transaction holds its rows that many seconds before it commits (a late
-- commit: the adapter's lag_ms must cover it). Returns the number of cases planned.
CREATE FUNCTION esup_sim_day(day date, n_cases integer, commit_delay double precision DEFAULT 0)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    day_end timestamptz := ((day + 1)::timestamp) AT TIME ZONE 'Asia/Shanghai';
    total_volume double precision;
    n integer;
BEGIN
    SELECT sum(volume) INTO total_volume FROM sim_unit;
    IF total_volume IS NULL OR total_volume <= 0 THEN
        RAISE EXCEPTION 'esup_sim_day: sim_unit is empty (run esup_sim_setup)';
    END IF;

    -- Plan the day's cases: kind 0 on time, 1 one stage over its limit, 2 late.
    CREATE TEMP TABLE IF NOT EXISTS sim_new (
        case_no text, unit_code text, item_id integer, accepted_at timestamptz,
        legal_days integer, kind integer, over_seq integer, latecommit boolean
    ) ON COMMIT DROP;
    TRUNCATE sim_new;
    INSERT INTO sim_new
    SELECT 'SP' || to_char(day, 'YYYYMMDD') || '-' || lpad(nextval('sim_case_no_seq')::text, 7, '0'),
           u.unit_code, it.id,
           ((day + time '08:30')::timestamp + random() * interval '8 hours 30 minutes')
               AT TIME ZONE 'Asia/Shanghai',
           it.legal_days,
           CASE WHEN r.k < u.p_late THEN 2 WHEN r.k < u.p_late + u.p_stage THEN 1 ELSE 0 END,
           1 + floor(random() * 4)::integer,
           r.lc < u.p_latecommit
      FROM sim_unit u
     CROSS JOIN LATERAL generate_series(1, greatest(0, round(n_cases * u.volume / total_volume
                                                             * (0.8 + 0.4 * random()))::integer)) g
     CROSS JOIN LATERAL (SELECT random() AS k, random() AS lc, 1 + floor(random() * 18)::integer AS item) r
      JOIN approval_item it ON it.id = r.item;
    GET DIAGNOSTICS n = ROW_COUNT;

    -- A late-arriving record is the delivery stage's; make it one that ran over its limit
    -- (so that its arrival turns an on-time case overdue).
    UPDATE sim_new SET kind = 1, over_seq = 4 WHERE latecommit AND kind <> 2;

    -- Stage limits: 10% / 50% / 25% / 15% of the legal limit (at least 4 h each). Durations
    -- are the limit times a factor: on time 0.15-0.85; one stage over its limit 1.1-1.4 for
    -- it and 0.1-0.4 for the others (the case stays in time); late 0.9-1.8.
    INSERT INTO sim_stage (case_no, seq, stage_name, started_at, finished_at, limit_hours)
    SELECT x.case_no, x.seq, x.stage_name,
           x.accepted_at + coalesce(sum(x.dur) OVER w - x.dur, interval '0'),
           x.accepted_at + sum(x.dur) OVER w,
           x.limit_hours
      FROM (SELECT c.case_no, c.accepted_at, st.seq, st.stage_name, lim.limit_hours,
                   lim.limit_hours * interval '1 hour' *
                   CASE WHEN c.kind = 2 THEN 0.9 + 0.9 * random()
                        WHEN c.kind = 1 AND st.seq = c.over_seq THEN 1.1 + 0.3 * random()
                        WHEN c.kind = 1 THEN 0.1 + 0.3 * random()
                        ELSE 0.15 + 0.7 * random() END AS dur
              FROM sim_new c
             CROSS JOIN (VALUES (1, '受理', 0.10), (2, '审查', 0.50), (3, '决定', 0.25),
                                (4, '送达', 0.15)) AS st(seq, stage_name, share)
             CROSS JOIN LATERAL (SELECT greatest(4, round(c.legal_days * 24 * st.share))::integer
                                        AS limit_hours) lim) x
    WINDOW w AS (PARTITION BY x.case_no ORDER BY x.seq);

    INSERT INTO sim_case (case_no, unit_code, item_id, accepted_at, legal_days, completes_at,
                          late_seq, late_arrives_at, refused)
    SELECT c.case_no, c.unit_code, c.item_id, c.accepted_at, c.legal_days, f.done,
           CASE WHEN c.latecommit THEN 4 END,
           CASE WHEN c.latecommit THEN f.done + (1 + random() * 3) * interval '1 day' END,
           random() < 0.05
      FROM sim_new c
      JOIN (SELECT case_no, max(finished_at) AS done FROM sim_stage
             WHERE case_no IN (SELECT case_no FROM sim_new) GROUP BY case_no) f
        ON f.case_no = c.case_no;

    PERFORM esup_sim_publish(day_end);
    IF commit_delay > 0 THEN
        PERFORM pg_sleep(commit_delay);
    END IF;
    RETURN n;
END $$;

-- Brings the e-supervision tables to the state of the simulated instant `t`.
CREATE FUNCTION esup_sim_publish(t timestamptz) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- New cases whose outcome is known: completed by t, or open past their deadline.
    WITH pub AS (
        SELECT s.* FROM sim_case s
         WHERE s.case_id IS NULL
           AND s.accepted_at <= t
           AND (s.completes_at <= t
                OR s.accepted_at + make_interval(days => s.legal_days) <= t)
    ), ins AS (
        INSERT INTO approval_case (case_no, unit_code, item_name, accepted_at, legal_days,
                                   completed_at, status)
        SELECT p.case_no, p.unit_code, it.item_name, p.accepted_at, p.legal_days,
               CASE WHEN p.completes_at <= t THEN p.completes_at END,
               CASE WHEN p.completes_at > t THEN 'processing'
                    WHEN p.refused THEN 'refused' ELSE 'approved' END
          FROM pub p JOIN approval_item it ON it.id = p.item_id
        RETURNING id, case_no
    ), upd AS (
        UPDATE sim_case s SET case_id = ins.id FROM ins WHERE s.case_no = ins.case_no
        RETURNING s.case_no, s.case_id
    )
    INSERT INTO sim_open (case_no, case_id) SELECT case_no, case_id FROM upd;

    -- Stages of open cases that started by t and are not there yet (a late record only once
    -- it has arrived).
    INSERT INTO approval_stage (case_id, seq, stage_name, started_at, finished_at, limit_hours)
    SELECT o.case_id, st.seq, st.stage_name, st.started_at,
           CASE WHEN st.finished_at <= t THEN st.finished_at END, st.limit_hours
      FROM sim_open o
      JOIN sim_case s ON s.case_no = o.case_no
      JOIN sim_stage st ON st.case_no = o.case_no
     WHERE st.started_at <= t
       AND (s.late_seq IS DISTINCT FROM st.seq OR s.late_arrives_at <= t)
       AND NOT EXISTS (SELECT 1 FROM approval_stage a WHERE a.case_id = o.case_id AND a.seq = st.seq);

    -- Stages that finished by t.
    UPDATE approval_stage a SET finished_at = st.finished_at
      FROM sim_open o JOIN sim_stage st ON st.case_no = o.case_no
     WHERE a.case_id = o.case_id AND a.seq = st.seq
       AND a.finished_at IS NULL AND st.finished_at <= t;

    -- Cases that completed by t.
    UPDATE approval_case c
       SET completed_at = s.completes_at,
           status = CASE WHEN s.refused THEN 'refused' ELSE 'approved' END
      FROM sim_open o JOIN sim_case s ON s.case_no = o.case_no
     WHERE c.id = o.case_id AND c.completed_at IS NULL AND s.completes_at <= t;

    -- Settled: completed, every stage record arrived.
    DELETE FROM sim_open o USING sim_case s
     WHERE s.case_no = o.case_no AND s.completes_at <= t
       AND (s.late_arrives_at IS NULL OR s.late_arrives_at <= t);
END $$;

-- A simulated month 'YYYY-MM', one transaction per day; every 7th day commits late by
-- commit_delay seconds. Returns nothing; CALL it outside a transaction block.
CREATE PROCEDURE esup_sim_month(month text, cases_per_day integer,
                                commit_delay double precision DEFAULT 0.5)
LANGUAGE plpgsql AS $$
DECLARE
    d date;
BEGIN
    FOR d IN SELECT generate_series(to_date(month, 'YYYY-MM'),
                                    (to_date(month, 'YYYY-MM') + interval '1 month - 1 day')::date,
                                    interval '1 day')::date
    LOOP
        PERFORM esup_sim_day(d, cases_per_day,
                             CASE WHEN extract(day FROM d)::integer % 7 = 3 THEN commit_delay
                                  ELSE 0 END);
        COMMIT;
    END LOOP;
END $$;
