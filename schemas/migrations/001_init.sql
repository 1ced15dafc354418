-- kaoping schema, version 1: the scorer's tables and the read model of PROTOCOL.md.
-- Applied by kp_pg_migrate() in one transaction under an advisory lock; never edit an
-- applied migration, add a new file instead.

CREATE TABLE kp_scheme (
    scheme      text PRIMARY KEY,
    name        text NOT NULL,
    loaded_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE kp_group (
    scheme      text NOT NULL REFERENCES kp_scheme,
    grp         text NOT NULL,
    name        text NOT NULL,
    PRIMARY KEY (scheme, grp)
);

CREATE TABLE kp_unit (
    scheme      text NOT NULL REFERENCES kp_scheme,
    unit        text NOT NULL,
    name        text NOT NULL,
    grp         text NOT NULL,
    PRIMARY KEY (scheme, unit)
);

CREATE TABLE kp_indicator (
    scheme      text NOT NULL REFERENCES kp_scheme,
    indicator   text NOT NULL,
    name        text NOT NULL,
    parent      text,
    is_leaf     boolean NOT NULL,
    method      text NOT NULL DEFAULT '',
    PRIMARY KEY (scheme, indicator)
);

-- One row per committed batch: the dedup key of ARCHITECTURE.md guarantee 2. A retransmit
-- finds its row and is answered dup:true with the original counts.
CREATE TABLE batch (
    adapter     text NOT NULL,
    seq         numeric(20,0) NOT NULL,
    scheme      text NOT NULL,
    src         text NOT NULL,
    n_obs       integer NOT NULL,
    stored      integer NOT NULL,
    rej         jsonb NOT NULL DEFAULT '[]',
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (adapter, seq)
);

-- Every revision of every record, with provenance (guarantee 6). (scheme, src, ref, rev) is
-- unique: a record delivered twice (overlap windows, retransmits) is stored once.
CREATE TABLE observation (
    id          bigserial PRIMARY KEY,
    scheme      text NOT NULL,
    src         text NOT NULL,
    ref         text NOT NULL,
    rev         numeric(20,0) NOT NULL,
    unit        text NOT NULL,
    indicator   text NOT NULL,
    period      text NOT NULL,
    value       double precision NOT NULL,
    w           double precision NOT NULL,
    x           jsonb,
    observed_at timestamptz NOT NULL,
    adapter     text NOT NULL,
    seq         numeric(20,0) NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (scheme, src, ref, rev)
);
CREATE INDEX observation_cell ON observation (scheme, unit, indicator, period);

CREATE TABLE rejection (
    id          bigserial PRIMARY KEY,
    scheme      text NOT NULL,
    src         text NOT NULL,
    adapter     text NOT NULL,
    seq         numeric(20,0) NOT NULL,
    n           integer NOT NULL,
    ref         text,
    code        text NOT NULL,
    msg         text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (adapter, seq, n)
);

CREATE TABLE indicator_score (
    scheme      text NOT NULL,
    period      text NOT NULL,
    unit        text NOT NULL,
    indicator   text NOT NULL,
    value       double precision,
    score       double precision NOT NULL,
    n_obs       integer NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scheme, period, unit, indicator)
);

CREATE TABLE unit_score (
    scheme      text NOT NULL,
    period      text NOT NULL,
    unit        text NOT NULL,
    total       double precision NOT NULL,
    coverage    double precision NOT NULL,
    rank        integer NOT NULL,
    grade       text NOT NULL DEFAULT '',
    vetoed      boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scheme, period, unit)
);

CREATE TABLE alert (
    id          bigserial PRIMARY KEY,
    scheme      text NOT NULL,
    rule        text NOT NULL,
    severity    text NOT NULL,
    unit        text,
    indicator   text,
    period      text,
    state       text NOT NULL,
    fired_at    timestamptz,
    resolved_at timestamptz,
    summary     text NOT NULL DEFAULT ''
);

-- The read model (PROTOCOL.md "Read model in PostgreSQL").
CREATE VIEW kp_unit_score AS
SELECT s.scheme, s.period, s.unit, u.name AS unit_name, u.grp, s.total, s.coverage, s.rank,
       s.grade, s.vetoed, s.updated_at
  FROM unit_score s
  JOIN kp_unit u ON u.scheme = s.scheme AND u.unit = s.unit;

CREATE VIEW kp_indicator_score AS
SELECT s.scheme, s.period, s.unit, s.indicator, i.name AS indicator_name, s.value, s.score,
       s.n_obs, s.updated_at
  FROM indicator_score s
  JOIN kp_indicator i ON i.scheme = s.scheme AND i.indicator = s.indicator;

CREATE VIEW kp_observation AS
SELECT scheme, src, ref, rev, unit, indicator, period, value, w, observed_at, adapter, seq,
       received_at
  FROM observation;

CREATE VIEW kp_rejection AS
SELECT scheme, src, adapter, seq, n, ref, code, msg, received_at
  FROM rejection;

CREATE VIEW kp_alert AS
SELECT id, scheme, rule, severity, unit, indicator, period, state, fired_at, resolved_at, summary
  FROM alert;
