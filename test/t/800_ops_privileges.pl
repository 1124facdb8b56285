# Roles and privileges (DESIGN.md §10), look-alike objects in a hostile search_path, and
# retention of results, dead letters and late rows (§6), with anomstream.table_status.
use strict;
use warnings;

use AnomstreamTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# No broker: the worker stays idle; everything here is SQL.
my $node = new_node('ops_priv', '', "anomstream.kafka_options = 'sasl.password=s3cret'\n");
$node->safe_psql('postgres', q{
	CREATE ROLE dash LOGIN IN ROLE anomstream_reader;
	CREATE ROLE operator LOGIN IN ROLE anomstream_admin;
	CREATE ROLE nobody LOGIN;
	INSERT INTO anomstream.potential_attacks VALUES
		('2020-11-01 12:00+00', '2020-11-01 12:02+00', 4, 3, 2, true);
	INSERT INTO anomstream.dead_letters (topic, value, error) VALUES ('process', 'secret', 'x');
	INSERT INTO anomstream.positions (topic, kafka_partition, durable_offset, staging_low)
		VALUES ('process', 0, 10, 0);
});

sub as
{
	my ($role, $sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $sql, extra_params => [ '-U', $role ]);
	return ($rc, $out, $err);
}

# The reader: results, chart, status and table_status yes; raw input, positions, boosters,
# broker secrets and control functions no.
for my $sql (
	'SELECT count(*) FROM anomstream.potential_attacks',
	'SELECT count(*) FROM anomstream.detected_attacks',
	'SELECT count(*) FROM anomstream.status',
	'SELECT count(*) FROM anomstream.table_status',
	'SELECT count(*) FROM anomstream.attacks_per_window',
	'SELECT count(*) FROM anomstream.latest_detected_attacks',
	'SELECT count(*) FROM anomstream.grafana_status',
	'SELECT count(*) FROM anomstream.active_model',
	'SELECT length(anomstream.attack_chart(\'1 hour\')) > 0',
	'SELECT dead_letters FROM anomstream.reader_counts()',
	'SELECT name, threshold FROM anomstream.models')
{
	my ($rc, $out, $err) = as('dash', $sql);
	is($rc, 0, "reader may: $sql") or diag $err;
}
for my $sql (
	'SELECT * FROM anomstream.process_events',
	'SELECT * FROM anomstream.memory_events',
	'SELECT * FROM anomstream.dead_letters',
	'SELECT * FROM anomstream.positions',
	'SELECT * FROM anomstream.batch_ranges',
	'SELECT * FROM anomstream.staged_positions',
	'SELECT booster FROM anomstream.models',
	'SELECT anomstream.export_model(\'process_default\')',
	'SHOW anomstream.kafka_options',
	'SELECT anomstream.pause()',
	'SELECT anomstream.resume()',
	'SELECT anomstream.claim()',
	'SELECT * FROM anomstream.apply_retention()',
	'DELETE FROM anomstream.potential_attacks')
{
	my ($rc, $out, $err) = as('dash', $sql);
	isnt($rc, 0, "reader may not: $sql");
	like($err, qr/permission denied|must be superuser/, "  ... refused for lack of privilege");
}
is((as('dash', "SELECT count(*) FROM pg_settings WHERE name = 'anomstream.kafka_options'"))[1],
	'0', 'reader does not see the broker options in pg_settings');

# A role with no anomstream role: nothing at all, not even status.
for my $sql ('SELECT * FROM anomstream.potential_attacks', 'SELECT * FROM anomstream.status',
	'SELECT * FROM anomstream.worker_status()', 'SELECT anomstream.pause()')
{
	isnt((as('nobody', $sql))[0], 0, "PUBLIC may not: $sql");
}

