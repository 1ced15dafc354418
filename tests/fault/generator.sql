-- The producer of the fault-injection suite (tests/fault/fault_suite.sh): department systems
-- that append every record they publish, every revision and every re-send to one log, which
-- the real kp-adapter (sql source, one adapter per src) reads with its (updated_at, id)
-- watermark. Because each log row is read exactly once, every produced record (src, ref, rev)
-- can be checked afterwards to be exactly once in observation or rejection.
--
-- fault_produce(n) appends about n rows, deterministically from a global counter (the same
-- calls give the same data), over the anshan-2015 scheme:
--   values (one cell per ref, revised again and again, pairs of revisions arriving in
--   reverse order): stats growth rates, office review scores, tasks node completion, finance
--   budget execution;
--   events (one ref per event, some revised): audit findings (count) and rectifications
--   (rate), e-supervision approvals on time (rate, weighted), office commendations and
--   criticisms (adjustments, withdrawn by a revision with val 0);
--   duplicates: a good row published again unchanged (same src, ref, rev);
--   bad rows (about 5%), each with its own ref, never duplicated, each expecting one reason
--   code: unknown_unit, bad_period, out_of_range, not_finite, unknown_indicator,
--   not_granted_indicator.

CREATE TABLE fault_log (
    id          bigserial PRIMARY KEY,
    src         text NOT NULL,
    ref         text NOT NULL,
    rev         bigint NOT NULL,
    unit        text NOT NULL,
    indicator   text NOT NULL,
    period      text NOT NULL,
    value       double precision NOT NULL,
    w           double precision NOT NULL DEFAULT 1,
    expect      text NOT NULL DEFAULT 'ok',   -- 'ok' or the reason code it must be refused with
    dup         boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX fault_log_wm ON fault_log (src, updated_at, id);

CREATE TABLE fault_state (k int PRIMARY KEY, g bigint NOT NULL);
INSERT INTO fault_state VALUES (1, 0);

-- A deterministic number in [0, 1) from (g, salt).
CREATE FUNCTION fault_h(g bigint, salt int) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
    SELECT (hashint8(g * 7919 + salt) & 2147483647)::float8 / 2147483648.0
$$;

CREATE FUNCTION fault_produce(n int) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    g123 text[] := ARRAY['AS-HC','AS-TA','AS-XY','AS-TD','AS-TX','AS-LS','AS-QS','AS-GX',
                         'AS-JK','AS-QSFJ'];
    g4   text[] := ARRAY['AS-BGT','AS-FGW','AS-JXW','AS-JYJ','AS-KJJ','AS-GAJ','AS-CZJ',
                         'AS-SJJ','AS-TJJ','AS-HBJ'];
    allu text[];
    stats_i text[] := ARRAY['gdp_growth','fixed_asset_growth','fiscal_revenue_growth',
                            'retail_sales_growth','income_growth','energy_per_gdp'];
    office_i text[] := ARRAY['politics','culture','society_tasks','ecology_tasks','reform',
                             'rule_of_law'];
    duty_i text[] := ARRAY['key_tasks','provincial_tasks'];
    adj_i text[] := ARRAY['commendation','criticism','interview'];
    srcs text[] := ARRAY['stats','office','tasks','finance','audit','esup'];
    main_i text[] := ARRAY['gdp_growth','politics','process','budget_execution',
                           'audit_rectification','approval_ontime'];
    gc bigint;
    g bigint;
    last_good bigint := 0;
    slot int; j bigint; r bigint; k bigint; rnd bigint; rev bigint;
    s text; u text; i text; p text; v double precision; wt double precision; ex text;
    made int := 0;
BEGIN
    allu := g123 || g4;
    SELECT fault_state.g INTO gc FROM fault_state WHERE fault_state.k = 1 FOR UPDATE;
    FOR step IN 1..n LOOP
        gc := gc + 1;
        g := gc;
        slot := (g % 20)::int;
        j := g / 20;
        wt := 1;
        ex := 'ok';
        IF slot < 5 THEN                                  -- stats values: 720 cells
            k := j * 5 + slot;
            r := 6 * 10 * 12;
            rnd := k / r; k := k % r;
            s := 'stats'; i := stats_i[1 + k % 6]; u := g123[1 + (k / 6) % 10];
            p := '2015-' || lpad((1 + k / 60)::text, 2, '0');
            v := round((fault_h(g, 1) * 25 - 5)::numeric, 2);
        ELSIF slot < 8 THEN                               -- office review scores
            k := j * 3 + slot - 5;
            r := 6 * 10 * 12 + 2 * 10 * 12;
            rnd := k / r; k := k % r;
            s := 'office';
            IF k < 720 THEN
                i := office_i[1 + k % 6]; u := g123[1 + (k / 6) % 10]; p := '2015-' || lpad((1 + k / 60)::text, 2, '0');
            ELSE
                k := k - 720;
                i := duty_i[1 + k % 2]; u := g4[1 + (k / 2) % 10]; p := '2015-' || lpad((1 + k / 20)::text, 2, '0');
                k := k + 720;
            END IF;
            v := round((50 + fault_h(g, 2) * 50)::numeric, 1);
        ELSIF slot = 8 THEN                               -- task node completion
            r := 20 * 12;
            rnd := j / r; k := j % r;
            s := 'tasks'; i := 'process'; u := allu[1 + k % 20];
            p := '2015-' || lpad((1 + k / 20)::text, 2, '0');
            v := round((fault_h(g, 3) * 100)::numeric, 1);
        ELSIF slot < 11 THEN                              -- budget execution
            k := j * 2 + slot - 9;
            r := 20 * 12;
            rnd := k / r; k := k % r;
            s := 'finance'; i := 'budget_execution'; u := allu[1 + k % 20];
            p := '2015-' || lpad((1 + k / 20)::text, 2, '0');
            v := round((fault_h(g, 4) * 150)::numeric, 2);
        ELSIF slot < 13 THEN                              -- audit events
            k := j * 2 + slot - 11;
            r := 6000;
            rnd := k / r; k := k % r;
            s := 'audit'; u := allu[1 + k % 20];
            p := '2015-' || lpad((1 + (k / 20) % 12)::text, 2, '0');
            IF k % 3 = 0 THEN
                i := 'audit_findings'; v := 1;
            ELSE
                i := 'audit_rectification'; v := CASE WHEN fault_h(g, 5) < 0.4 + 0.3 * rnd THEN 1 ELSE 0 END;
            END IF;
        ELSIF slot < 16 THEN                              -- approvals on time, weighted
            k := j * 3 + slot - 13;
            r := 15000;
            rnd := k / r; k := k % r;
            s := 'esup'; i := 'approval_ontime'; u := allu[1 + k % 20];
            p := '2015-' || lpad((1 + (k / 20) % 12)::text, 2, '0');
            v := CASE WHEN fault_h(g, 6) < 0.8 THEN 1 ELSE 0 END;
            wt := 1 + (k % 3);
        ELSIF slot < 18 THEN                              -- adjustments
            k := j * 2 + slot - 16;
            r := 3000;
            rnd := k / r; k := k % r;
            s := 'office'; i := adj_i[1 + k % 3]; u := allu[1 + (k / 3) % 20];
            p := '2015-' || lpad((1 + (k / 60) % 12)::text, 2, '0');
            v := CASE WHEN rnd % 2 = 0 THEN 1 ELSE 0 END; -- a revision withdraws, the next restores
        ELSIF slot = 18 THEN                              -- bad rows
            s := srcs[1 + (j % 6)::int];
            i := main_i[1 + (j % 6)::int];
            u := CASE WHEN i IN ('politics','gdp_growth') THEN 'AS-HC' ELSE 'AS-BGT' END;
            p := '2015-06';
            v := 0.5;
            CASE ((j / 6) % 6)::int
                WHEN 0 THEN u := 'AS-NOPE'; ex := 'unknown_unit';
                WHEN 1 THEN p := '2015-13'; ex := 'bad_period';
                WHEN 2 THEN v := 5000; ex := 'out_of_range';
                WHEN 3 THEN v := 'NaN'::float8; ex := 'not_finite';
                WHEN 4 THEN i := 'no_such_indicator'; ex := 'unknown_indicator';
                ELSE i := main_i[1 + ((j + 1) % 6)::int]; u := 'AS-HC'; ex := 'not_granted_indicator';
            END CASE;
            INSERT INTO fault_log (src, ref, rev, unit, indicator, period, value, w, expect)
            VALUES (s, 'bad:' || g, 0, u, i, p, v, 1, ex);
            made := made + 1;
            CONTINUE;
        ELSE                                              -- a good row published again
            IF last_good > 0 THEN
                INSERT INTO fault_log (src, ref, rev, unit, indicator, period, value, w, dup)
                SELECT l.src, l.ref, l.rev, l.unit, l.indicator, l.period, l.value, l.w, true
                  FROM fault_log l WHERE l.id = last_good - (fault_h(g, 7) * 97)::bigint AND l.expect = 'ok';
                GET DIAGNOSTICS k = ROW_COUNT;
                made := made + k::int;
            END IF;
            CONTINUE;
        END IF;
        -- Revisions of a ref arrive in pairs in reverse order (1, 0, 3, 2, ...): a lower
        -- revision after a higher one changes nothing (ARCHITECTURE.md guarantee 2).
        rev := CASE WHEN rnd % 2 = 0 THEN rnd + 1 ELSE rnd - 1 END;
        INSERT INTO fault_log (src, ref, rev, unit, indicator, period, value, w)
        VALUES (s, s || ':' || i || ':' || k, rev, u, i, p, v, wt)
        RETURNING id INTO last_good;
        made := made + 1;
    END LOOP;
    UPDATE fault_state SET g = gc WHERE fault_state.k = 1;
    RETURN made;
END $$;
