-- anomstream.train: in-database XGBoost training, held-out metrics, stored versions.
CREATE EXTENSION anomstream;

-- A labelled synthetic set in SQL, shaped like process staging rows. Values come from
-- hashint4 of the row number; the labelling rule (the same idea as anomstream-generate's) is:
-- attack iff cmd is an attack tool (nmap, hydra) or (state = 'R' and cpu >= 0.9 and tslpi >= 8).
CREATE TABLE prows AS
SELECT g AS sequence, 4 + g % 5 AS machine, 1000 + g AS pid,
	((hashint4(g) & 2147483647) % 3)::float8 AS trun,
	((hashint4(g + 100000) & 2147483647) % 20)::float8 AS tslpi,
	0::float8 AS tslpu,
	(ARRAY['norm', '0'])[1 + (hashint4(g + 200000) & 2147483647) % 2] AS poli,
	0::float8 AS nice, 120::float8 AS pri, 0::float8 AS rtpr,
	((hashint4(g + 300000) & 2147483647) % 4)::float8 AS cpunr,
	(ARRAY['0', '-', 'N'])[1 + (hashint4(g + 400000) & 2147483647) % 3] AS status,
	0::float8 AS exc,
	(ARRAY['S', 'R', 'E'])[1 + (hashint4(g + 500000) & 2147483647) % 3] AS state,
	((hashint4(g + 600000) & 2147483647) % 100) / 100.0::float8 AS cpu,
	(ARRAY['atop', 'apache2', 'sshd', 'bash', 'nmap', 'hydra', 'mysqld', 'cron', 'cron', 'atop'])
		[1 + (hashint4(g + 700000) & 2147483647) % 10] AS cmd
FROM generate_series(1, 3000) g;
ALTER TABLE prows ADD COLUMN attack int;
UPDATE prows SET attack = (cmd IN ('nmap', 'hydra') OR (state = 'R' AND cpu >= 0.9 AND tslpi >= 8))::int;
SELECT attack, count(*) FROM prows GROUP BY attack ORDER BY attack;

-- Dictionary and one-hot encodings; a feature may be an expression over the row.
SELECT version > 0 AS trained,
	   metrics->'rows' AS rows,
	   metrics->'confusion_matrix' AS confusion,
	   (metrics->>'auc')::float8 > 0.95 AS good_auc,
	   (metrics->>'accuracy')::float8 > 0.95 AS good_accuracy
FROM anomstream.train('proc', 'SELECT * FROM prows ORDER BY sequence', 'attack',
	ARRAY['tslpi', 'cpu', 'cpu * 100', 'state', 'status', 'cmd'],
	'{"num_boost_round": 20, "max_depth": 4}', 'process',
	'{"state": "onehot", "status": "onehot", "cmd": "dictionary"}');

-- The metrics are consistent: confusion matrix cells add up to the test rows, the rates
-- follow from the cells.
SELECT (c->>'tp')::int + (c->>'fp')::int + (c->>'tn')::int + (c->>'fn')::int = (m->'rows'->>'test')::int AS cells_add_up,
	   (m->'rows'->>'train')::int + (m->'rows'->>'test')::int AS labelled_rows,
	   abs((m->>'accuracy')::float8 - ((c->>'tp')::int + (c->>'tn')::int)::float8 / (m->'rows'->>'test')::int) < 1e-5 AS accuracy_ok,
	   abs((m->>'recall')::float8 - (c->>'tp')::float8 / ((c->>'tp')::int + (c->>'fn')::int)) < 1e-5 AS recall_ok,
	   m ? 'precision' AND m ? 'f1' AND m ? 'auc' AND m ? 'seconds' AS has_all
FROM (SELECT metrics AS m, metrics->'confusion_matrix' AS c FROM anomstream.models WHERE name = 'proc') s;

-- The stored row: features in order, learned encodings (most frequent value first), width.
SELECT name, stream, format, origin, features, num_features, threshold, params
FROM anomstream.models WHERE name = 'proc';
SELECT key, value->>'kind' AS kind, value->'values' AS "values"
FROM anomstream.models, jsonb_each(encoding) WHERE name = 'proc' ORDER BY key;

-- Training is deterministic: the same call gives the same bytes.
SELECT (anomstream.train('proc_again', 'SELECT * FROM prows ORDER BY sequence', 'attack',
	ARRAY['tslpi', 'cpu', 'cpu * 100', 'state', 'status', 'cmd'],
	'{"num_boost_round": 20, "max_depth": 4}', 'process',
	'{"state": "onehot", "status": "onehot", "cmd": "dictionary"}')).version IS NOT NULL AS trained;
SELECT a.booster = b.booster AS same_bytes
FROM anomstream.models a, anomstream.models b WHERE a.name = 'proc' AND b.name = 'proc_again';

-- The model predicts its training rule on fresh rows of the same shape.
SELECT count(*) FILTER (WHERE (anomstream.predict('proc', p)).prediction = p.attack)::float8 / count(*) > 0.95 AS agrees
FROM prows p;

-- A boolean label works; rows with a NULL label are skipped and counted; class weighting.
SELECT metrics->'rows'->'skipped_null_label' AS skipped,
	   (metrics->>'scale_pos_weight')::float8 > 1 AS weighted
FROM anomstream.train('proc_bool',
	'SELECT *, CASE WHEN sequence % 10 = 0 THEN NULL ELSE attack = 1 END AS is_attack FROM prows',
	'is_attack', ARRAY['tslpi', 'cpu', 'state', 'cmd'],
	'{"num_boost_round": 5, "scale_pos_weight": "auto"}', NULL,
	'{"state": "onehot", "cmd": "dictionary"}', 0.25);

-- A later version of a name does not replace the earlier one; the newest is predict's default.
SELECT (anomstream.train('proc', 'SELECT * FROM prows', 'attack', ARRAY['tslpi', 'cpu'],
	'{"num_boost_round": 3}', 'process', '{}', 0)).metrics->'auc' AS auc_without_test_rows;
SELECT count(*) AS versions, count(DISTINCT num_features) AS widths FROM anomstream.models WHERE name = 'proc';
SELECT (anomstream.predict('proc', p)).model_version = (SELECT max(version) FROM anomstream.models WHERE name = 'proc') AS newest
FROM prows p LIMIT 1;

-- Training can be cancelled between rounds; nothing is stored.
SET statement_timeout = '200ms';
SELECT anomstream.train('slow', 'SELECT * FROM prows', 'attack', ARRAY['tslpi', 'cpu', 'cpunr', 'trun'],
	'{"num_boost_round": 100000, "max_depth": 10}');
RESET statement_timeout;
SELECT count(*) AS slow_versions FROM anomstream.models WHERE name = 'slow';

-- Threads follow anomstream.xgboost_threads.
SET anomstream.xgboost_threads = 2;
SELECT (anomstream.train('two_threads', 'SELECT * FROM prows ORDER BY sequence', 'attack',
	ARRAY['tslpi', 'cpu', 'cpu * 100', 'state', 'status', 'cmd'],
	'{"num_boost_round": 20, "max_depth": 4}', 'process',
	'{"state": "onehot", "status": "onehot", "cmd": "dictionary"}')).version IS NOT NULL AS trained;
RESET anomstream.xgboost_threads;
SELECT count(*) FILTER (WHERE (anomstream.predict('two_threads', p)).prediction = (anomstream.predict('proc_again', p)).prediction) AS same_predictions
FROM prows p;

DROP TABLE prows;
DROP EXTENSION anomstream;
