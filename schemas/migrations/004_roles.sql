-- kaoping schema, migration 4: least-privilege database roles (issue 6, ARCHITECTURE.md
-- guarantee 5: only granted sources write).
--
--   kaoping_writer  the scorer: SELECT, INSERT, UPDATE, DELETE on the schema's tables (views
--                   included) and USAGE on its sequences; no DDL, no TRUNCATE, owns nothing.
--   kaoping_reader  dashboards and BI tools: SELECT on the kp_* views of PROTOCOL.md ("Read
--                   model") and on nothing else: not a base table, not even kp_unit & co. The
--                   views keep security_invoker off (the default), so they read the tables
--                   with their owner's rights while the reader holds none on those tables.
--
-- Both are NOLOGIN groups, created here when absent (that needs CREATEROLE; a migration
-- owner without it has the two roles created beforehand by an administrator, the rest of
-- this file needs only ownership of the tables). An operator gives people and daemons login
-- roles that are members, with passwords set interactively, never in a file under version
-- control or on a command line:
--
--   CREATE ROLE kp_scorer LOGIN IN ROLE kaoping_writer;   -- then: \password kp_scorer
--   CREATE ROLE grafana   LOGIN IN ROLE kaoping_reader;   -- then: \password grafana
--
-- The scorer then connects as kp_scorer with `migrations: ""` (schema changes are applied by
-- the owner, e.g. a scorer run once as the owner) and reads its password from db.passfile (a
-- libpq password file, mode 0600) or from PGPASSFILE/PGPASSWORD in its environment (systemd
-- EnvironmentFile=), never from db.dsn. Dashboards use their own login role.
--
-- Tables and sequences that later migrations of the same owner create are granted to
-- kaoping_writer by the default privileges below; a later migration that adds a kp_* view
-- grants SELECT on it to kaoping_reader itself (CREATE OR REPLACE VIEW keeps the grants of the
-- view it replaces, DROP + CREATE does not).

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kaoping_writer') THEN
        CREATE ROLE kaoping_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kaoping_reader') THEN
        CREATE ROLE kaoping_reader NOLOGIN;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE EXCEPTION 'cannot create the roles kaoping_writer and kaoping_reader: %', SQLERRM
        USING HINT = 'have an administrator run: CREATE ROLE kaoping_writer NOLOGIN; '
                     'CREATE ROLE kaoping_reader NOLOGIN; then start the scorer again';
END
$roles$;

DO $grants$
DECLARE
    s text := current_schema();
    v record;
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO kaoping_writer, kaoping_reader', s);

    -- the writer: data, not structure
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I '
                   'TO kaoping_writer', s);
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO kaoping_writer', s);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I '
                   'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO kaoping_writer', s);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I '
                   'GRANT USAGE, SELECT ON SEQUENCES TO kaoping_writer', s);

    -- the reader: the kp_* views only
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM kaoping_reader', s);
    EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM kaoping_reader', s);
    FOR v IN SELECT viewname FROM pg_views
              WHERE schemaname = s AND viewname LIKE 'kp\_%' ESCAPE '\'
    LOOP
        EXECUTE format('GRANT SELECT ON %I.%I TO kaoping_reader', s, v.viewname);
    END LOOP;
END
$grants$;
