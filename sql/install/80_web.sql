-- Live chart and dashboards (DESIGN.md §8 "Live chart", §10 roles): the SVG chart, views
-- shaped for charts and Grafana, and the few figures anomstream-web and dashboards need.
-- Everything here only reads; anomstream_reader may use all of it (but never reads staging or
-- dead_letters directly: reader_counts() gives it a count, not the raw values).

-- Serves the "latest detected attacks" table (newest first) and the per-window pair counts.
CREATE INDEX detected_attacks_p_event_time ON anomstream.detected_attacks (p_event_time);

-- Zero-filled potential attacks per machine and window for the windows overlapping
-- [from_time, to_time). Machines are those with a row in that range; a window in which a
-- machine has no row gives attacks = new_attacks = 0 and closed = NULL. The window width is that
-- of the newest row starting before to_time (else the anomstream.window setting, else 2 min).
CREATE FUNCTION anomstream.attacks_between(from_time timestamptz, to_time timestamptz)
	RETURNS TABLE (window_start timestamptz, window_end timestamptz, machine int,
				   attacks bigint, new_attacks bigint, closed bool)
	LANGUAGE plpgsql STABLE STRICT
	SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	w			interval;
	origin		CONSTANT timestamptz := '1970-01-01 00:00:00+00';
	nwindows	float8;
BEGIN
	IF NOT isfinite(from_time) OR NOT isfinite(to_time) THEN
		RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
			MESSAGE = 'chart range must be finite',
			HINT = 'Pass two finite timestamps.';
	END IF;
	IF to_time <= from_time THEN
		RETURN;
	END IF;

	SELECT pa.window_end - pa.window_start INTO w
	  FROM anomstream.potential_attacks pa
	 WHERE pa.window_start < to_time
	 ORDER BY pa.window_start DESC
	 LIMIT 1;
	IF w IS NULL OR w <= interval '0' THEN
		w := coalesce(nullif(current_setting('anomstream.window', true), ''), '2min')::interval;
	END IF;

	nwindows := extract(epoch FROM to_time - from_time)
				/ extract(epoch FROM w);
	IF nwindows > 100000 THEN
		RAISE EXCEPTION USING ERRCODE = 'program_limit_exceeded',
			MESSAGE = format('chart range holds %s windows, more than 100000', ceil(nwindows)),
			DETAIL = format('The range is %s long and windows are %s wide.',
							to_time - from_time, w),
			HINT = 'Choose a shorter range.';
	END IF;

	RETURN QUERY
	WITH r AS (
		SELECT pa.window_start, pa.window_end, pa.machine, pa.attacks, pa.new_attacks, pa.closed
		  FROM anomstream.potential_attacks pa
		 WHERE pa.window_start >= from_time - w
		   AND pa.window_start < to_time
		   AND pa.window_end > from_time
	), grid AS (
		SELECT g AS ws
		  FROM generate_series(date_bin(w, from_time, origin), to_time, w) g
		 WHERE g < to_time
		UNION
		SELECT r.window_start FROM r
	), m AS (
		SELECT DISTINCT r.machine FROM r
	)
	SELECT grid.ws, coalesce(r.window_end, grid.ws + w), m.machine,
		   coalesce(r.attacks, 0)::bigint, coalesce(r.new_attacks, 0)::bigint, r.closed
	  FROM grid CROSS JOIN m
	  LEFT JOIN r ON r.window_start = grid.ws
				 AND r.machine = m.machine
	 ORDER BY m.machine, grid.ws;
END
$fn$;
COMMENT ON FUNCTION anomstream.attacks_between(timestamptz, timestamptz) IS
	'Potential attacks per machine and window for the windows overlapping [from_time, to_time), zero-filled: a window without a row for a machine gives 0 (closed NULL). Machines are those with a row in the range.';

CREATE VIEW anomstream.attacks_per_window AS
SELECT window_start, window_end, machine, attacks, new_attacks, closed
  FROM anomstream.attacks_between((pg_catalog.now() OPERATOR(pg_catalog.-) interval '24 hours'),
								  pg_catalog.now());
COMMENT ON VIEW anomstream.attacks_per_window IS
	'Potential attacks per machine and window over the last 24 hours, zero-filled (see anomstream.attacks_between for other ranges).';

-- The live chart: an SVG document, one line per machine.
CREATE FUNCTION anomstream.attack_chart(since interval DEFAULT '10 minutes')
	RETURNS text
	AS 'MODULE_PATHNAME', 'anomstream_attack_chart'
	LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION anomstream.attack_chart(interval) IS
	'SVG line chart of potential attacks per machine and window over the windows overlapping the last since (default 10 minutes); windows without a row count as zero.';

CREATE FUNCTION anomstream.attack_chart(since interval, until timestamptz)
	RETURNS text
	AS 'MODULE_PATHNAME', 'anomstream_attack_chart'
	LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION anomstream.attack_chart(interval, timestamptz) IS
	'SVG line chart of potential attacks per machine and window over the windows overlapping [until - since, until); windows without a row count as zero.';