# The admin runs control functions without privileges on the tables they write.
for my $sql ('SELECT anomstream.pause()', 'SELECT anomstream.resume()',
	'SELECT anomstream.claim() > 0', 'SELECT count(*) FROM anomstream.apply_retention()')
{
	my ($rc, $out, $err) = as('operator', $sql);
	is($rc, 0, "admin may: $sql") or diag $err;
}
is($node->safe_psql('postgres', 'SELECT claimed_by || \' \' || paused_by FROM anomstream.control'),
	'operator operator', 'control functions record the calling role, not the definer');

# Hostile search_path: look-alike functions, operators and casts in a schema searched first.
$node->safe_psql('postgres', q{
	CREATE SCHEMA evil;
	CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql AS $$SELECT '1999-01-01'::timestamptz$$;
	CREATE FUNCTION evil.current_setting(text, bool) RETURNS text LANGUAGE sql AS $$SELECT '1 year'$$;
	CREATE FUNCTION evil.date_bin(interval, timestamptz, timestamptz) RETURNS timestamptz
		LANGUAGE sql AS $$SELECT '1999-01-01'::timestamptz$$;
	CREATE FUNCTION evil.max(int) RETURNS int LANGUAGE sql AS $$SELECT 0$$;
	CREATE FUNCTION evil.to_regclass(text) RETURNS regclass LANGUAGE sql AS $$SELECT NULL::regclass$$;
	CREATE FUNCTION evil.eq(text, text) RETURNS bool LANGUAGE sql AS $$SELECT true$$;
	CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.eq);
	CREATE FUNCTION evil.eqi(int, int) RETURNS bool LANGUAGE sql AS $$SELECT true$$;
	CREATE OPERATOR evil.= (LEFTARG = int, RIGHTARG = int, FUNCTION = evil.eqi);
	CREATE FUNCTION evil.lt(timestamptz, timestamptz) RETURNS bool LANGUAGE sql AS $$SELECT true$$;
	CREATE OPERATOR evil.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.lt);
	CREATE FUNCTION evil.ge(timestamptz, timestamptz) RETURNS bool LANGUAGE sql AS $$SELECT false$$;
	CREATE OPERATOR evil.>= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.ge);
	CREATE FUNCTION evil.cat(text, anynonarray) RETURNS text LANGUAGE sql AS $$SELECT 'pwned'$$;
	CREATE OPERATOR evil.|| (LEFTARG = text, RIGHTARG = anynonarray, FUNCTION = evil.cat);
	GRANT USAGE ON SCHEMA evil TO PUBLIC;
	INSERT INTO anomstream.detected_attacks (p_event_time, p_machine, p_cmd_pid, m_event_time,
		p_kafka_partition, p_kafka_offset, p_row_index, m_kafka_partition, m_kafka_offset, m_row_index)
	VALUES (now() - interval '1 hour', 5, 'x_1', now() - interval '1 hour', 0, 1, 0, 0, 2, 0);
	INSERT INTO anomstream.potential_attacks VALUES
		(date_bin('2 min', now() - interval '1 hour', '1970-01-01'),
		 date_bin('2 min', now() - interval '1 hour', '1970-01-01') + interval '2 min', 5, 1, 1, false);
});
# Sanity: the look-alikes really win for an unqualified query.
is( $node->safe_psql('postgres',
		"SET search_path = evil, public, pg_catalog; SELECT now()::date, 'a' = 'b'"),
	'1999-01-01|t', 'look-alikes shadow the built-ins in this search_path');

