-- A simulated department system: the statistics bureau (统计局), the assessment office's
-- review platform and its task-node tracking all publish "monthly indicator values per
-- assessed unit" and revise them from time to time (each revision bumps `revision` and
-- `updated_at`). One database per department; the `sql` adapter source reads each with the
-- query in department_query.sql.

CREATE TABLE indicator_value (
    id              bigserial PRIMARY KEY,
    unit_code       text NOT NULL,
    indicator_code  text NOT NULL,
    period          text NOT NULL,            -- YYYY-MM
    value           double precision NOT NULL,
    revision        integer NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (unit_code, indicator_code, period)
);
CREATE INDEX indicator_value_wm ON indicator_value (updated_at, id);

-- Every update is a revision: the adapter sees a new (updated_at, id) and a higher rev.
CREATE FUNCTION indicator_revise() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.revision := OLD.revision + 1;
    NEW.updated_at := clock_timestamp();
    RETURN NEW;
END $$;
CREATE TRIGGER indicator_revise BEFORE UPDATE ON indicator_value
    FOR EACH ROW EXECUTE FUNCTION indicator_revise();

-- What the simulator generates: which unit reports which indicator, around which value.
CREATE TABLE sim_target (
    unit_code       text NOT NULL,
    indicator_code  text NOT NULL,
    mean            double precision NOT NULL,
    sd              double precision NOT NULL,
    PRIMARY KEY (unit_code, indicator_code)
);

-- One step of the simulated bureau: publish month `p` for every target (each unit has its
-- own persistent offset so rankings are stable but not static), revise a few earlier rows,
-- and now and then write a bad row (a unit code the scheme does not know).
CREATE FUNCTION sim_publish(p text, n_revisions integer, bad boolean) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    INSERT INTO indicator_value (unit_code, indicator_code, period, value)
    SELECT t.unit_code, t.indicator_code, p,
           round((t.mean + t.sd * (abs(('x' || substr(md5(t.unit_code), 1, 8))::bit(32)::int % 1000)
                                   / 1000.0) + t.sd * 0.5 * (random() - 0.5))::numeric, 2)
      FROM sim_target t
    ON CONFLICT (unit_code, indicator_code, period) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;

    UPDATE indicator_value v
       SET value = round((v.value * (0.95 + random() * 0.1))::numeric, 2)
     WHERE v.id IN (SELECT id FROM indicator_value ORDER BY random() LIMIT n_revisions);

    IF bad THEN
        INSERT INTO indicator_value (unit_code, indicator_code, period, value)
        SELECT 'NO-SUCH-UNIT', min(indicator_code), p, 7.5 FROM sim_target
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN n;
END $$;
