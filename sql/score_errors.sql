-- Scoring error paths: each is a clear ERROR, never a crash.
CREATE EXTENSION anomstream;

-- Bytes that are not a model.
SELECT anomstream.import_model('bad', '\x0102'::bytea);
SELECT anomstream.import_model('bad', 'binf0000'::bytea);
\set VERBOSITY terse
SELECT anomstream.import_model('bad', convert_to('{"learner": 5}', 'UTF8'));
SELECT anomstream.import_model('bad', substr(anomstream.export_model('process_default'), 1, 1000));
\set VERBOSITY default
SELECT anomstream.import_model('bad', NULL::bytea);
SELECT anomstream.import_model(NULL, anomstream.export_model('process_default'));
SELECT anomstream.import_model('', anomstream.export_model('process_default'));
SELECT anomstream.import_model('bad', anomstream.export_model('process_default'), threshold => 1.5);
SELECT anomstream.import_model('bad', anomstream.export_model('process_default'), stream => 'disk');

-- Features that do not fit the booster (shape mismatch), or the staging table.
SELECT anomstream.import_model('bad', anomstream.export_model('memory_default'), features => ARRAY['minflt', 'majflt']);
SELECT anomstream.import_model('bad', anomstream.export_model('memory_default'),
	features => ARRAY['minflt', 'majflt', 'vstext', 'vsize', 'rsize', 'vgrow', 'rgrow', 'mem', 'cmd'],
	encoding => '{}', stream => 'memory');
SELECT anomstream.import_model('bad', anomstream.export_model('memory_default'),
	features => ARRAY['minflt', 'majflt', 'vstext', 'vsize', 'rsize', 'vgrow', 'rgrow', 'mem', 'nosuch'],
	encoding => '{}', stream => 'memory');
SELECT anomstream.import_model('bad', anomstream.export_model('memory_default'),
	features => ARRAY['minflt', 'majflt', 'vstext', 'vsize', 'rsize', 'vgrow', 'rgrow', 'mem', 'cmd) FROM pg_authid --'],
	stream => 'memory');
SELECT anomstream.import_model('bad', anomstream.export_model('memory_default'),
	features => ARRAY['minflt', 'majflt', 'vstext', 'vsize', 'rsize', 'vgrow', 'rgrow', 'mem', '(SELECT 1)'],
	encoding => '{}', stream => 'memory');
SELECT anomstream.import_model('bad', anomstream.export_model('memory_default'),
	features => ARRAY['minflt', 'majflt', 'vstext', 'vsize', 'rsize', 'vgrow', 'rgrow', 'mem', 'cmd'],
	encoding => '{"cmd": {"kind": "trie"}}', stream => 'memory');
SELECT anomstream.import_model('bad', anomstream.export_model('memory_default'),
	features => ARRAY['minflt', 'majflt', 'vstext', 'vsize', 'rsize', 'vgrow', 'rgrow', 'mem', 'cmd'],
	encoding => '{"cmd": {"kind": "dictionary", "values": ["a", "a"]}}', stream => 'memory');
SELECT count(*) AS bad_versions FROM anomstream.models WHERE name = 'bad';

-- Versions are immutable; registry rules.
UPDATE anomstream.models SET threshold = 0.7 WHERE name = 'process_default';
UPDATE anomstream.models SET metrics = '{"note": "reviewed"}' WHERE name = 'process_default';
TRUNCATE anomstream.models CASCADE;
SELECT anomstream.activate('nosuch');
SELECT anomstream.activate('process_default', 2);
SELECT anomstream.export_model('nosuch');

-- Prediction errors.
SELECT anomstream.predict('nosuch', ARRAY[1.0]::float8[]);
SELECT anomstream.predict('process_default', ARRAY[1.0, 2.0]::float8[]);
SELECT anomstream.predict('process_default', ARRAY[[1.0], [2.0]]::float8[]);
SELECT anomstream.predict('process_default', ARRAY[1.0]::float8[], version => 2);
SELECT anomstream.predict('process_default', ROW(1, 2));
SELECT anomstream.predict('memory_default', x) FROM (SELECT 1.0::float8 AS minflt) x;
SELECT * FROM anomstream.predict('process_default', ARRAY['a', 'b']::text[]);
SELECT anomstream.predict(NULL, ARRAY[1.0]::float8[]);
SELECT * FROM anomstream.score_rows('disk', 'SELECT 1');
SELECT * FROM anomstream.score_rows('process', 'SELECT 1');
SELECT * FROM anomstream.score_rows('process', 'SELECT * FROM anomstream.process_events', 0);
SELECT * FROM anomstream.score_rows('memory', 'SELECT * FROM anomstream.process_events');