my @checks = (
	'SELECT * FROM anomstream.status ORDER BY topic',
	'SELECT * FROM anomstream.attacks_per_window ORDER BY machine, window_start',
	'SELECT * FROM anomstream.attacks_between(pg_catalog.now() - interval \'2 hours\', pg_catalog.now()) ORDER BY machine, window_start',
	'SELECT * FROM anomstream.latest_detected_attacks',
	'SELECT * FROM anomstream.grafana_attacks ORDER BY 1, 2',
	'SELECT * FROM anomstream.grafana_detected_attacks ORDER BY 1, 2',
	'SELECT metric, value FROM anomstream.grafana_status ORDER BY 1',
	'SELECT * FROM anomstream.active_model ORDER BY stream',
	'SELECT relation, persistence FROM anomstream.table_status ORDER BY 1',
	'SELECT anomstream.model_version(\'process_default\')',
	'SELECT md5(anomstream.export_model(\'process_default\'))',
	'SELECT * FROM anomstream.reader_counts()',
	'SELECT md5(anomstream.attack_chart(\'2 hours\', pg_catalog.now()))',
	'SELECT * FROM anomstream.apply_retention() ORDER BY 1',
	'SELECT topic, kafka_partition, partition_watermark, watermark, config_pending FROM anomstream.pipeline_status ORDER BY 1, 2',
	'SELECT operator, owner, updater, watermark FROM anomstream.keyed_status ORDER BY 1');
my $diffs = 0;
for my $sql (@checks)
{
	my $plain = $node->safe_psql('postgres', $sql);
	my $hostile = $node->safe_psql('postgres', "SET search_path = evil, public, pg_catalog; $sql");
	is($hostile, $plain, "same result under a hostile search_path: $sql");
	$diffs++ if $hostile ne $plain;
}
cmp_ok(scalar(@checks), '>', 10, 'checked views and functions');
like($node->safe_psql('postgres', 'SELECT * FROM anomstream.attacks_per_window'),
	qr/\|5\|1\|1\|f/, 'the window inserted above is in the view (the comparison is not vacuous)');

# Retention: rows older than the setting go, newer rows stay; open windows stay.
$node->safe_psql('postgres', q{
	TRUNCATE anomstream.potential_attacks, anomstream.detected_attacks, anomstream.dead_letters;
	-- keep the dead tuples for table_status below
	ALTER TABLE anomstream.dead_letters SET (autovacuum_enabled = off);
	INSERT INTO anomstream.dead_letters (topic, value, error, received_at)
		SELECT 'process', 'v', 'e', now() - g * interval '1 hour' FROM generate_series(0, 47) g;
	-- 25 000 old dead letters: more than one delete statement's chunk
	INSERT INTO anomstream.dead_letters (topic, value, error, received_at)
		SELECT 'process', 'v', 'e', now() - interval '30 days' FROM generate_series(1, 25000);
	INSERT INTO anomstream.potential_attacks
		SELECT ts, ts + interval '2 min', 4, 1, 1, ts < now() - interval '1 day'
		  FROM generate_series(date_bin('2 min', now() - interval '3 days', '1970-01-01'),
							   now() - interval '10 min', interval '2 hours') ts;
	INSERT INTO anomstream.detected_attacks (p_event_time, p_machine, p_cmd_pid, m_event_time,
		p_kafka_partition, p_kafka_offset, p_row_index, m_kafka_partition, m_kafka_offset, m_row_index)
	SELECT now() - g * interval '1 hour', 4, 'x', now() - g * interval '1 hour', 0, g, 0, 1, g, 0
	  FROM generate_series(0, 71) g;
	ALTER SYSTEM SET anomstream.dead_letters_retention = '1d';
	ALTER SYSTEM SET anomstream.result_retention = '2d';
	SELECT pg_reload_conf();
});
sleep 1;
my $expect = $node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM anomstream.dead_letters WHERE received_at < now() - interval '1 day'),
		   (SELECT count(*) FROM anomstream.dead_letters WHERE received_at >= now() - interval '1 day'),
		   (SELECT count(*) FROM anomstream.potential_attacks WHERE window_end < now() - interval '2 days'),
		   (SELECT count(*) FROM anomstream.potential_attacks WHERE window_end >= now() - interval '2 days'),
		   (SELECT count(*) FROM anomstream.detected_attacks WHERE p_event_time < now() - interval '2 days'),
		   (SELECT count(*) FROM anomstream.detected_attacks WHERE p_event_time >= now() - interval '2 days')});