-- The newest detected attack pairs, newest process event first.
CREATE VIEW anomstream.latest_detected_attacks AS
SELECT d.p_event_time AS event_time,
	   d.p_machine AS machine,
	   d.p_cmd_pid AS cmd_pid,
	   d.p_cmd AS cmd,
	   d.m_event_time,
	   d.p_probability,
	   d.m_probability,
	   d.cpu,
	   d.mem,
	   d.processing_time
  FROM anomstream.detected_attacks d
 ORDER BY d.p_event_time DESC, d.p_kafka_partition, d.p_kafka_offset, d.p_row_index,
		  d.m_kafka_partition, d.m_kafka_offset, d.m_row_index
 LIMIT 100;
COMMENT ON VIEW anomstream.latest_detected_attacks IS
	'The 100 newest detected attack pairs (by process event time), newest first.';

-- Views in the shape of Grafana's PostgreSQL data source (time, metric, value).
CREATE VIEW anomstream.grafana_attacks AS
SELECT window_start AS "time", 'machine ' OPERATOR(pg_catalog.||) machine AS metric,
	   attacks AS value
  FROM anomstream.attacks_per_window;
COMMENT ON VIEW anomstream.grafana_attacks IS
	'Grafana time series (time, metric, value): potential attacks per machine and window, last 24 hours, zero-filled.';

CREATE VIEW anomstream.grafana_new_attacks AS
SELECT window_start AS "time", 'machine ' OPERATOR(pg_catalog.||) machine AS metric,
	   new_attacks AS value
  FROM anomstream.attacks_per_window;
COMMENT ON VIEW anomstream.grafana_new_attacks IS
	'Grafana time series (time, metric, value): new attacks per machine and window, last 24 hours, zero-filled.';

CREATE VIEW anomstream.grafana_detected_attacks AS
SELECT pg_catalog.date_bin(coalesce(nullif(pg_catalog.current_setting('anomstream.window', true), ''), '2min')::interval,
				d.p_event_time, '1970-01-01 00:00:00+00') AS "time",
	   'machine ' OPERATOR(pg_catalog.||) d.p_machine AS metric,
	   pg_catalog.count(*) AS value
  FROM anomstream.detected_attacks d
 WHERE d.p_event_time OPERATOR(pg_catalog.>=) (pg_catalog.now() OPERATOR(pg_catalog.-) interval '24 hours')
 GROUP BY 1, 2;
COMMENT ON VIEW anomstream.grafana_detected_attacks IS
	'Grafana time series (time, metric, value): detected attack pairs per machine and window of the process event time, last 24 hours (windows without pairs have no row).';

-- Counts of tables anomstream_reader may not read row by row.
CREATE FUNCTION anomstream.reader_counts(OUT dead_letters bigint, OUT late_rows bigint)
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
	SELECT count(*) INTO dead_letters FROM anomstream.dead_letters;
	-- late_rows arrives with the pipeline; until then there are none to count.
	IF to_regclass('anomstream.late_rows') IS NOT NULL THEN
		EXECUTE 'SELECT count(*) FROM anomstream.late_rows' INTO late_rows;
	END IF;
END
$fn$;
COMMENT ON FUNCTION anomstream.reader_counts() IS
	'Row counts of anomstream.dead_letters and anomstream.late_rows (NULL while that table does not exist), for monitoring roles that may not read the rows.';
REVOKE ALL ON FUNCTION anomstream.reader_counts() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION anomstream.reader_counts() TO anomstream_reader, anomstream_admin;

-- Current figures in Grafana's (time, metric, value) shape; needs the preloaded library (it
-- reads anomstream.status).
CREATE VIEW anomstream.grafana_status AS
SELECT pg_catalog.now() AS "time", s.topic OPERATOR(pg_catalog.||) '/' OPERATOR(pg_catalog.||) s.kafka_partition OPERATOR(pg_catalog.||) ' lag' AS metric,
	   s.lag::pg_catalog.float8 AS value
  FROM anomstream.status s WHERE s.kafka_partition IS NOT NULL
UNION ALL
SELECT pg_catalog.now(), s.topic OPERATOR(pg_catalog.||) '/' OPERATOR(pg_catalog.||) s.kafka_partition OPERATOR(pg_catalog.||) ' rows', s.rows::pg_catalog.float8
  FROM anomstream.status s WHERE s.kafka_partition IS NOT NULL
UNION ALL
SELECT pg_catalog.now(), 'dead letters', c.dead_letters::pg_catalog.float8 FROM anomstream.reader_counts() c
UNION ALL
SELECT pg_catalog.now(), 'late rows', c.late_rows::pg_catalog.float8 FROM anomstream.reader_counts() c;
COMMENT ON VIEW anomstream.grafana_status IS
	'Grafana (time, metric, value): current lag and rows ingested per topic/partition, dead letters and late rows; needs anomstream in shared_preload_libraries.';

GRANT SELECT ON anomstream.attacks_per_window, anomstream.latest_detected_attacks,
	anomstream.grafana_attacks, anomstream.grafana_new_attacks,
	anomstream.grafana_detected_attacks, anomstream.grafana_status
	TO anomstream_reader, anomstream_admin;
