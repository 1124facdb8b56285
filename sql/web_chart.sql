-- anomstream.attack_chart and the chart views: zero filling, the SVG's structure, errors, roles.
-- Runs in its own database, so other test files' extension state does not matter.
CREATE DATABASE web_chart;
\c web_chart
CREATE EXTENSION anomstream;
SET timezone = 'UTC';

INSERT INTO anomstream.potential_attacks VALUES
	('2024-05-01 10:00+00', '2024-05-01 10:02+00', 4, 3, 3, true),
	('2024-05-01 10:02+00', '2024-05-01 10:04+00', 4, 5, 2, true),
	('2024-05-01 10:06+00', '2024-05-01 10:08+00', 4, 1, 0, false),
	('2024-05-01 10:02+00', '2024-05-01 10:04+00', 5, 7, 7, true),
	('2024-05-01 09:00+00', '2024-05-01 09:02+00', 6, 9, 9, true);

-- Windows without a row count as zero; machines are those with a row in the range.
SELECT * FROM anomstream.attacks_between('2024-05-01 10:00+00', '2024-05-01 10:10+00');
-- A range starting inside a window includes that window; an empty range gives nothing.
SELECT window_start, machine, attacks FROM anomstream.attacks_between('2024-05-01 10:03+00', '2024-05-01 10:05+00');
SELECT count(*) FROM anomstream.attacks_between('2024-05-01 10:05+00', '2024-05-01 10:05+00');
SELECT count(*) FROM anomstream.attacks_between('2024-05-01 10:05+00', NULL);

-- The chart: well-formed, one line (path) and one legend entry per machine.
SELECT xml_is_well_formed_document(c) AS well_formed,
	   regexp_count(c, '<g class="series"') AS series,
	   regexp_count(c, '<path ') AS paths,
	   regexp_count(c, '<g class="legend-item"') AS legend_items,
	   regexp_count(c, '<circle ') AS points,
	   c ~ 'Potential attacks per machine \(2-minute windows\)' AS title
  FROM anomstream.attack_chart('10 minutes', '2024-05-01 10:10+00') c;

-- Deterministic: the same rows and arguments give the same document.
SELECT anomstream.attack_chart('10 minutes', '2024-05-01 10:10+00')
	 = anomstream.attack_chart('10 minutes', '2024-05-01 10:10+00') AS same;

-- A small chart in full (one machine, one window).
SELECT anomstream.attack_chart('1 minute', '2024-05-01 09:01+00');

-- Labels follow the session time zone; the data attributes stay in UTC.
SET timezone = 'America/New_York';
SELECT substring(c from '<text class="subtitle"[^>]*>([^<]*)<') AS subtitle,
	   substring(c from 'data-window-start="([^"]*)"') AS first_window
  FROM anomstream.attack_chart('1 minute', '2024-05-01 09:01+00') c;
SET timezone = 'UTC';

-- No rows in range: still a document, with a note.
SELECT xml_is_well_formed_document(c), c ~ 'No potential attacks in this range',
	   regexp_count(c, '<path ') AS paths
  FROM anomstream.attack_chart('10 minutes', '2020-01-01 00:00+00') c;

-- Without until: the range ends now (nothing recent here).
SELECT anomstream.attack_chart() ~ 'No potential attacks' AS empty_now;

-- Errors.
SELECT anomstream.attack_chart('-5 minutes', '2024-05-01 10:10+00');
SELECT anomstream.attack_chart('0', '2024-05-01 10:10+00');
SELECT anomstream.attack_chart('10 minutes', 'infinity');
SELECT anomstream.attack_chart('10 years', '2024-05-01 10:10+00');
SELECT count(*) FROM anomstream.attacks_between('-infinity', '2024-05-01 10:10+00');

-- Views shaped for charts and Grafana.
INSERT INTO anomstream.potential_attacks
SELECT date_bin('2 min', now(), 'epoch'), date_bin('2 min', now(), 'epoch') + interval '2 min', 7, 2, 1, false;
SELECT count(DISTINCT machine) AS machines, sum(attacks) AS attacks,
	   count(*) = count(DISTINCT window_start) AS one_machine,
	   count(*) >= 720 AS day_of_windows
  FROM anomstream.attacks_per_window;
SELECT metric, sum(value) FROM anomstream.grafana_attacks GROUP BY metric;
SELECT metric, sum(value) FROM anomstream.grafana_new_attacks GROUP BY metric;

-- Roles: anomstream_reader reads results, chart views and status, not dead_letters.
CREATE ROLE web_chart_reader IN ROLE anomstream_reader;
SET ROLE web_chart_reader;
SELECT count(*) FROM anomstream.potential_attacks;
SELECT count(*) FROM anomstream.detected_attacks;
SELECT count(*) > 0 FROM anomstream.attacks_per_window;
SELECT count(*) FROM anomstream.latest_detected_attacks;
SELECT dead_letters, late_rows FROM anomstream.reader_counts();
SELECT count(*) >= 0 FROM anomstream.grafana_status;
SELECT xml_is_well_formed_document(anomstream.attack_chart('10 minutes', '2024-05-01 10:10+00'));
SELECT count(*) FROM anomstream.dead_letters;
SELECT count(*) FROM anomstream.process_events;
INSERT INTO anomstream.potential_attacks VALUES (now(), now(), 1, 1, 1, false);
RESET ROLE;
DROP ROLE web_chart_reader;

DROP EXTENSION anomstream;
\c contrib_regression
DROP DATABASE web_chart;