my ($old_dl, $new_dl, $old_pa, $new_pa, $old_da, $new_da) = split /\|/, $expect;
cmp_ok($old_dl, '>', 25000, 'old dead letters to expire');
cmp_ok($old_pa, '>', 0, 'old windows to expire');
cmp_ok($old_da, '>', 0, 'old pairs to expire');
# late_rows exists once the pipeline is installed (nothing old in it here), else it is skipped.
my $late = $node->safe_psql('postgres',
	"SELECT CASE WHEN to_regclass('anomstream.late_rows') IS NULL THEN 'skipped' ELSE '0' END");
my $ret = $node->safe_psql('postgres',
	"SELECT relation || ':' || coalesce(deleted::text, 'skipped') FROM anomstream.apply_retention() ORDER BY 1",
	extra_params => [ '-U', 'operator' ]);
is( $ret,
	join("\n", "anomstream.dead_letters:$old_dl", "anomstream.detected_attacks:$old_da",
		"anomstream.late_rows:$late", "anomstream.potential_attacks:$old_pa"),
	'apply_retention reports what it deleted per table');
is( $node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM anomstream.dead_letters WHERE received_at < now() - interval '1 day'),
		   (SELECT count(*) FROM anomstream.dead_letters),
		   (SELECT count(*) FROM anomstream.potential_attacks WHERE window_end < now() - interval '2 days'),
		   (SELECT count(*) FROM anomstream.potential_attacks),
		   (SELECT count(*) FROM anomstream.detected_attacks WHERE p_event_time < now() - interval '2 days'),
		   (SELECT count(*) FROM anomstream.detected_attacks)}),
	"0|$new_dl|0|$new_pa|0|$new_da", 'old rows are gone, newer rows are kept');

# An open window is never expired, however old.
$node->safe_psql('postgres', q{
	INSERT INTO anomstream.potential_attacks VALUES ('2001-01-01', '2001-01-01 00:02', 9, 1, 1, false)});
$node->safe_psql('postgres', 'SELECT * FROM anomstream.apply_retention()');
is($node->safe_psql('postgres', 'SELECT count(*) FROM anomstream.potential_attacks WHERE machine = 9'),
	'1', 'an open window is kept');

# -1 keeps rows forever.
$node->safe_psql('postgres', q{ALTER SYSTEM SET anomstream.dead_letters_retention = -1; SELECT pg_reload_conf()});
sleep 1;
$node->safe_psql('postgres', q{
	INSERT INTO anomstream.dead_letters (topic, value, error, received_at) VALUES ('p', 'v', 'e', '2001-01-01')});
is( $node->safe_psql('postgres',
		"SELECT deleted IS NULL AND retention_seconds IS NULL FROM anomstream.apply_retention() WHERE relation = 'anomstream.dead_letters'"),
	't', 'retention -1: nothing deleted');
is($node->safe_psql('postgres', "SELECT count(*) FROM anomstream.dead_letters WHERE received_at = '2001-01-01'"),
	'1', 'retention -1 keeps old dead letters');

# table_status: every table of the extension with its size; dead tuples after the deletes.
$node->safe_psql('postgres', 'SELECT pg_stat_force_next_flush()');
is( $node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_tables t WHERE schemaname = 'anomstream'
	   AND NOT EXISTS (SELECT 1 FROM anomstream.table_status s WHERE s.relation = t.tablename)}),
	'0', 'table_status lists every table of the extension');
is( $node->safe_psql('postgres', q{
	SELECT persistence || ' ' || (total_bytes > 0) FROM anomstream.table_status WHERE relation = 'process_events'}),
	'unlogged true', 'table_status shows persistence and size');
ok( $node->poll_query_until('postgres', q{
	SELECT n_dead_tup > 25000 FROM anomstream.table_status WHERE relation = 'dead_letters'}),
	'table_status shows the dead tuples retention left behind');

$node->stop;
done_testing();
