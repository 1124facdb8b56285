-- anomstream.decode(): the worker's decoder from SQL (DESIGN.md §2, §3).
CREATE EXTENSION anomstream;
SET TimeZone = 'UTC';

-- Error cases report SQLSTATE and message.
CREATE FUNCTION pg_temp.try_decode(topic text, msg text, kts timestamptz DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	RETURN (SELECT count(*) FROM anomstream.decode(topic, msg, kts)) || ' rows';
EXCEPTION WHEN others THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- ts as a number, double-encoded rows (the notebook's format): NICE = PRI - 120, CMD_PID.
SELECT row_index, error, sequence, machine, pid, poli, nice, pri, status, state, cpu, cmd, cmd_pid, event_time
FROM anomstream.decode('process', '{"ts": 1604231589, "data": ["{\"sequence\": 1, \"machine\": 4, \"PID\": 1442, \"TRUN\": 0, \"TSLPI\": 1, \"TSLPU\": 0, \"POLI\": \"norm\", \"NICE\": 20, \"PRI\": 100, \"RTPR\": 0, \"CPUNR\": 0, \"Status\": \"-\", \"EXC\": 0, \"State\": \"S\", \"CPU\": 0.01, \"CMD\": \"Xorg\"}"]}');

-- ts as a numeric string and as ISO-8601 (UTC without offset, offsets honoured), plain rows.
SET TimeZone = 'America/New_York';	-- must not matter
SELECT event_time AT TIME ZONE 'UTC' AS utc, cmd_pid
FROM anomstream.decode('memory', '{"ts": "1604231589.5", "data": [{"pid": 7, "cmd": "a"}]}')
UNION ALL
SELECT event_time AT TIME ZONE 'UTC', cmd_pid
FROM anomstream.decode('memory', '{"data": [{"PID": 8, "CMD": "b"}], "ts": "2020-11-01T11:53:09"}')
UNION ALL
SELECT event_time AT TIME ZONE 'UTC', cmd_pid
FROM anomstream.decode('memory', '{"ts": "2020-11-01T13:53:09.1234567+02:00", "data": [{"PID": 9, "CMD": "c"}]}')
UNION ALL
SELECT event_time AT TIME ZONE 'UTC', cmd_pid
FROM anomstream.decode('memory', '{"ts": 1604231589.0000004, "data": [{"PID": 10, "CMD": "d"}]}');
SET TimeZone = 'UTC';

-- Memory unit columns go through reformat; other numbers accept float8 strings.
SELECT minflt, majflt, vstext, vsize, rsize, vgrow, rgrow, mem
FROM anomstream.decode('memory', '{"ts": 1, "data": ["{\"MINFLT\": \"132K\", \"MAJFLT\": \"224.2M\", \"VSTEXT\": \"9392 K\", \"VSIZE\": \" 1.5e3 \", \"RSIZE\": 12, \"VGROW\": \"-3M\", \"RGROW\": \"0K\", \"MEM\": \"0.5\"}"]}');

-- Missing keys give NULL; unknown keys are ignored; key case does not matter; a number
-- given for a text column keeps its text; integral floats fit int4 columns.
SELECT sequence, machine, pid, poli, status, state, cmd, cmd_pid, trun
FROM anomstream.decode('process', '{"ts": 1, "data": [{"SeQuEnCe": 3.0, "machine": "5", "pid": 11, "Status": 0, "POLI": 0, "extra": {"nested": [1, {"x": 2}]}, "unknown": null}]}');

-- Invalid rows are reported per row; the message's other rows are kept.
SELECT row_index, error, pid, cmd
FROM anomstream.decode('process', '{"ts": 1, "data": [
	{"pid": 1, "cmd": "ok"},
	{"pid": 1.5},
	{"pid": "x12"},
	{"pid": 3000000000},
	{"pid": 1, "PID": 2},
	{"pid": 1, "pid": 1},
	{"cpu": "abc"},
	{"cpu": true},
	{"cmd": ["array"]},
	"{not json}",
	"{\"pid\": 1} trailing",
	"[1, 2]",
	42,
	null,
	{"cmd": "nul\u0000inside"},
	{"cmd": "snowman \u2603 and \ud83d\ude00"},
	{"pid": 2, "cmd": "fine"}
]}');
SELECT row_index, error
FROM anomstream.decode('memory', '{"ts": 1, "data": [{"minflt": "12Q"}, {"rgrow": "1e5"}, {"vsize": "1e999"}, {"mem": 1e999}, {"vsize": "NaN"}]}');

-- Empty data is a valid message with no rows.
SELECT count(*) FROM anomstream.decode('process', '{"ts": 1, "data": []}');

-- Whole-message errors: what the worker puts in dead_letters as one message.
SELECT m, pg_temp.try_decode('process', m)
FROM (VALUES ('{"ts": 1, "data": ['), ('not json'), ('[1, 2]'), ('{"data": []}'), ('{"ts": 1}'),
			 ('{"ts": 1, "data": {"a": 1}}'), ('{"ts": 1, "data": null}'),
			 ('{"ts": 1, "ts": 2, "data": []}'), ('{"ts": "soon", "data": []}'),
			 ('{"ts": "NaN", "data": []}'), ('{"ts": 1e300, "data": []}'),
			 ('{"ts": null, "data": []}'), ('{"ts": "2020-02-30T00:00:00", "data": []}'),
			 ('{"ts": 1, "data": []} extra'), (''), ('{"ts": 1, "data": ["\x"]}')) t(m);
-- ts more than anomstream.max_future after the Kafka timestamp
SELECT pg_temp.try_decode('process', '{"ts": 1604240000, "data": []}', to_timestamp(1604231589)),
	   pg_temp.try_decode('process', '{"ts": 1604235000, "data": []}', to_timestamp(1604231589));
-- unknown topic
SELECT pg_temp.try_decode('cpu', '{"ts": 1, "data": []}');

DROP EXTENSION anomstream;