-- A feature expression that fails at run time aborts the batch with its own error.
SELECT anomstream.import_model('div', anomstream.export_model('memory_default'),
	features => ARRAY['minflt', 'majflt', 'vstext', 'vsize', 'rsize', 'vgrow', 'rgrow', 'mem / (mem - mem)', 'cmd'],
	stream => 'memory', activate => true) > 0 AS imported;
INSERT INTO anomstream.memory_events (sequence, machine, pid, mem, cmd, event_time, batch_id, kafka_partition, kafka_offset, row_index)
VALUES (1, 4, 1, 0.5, 'atop', now(), 1, 0, 1, 0);
SELECT * FROM anomstream.score_rows('memory', 'SELECT * FROM anomstream.memory_events');
DELETE FROM anomstream.memory_events;

-- Training errors.
SELECT anomstream.train('t', 'SELECT 1 AS a, 0 AS label', 'label', ARRAY['a']);
SELECT anomstream.train('t', 'SELECT g AS a, g % 2 AS label FROM generate_series(1, 100) g', 'label', ARRAY['a'], '{"objective": "reg:squarederror"}');
SELECT anomstream.train('t', 'SELECT g AS a, g % 3 AS label FROM generate_series(1, 100) g', 'label', ARRAY['a']);
\set VERBOSITY terse
SELECT anomstream.train('t', 'SELECT g AS a, g % 2 AS label FROM generate_series(1, 100) g', 'label', ARRAY['a'], '{"max_depth": "abc"}');
\set VERBOSITY default
SELECT anomstream.train('t', 'SELECT g AS a, g % 2 AS label FROM generate_series(1, 100) g', 'label', ARRAY['a'], '{"num_boost_round": 0}');
SELECT anomstream.train('t', 'SELECT g AS a, g % 2 AS label FROM generate_series(1, 100) g', 'label', ARRAY['a'], '{"eta": [1]}');
SELECT anomstream.train('t', 'SELECT g AS a, g % 2 AS label FROM generate_series(1, 100) g', 'label', ARRAY['a', 'b']);
SELECT anomstream.train('t', 'SELECT g AS a, g % 2 AS label FROM generate_series(1, 100) g', 'label', ARRAY['a', 'a']);
SELECT anomstream.train('t', 'SELECT g AS a, g % 2 AS label FROM generate_series(1, 100) g', 'label', ARRAY['a', NULL]);
SELECT anomstream.train('t', 'SELECT g AS a, g % 2 AS label FROM generate_series(1, 100) g', 'label', ARRAY['a'], encoding => '{"b": "onehot"}');
SELECT anomstream.train('t', 'SELECT g AS a, g % 2 AS label FROM generate_series(1, 100) g', 'label', ARRAY['a'], encoding => '{"a": "numeric"}');
SELECT anomstream.train('t', 'SELECT g::text AS a, g % 2 AS label FROM generate_series(1, 100) g', 'label', ARRAY['a']);
SELECT anomstream.train('t', 'SELECT NULL::text AS a, g % 2 AS label FROM generate_series(1, 100) g', 'label', ARRAY['a'], encoding => '{"a": "dictionary"}');
SELECT anomstream.train('t', 'SELECT g AS a, g % 2 AS label FROM generate_series(1, 100) g', 'label', ARRAY['a'], test_fraction => 1);
SELECT anomstream.train('t', 'SELECT g AS a, g % 2 AS label FROM generate_series(1, 100) g', 'label', ARRAY['a'], threshold => -1);
SELECT anomstream.train('t', 'SELECT g AS a, g % 2 AS label FROM generate_series(1, 100) g', 'label', ARRAY['a'], stream => 'process');
SELECT anomstream.train('t', 'DELETE FROM anomstream.process_events', 'label', ARRAY['a']);
SELECT anomstream.train('t', 'SELEC 1', 'label', ARRAY['a']);
SELECT anomstream.train('t', 'SELECT 1 AS a WHERE false', 'a', ARRAY['a']);
SELECT count(*) AS t_versions FROM anomstream.models WHERE name = 't';

DROP EXTENSION anomstream;
