-- anomstream.predict, encode_features, score_rows (the pipeline's scoring path), activation.
CREATE EXTENSION anomstream;

-- The demo models are installed and score both streams by default.
SELECT version, name, stream, origin, num_features, threshold FROM anomstream.models ORDER BY version;
SELECT stream, version, name, source FROM anomstream.active_model ORDER BY stream;

-- Staging rows to score: a few process rows, one attack tool and one ordinary process.
INSERT INTO anomstream.process_events (sequence, machine, pid, trun, tslpi, tslpu, poli, nice,
	pri, rtpr, cpunr, status, exc, state, cpu, cmd, cmd_pid, event_time, batch_id,
	kafka_partition, kafka_offset, row_index)
VALUES (1, 4, 1181, 0, 1, 0, 'norm', -20, 100, 0, 1, '0', 0, 'S', 0.09, 'atop', 'atop_1181', now(), 1, 0, 1, 0),
	   (2, 4, 15001, 1, 9, 0, 'norm', 0, 120, 0, 2, '0', 0, 'R', 0.97, 'nmap', 'nmap_15001', now(), 1, 0, 1, 1),
	   (3, 5, 2178, 1, 0, 0, 'norm', 0, 120, 0, 3, '-', 0, 'R', 0.05, 'Xorg', 'Xorg_2178', now(), 1, 0, 2, 0),
	   (4, 5, 30000, 1, 20, 0, 'norm', 0, 120, 0, 0, 'N', 0, 'R', 0.95, 'apache2', 'apache2_30000', now(), 1, 0, 2, 1),
	   (5, 6, 9, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, now(), 1, 0, 3, 0);

-- One row at a time (the encoded vector is what XGBoost receives; NULL = missing).
SELECT e.sequence, e.cmd, p.prediction, round(p.probability::numeric, 4) AS probability, p.model_version
FROM anomstream.process_events e, LATERAL anomstream.predict('process_default', e) p
ORDER BY e.sequence;
SELECT sequence, anomstream.encode_features('process_default', e) FROM anomstream.process_events e ORDER BY sequence;

-- An already encoded vector gives the same answer.
SELECT e.sequence,
	   (anomstream.predict('process_default', anomstream.encode_features('process_default', e)::float8[])).probability
	   = (anomstream.predict('process_default', e)).probability AS same
FROM anomstream.process_events e ORDER BY e.sequence;

-- Many rows in one call, in order; NULL elements give NULL.
SELECT n, prediction, round(probability::numeric, 4) AS probability
FROM anomstream.predict('process_default',
	ARRAY(SELECT e FROM anomstream.process_events e ORDER BY sequence) || NULL::anomstream.process_events)
	WITH ORDINALITY AS t(probability, prediction, model_version, n);

-- The pipeline's path (anomstream_score_slots) gives exactly what predict gives.
SELECT s.ord, s.prediction = (p).prediction AND s.probability = (p).probability
	   AND s.model_version = (p).model_version AS same
FROM anomstream.score_rows('process', 'SELECT * FROM anomstream.process_events ORDER BY sequence', 2) s
JOIN (SELECT row_number() OVER (ORDER BY sequence) AS ord, anomstream.predict('process_default', e) AS p
	  FROM anomstream.process_events e) q ON q.ord = s.ord
ORDER BY s.ord;

-- prediction = (probability >= threshold): a version whose threshold is exactly one row's
-- probability predicts 1 for that row.
SELECT anomstream.import_model('at_threshold', anomstream.export_model('process_default'),
	stream => 'process',
	threshold => (SELECT (anomstream.predict('process_default', e)).probability
				  FROM anomstream.process_events e WHERE sequence = 3)) > 0 AS imported;
SELECT e.sequence, p.prediction, p.probability = m.threshold AS at_threshold
FROM anomstream.process_events e, LATERAL anomstream.predict('at_threshold', e) p,
	 anomstream.models m WHERE m.name = 'at_threshold' AND e.sequence IN (1, 3)
ORDER BY e.sequence;

-- Activation: the pipeline path follows the active version, in the same transaction too.
SELECT anomstream.activate('at_threshold') = (SELECT version FROM anomstream.models WHERE name = 'at_threshold') AS activated;
SELECT stream, name, source FROM anomstream.active_model ORDER BY stream;
SELECT DISTINCT s.model_version = (SELECT version FROM anomstream.models WHERE name = 'at_threshold') AS uses_new
FROM anomstream.score_rows('process', 'SELECT * FROM anomstream.process_events') s;
BEGIN;
SELECT anomstream.deactivate('process');
SELECT count(*) AS rows, count(prediction) AS scored, count(model_version) AS with_version
FROM anomstream.score_rows('process', 'SELECT * FROM anomstream.process_events');
ROLLBACK;
SELECT DISTINCT s.model_version = (SELECT version FROM anomstream.models WHERE name = 'at_threshold') AS active_again
FROM anomstream.score_rows('process', 'SELECT * FROM anomstream.process_events') s;
DELETE FROM anomstream.active_models WHERE stream = 'process';
SELECT stream, name, source FROM anomstream.active_model ORDER BY stream;

-- A version that staged rows refer to cannot be deleted; others can.
UPDATE anomstream.process_events SET model_version = (SELECT version FROM anomstream.models WHERE name = 'at_threshold');
DELETE FROM anomstream.models WHERE name = 'at_threshold';
DELETE FROM anomstream.process_events;
DELETE FROM anomstream.models WHERE name = 'at_threshold';
SELECT count(*) AS left_over FROM anomstream.models WHERE name = 'at_threshold';

-- An activated version must belong to the stream; a model without a stream cannot be activated.
SELECT anomstream.activate('memory_default') IS NOT NULL AS memory_ok;
INSERT INTO anomstream.active_models (stream, version)
	SELECT 'process', version FROM anomstream.models WHERE name = 'memory_default';
SELECT anomstream.deactivate('disk');

-- Memory rows score with the memory model.
INSERT INTO anomstream.memory_events (sequence, machine, pid, minflt, majflt, vstext, vsize, rsize,
	vgrow, rgrow, mem, cmd, cmd_pid, event_time, batch_id, kafka_partition, kafka_offset, row_index)
VALUES (1, 4, 1181, 0, 0, 148, 18172, 4460, 2500, 0, 0, 'atop', 'atop_1181', now(), 1, 0, 1, 0),
	   (2, 4, 15349, 60000, 0, 2745, 11748, 28222, 150000, 90000, 0.03, 'apache2', 'apache2_15349', now(), 1, 0, 1, 1);
SELECT ord, prediction FROM anomstream.score_rows('memory', 'SELECT * FROM anomstream.memory_events ORDER BY sequence');
DELETE FROM anomstream.memory_events;

DROP EXTENSION anomstream;
