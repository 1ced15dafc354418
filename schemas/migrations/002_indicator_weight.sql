-- kaoping schema, migration 2: the weights behind every score, so that a score can be
-- explained from the database alone (ARCHITECTURE.md guarantee 6; `kpctl explain`, issue 3).
--
-- A node's weight is per unit, not per scheme: `groups:` gives each group its own tree and
-- `weight_overrides` gives single units their own weights (SCHEMES.md). So the scorer records,
-- whenever it loads a scheme, the effective weight of every node that applies to every unit
-- (score_scheme_node_weight(s, u, n) > 0, the root and adjustment kinds excluded), and the
-- scheme order of the nodes (score_scheme node index) in kp_indicator.ord. A leaf's share of
-- the total (its full-tree weight G) is the product along its path of weight / Σ weights of
-- the siblings that apply to the unit; kpctl explain computes it from these rows.

CREATE TABLE indicator_weight (
    scheme      text NOT NULL REFERENCES kp_scheme,
    unit        text NOT NULL,
    indicator   text NOT NULL,
    weight      double precision NOT NULL CHECK (weight > 0),
    PRIMARY KEY (scheme, unit, indicator)
);

ALTER TABLE kp_indicator ADD COLUMN ord integer;

CREATE VIEW kp_indicator_weight AS
SELECT w.scheme, w.unit, w.indicator, i.name AS indicator_name, i.parent, i.ord, w.weight
  FROM indicator_weight w
  JOIN kp_indicator i ON i.scheme = w.scheme AND i.indicator = w.indicator;

-- Migration 4 grants the reader every kp_* view that exists when it runs; on a database that
-- applied it before this file, grant the new view here (the writer's rights on the new table
-- come from 4's default privileges).
DO $grant$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kaoping_reader') THEN
        GRANT SELECT ON kp_indicator_weight TO kaoping_reader;
    END IF;
END
$grant$;
