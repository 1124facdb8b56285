-- anomstream.import_model / export_model / convert_model: bytes in and out, files, privileges.
CREATE EXTENSION anomstream;

-- export returns the stored bytes; importing them gives an identical new version, with the
-- features, encoding, threshold and stream the booster carries (anomstream.train stores them).
SELECT anomstream.import_model('copy', anomstream.export_model('process_default')) > 2 AS imported;
SELECT c.booster = d.booster AS same_bytes, c.features = d.features AS same_features,
	   c.encoding = d.encoding AS same_encoding, c.stream, c.threshold, c.origin,
	   c.metrics = d.metrics AS same_metrics
FROM anomstream.models c, anomstream.models d WHERE c.name = 'copy' AND d.name = 'process_default';
SELECT substr(anomstream.export_model('copy'), 1, 10) = substr(convert_to('{"learner"', 'UTF8'), 1, 10) AS json;

-- Arguments override what the booster carries.
SELECT anomstream.import_model('copy', anomstream.export_model('process_default'),
	threshold => 0.9, metrics => '{"note": "hand-tuned"}') > 0 AS imported;
SELECT threshold, metrics FROM anomstream.models WHERE name = 'copy' ORDER BY version DESC LIMIT 1;
SELECT count(*) AS copy_versions FROM anomstream.models WHERE name = 'copy';

-- UBJSON in and out: same predictions.
SELECT anomstream.import_model('ubj', anomstream.export_model('process_default', format => 'ubj')) > 0 AS imported;
SELECT format, substr(booster, 1, 2) AS head FROM anomstream.models WHERE name = 'ubj';
SELECT anomstream.convert_model(anomstream.export_model('ubj'), 'json') = anomstream.export_model('process_default') AS round_trip;
INSERT INTO anomstream.process_events (sequence, machine, pid, trun, tslpi, tslpu, poli, nice,
	pri, rtpr, cpunr, status, exc, state, cpu, cmd, cmd_pid, event_time, batch_id,
	kafka_partition, kafka_offset, row_index)
SELECT g, 4 + g % 5, 1000 + g, g % 3, g % 20, 0, CASE WHEN g % 2 = 0 THEN 'norm' ELSE '0' END,
	0, 120, 0, g % 4, '0', 0, CASE WHEN g % 3 = 0 THEN 'R' ELSE 'S' END, (g % 100) / 100.0,
	(ARRAY['atop', 'nmap', 'apache2', 'hydra'])[1 + g % 4], NULL, now(), 1, 0, g, 0
FROM generate_series(1, 200) g;
SELECT count(*) AS rows,
	   count(*) FILTER (WHERE (anomstream.predict('ubj', e)).probability = (anomstream.predict('process_default', e)).probability) AS same
FROM anomstream.process_events e;
DELETE FROM anomstream.process_events;

-- From a server file (here: the installed default model).
SELECT setting || '/extension/anomstream_memory_default.json' AS path FROM pg_config WHERE name = 'SHAREDIR' \gset
SELECT anomstream.import_model('from_file', :'path') > 0 AS imported;
SELECT f.booster = d.booster AS same_bytes, f.stream, f.origin
FROM anomstream.models f, anomstream.models d WHERE f.name = 'from_file' AND d.name = 'memory_default';
SELECT anomstream.import_model('x', 'models/relative.json');
SELECT anomstream.import_model('x', '/nonexistent/model.json');
SELECT anomstream.convert_model(anomstream.export_model('copy'), 'xml');

-- Privileges: reading a server file needs pg_read_server_files; the registry needs anomstream_admin.
CREATE ROLE regress_score_user;
SET ROLE regress_score_user;
\set VERBOSITY terse
SELECT anomstream.import_model('x', :'path');
SELECT anomstream.import_model('x', '\x00'::bytea);
\set VERBOSITY default
RESET ROLE;
GRANT anomstream_admin TO regress_score_user;
SET ROLE regress_score_user;
SELECT anomstream.import_model('x', :'path');
SELECT anomstream.import_model('by_user', anomstream.export_model('memory_default')) > 0 AS imported;
SELECT created_by FROM anomstream.models WHERE name = 'by_user';
RESET ROLE;
GRANT pg_read_server_files TO regress_score_user;
SET ROLE regress_score_user;
SELECT anomstream.import_model('by_user_file', :'path') > 0 AS imported;
RESET ROLE;
DROP EXTENSION anomstream;
DROP ROLE regress_score_user;
