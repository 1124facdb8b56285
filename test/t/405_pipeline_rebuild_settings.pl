# anomstream.rebuild(from) applies changed semantic settings (DESIGN.md §7).
#  (b) After a run with 2-minute windows, anomstream.window becomes 1min: status shows
#      'config pending', nothing is consumed and the results do not change. rebuild(from)
#      stores the new setting: windows from `from`'s window on are 1-minute windows equal to
#      the plain batch SQL reference computed with 1min; earlier windows are the 2-minute
#      ones of the reference with 2min; pairs and late rows equal the reference.
#      Then join_bound changes from 30s to 20s and a rebuild from a later time applies it:
#      pairs whose later row is at or after that time follow 20s, earlier ones 30s.
#  Errors: without the library preloaded, rebuild() refuses with a hint.
use strict;
use warnings;

use AnomstreamTest;
use PipelineTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $start_ts = 1604231589;
my $broker = start_broker(partitions => 4);
my ($pcsv, $mcsv) = generated_csvs(rows => 3000, seed => 7);
my $node = new_node('settings', $broker->{bootstrap},
	pipeline_settings(lateness => '5s', window => '2min', new_attack_retention => '6min',
		join_bound => '30s', idle_timeout => '3s') . qq{
anomstream.max_batch_rows = 300
anomstream.trigger_interval = '50ms'
anomstream.max_future = '10s'
});
my $potential_cols = 'window_start, window_end, machine, attacks, new_attacks';
my $detected_key = 'p_kafka_partition, p_kafka_offset, p_row_index, m_kafka_partition, m_kafka_offset, m_row_index';

sub sq { return $node->safe_psql('postgres', $_[0]); }

sub settle
{
	ok(wait_ingested($node), "$_[0]: all rows arrived");
	$node->poll_query_until('postgres',
		"SELECT bool_and(idle) FROM anomstream.pipeline_partitions") or die 'not idle';
}

# Rows of a result table (columns $cols, restricted by $where) missing from / extra to the
# reference table: "missing extra".
sub diff
{
	my ($ref, $table, $cols, $where) = @_;
	return sq("SELECT (SELECT count(*) FROM (SELECT $cols FROM $ref WHERE $where
					   EXCEPT ALL SELECT $cols FROM anomstream.$table WHERE $where) a)
				 || ' ' ||
				 (SELECT count(*) FROM (SELECT $cols FROM anomstream.$table WHERE $where
					   EXCEPT ALL SELECT $cols FROM $ref WHERE $where) b)");
}
sub windows_diff { return diff('ref_potential', 'potential_attacks', $potential_cols, $_[0]); }
sub pairs_diff { return diff('ref_detected', 'detected_attacks', $detected_key, $_[0]); }

my $log = replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '0', '--cycles', '150', '--start-ts', $start_ts, '--seed', '3',
	'--kafka-timestamp', 'event');
load_log($node, $log);
settle('first run');
build_reference($node, lateness => '5s', window => '2min', retention => '6min', bound => '30s');
my $res = compare_results($node);
is($res->{$_}, '0', "first run: $_") for sort keys %$res;
sq('CREATE TABLE ref_potential_2min AS SELECT * FROM ref_potential');
my $digest = results_digest($node);

# (b) a changed window waits for rebuild
sq(q{ALTER SYSTEM SET anomstream."window" = '1min'; SELECT pg_reload_conf()});
$node->poll_query_until('postgres',
	"SELECT state = 'config pending' FROM anomstream.status LIMIT 1")
  or die 'status does not show config pending';
is(sq('SELECT bool_and(config_pending) FROM anomstream.pipeline_status'), 't',
	'pipeline_status shows config_pending');
my $staged = sq('SELECT count(*) FROM anomstream.memory_events');
my $log2 = replay($broker->{bootstrap}, '--memory', $mcsv, '--cycles', '20', '--speedup', '0',
	'--start-ts', $start_ts + 750, '--seed', '6', '--kafka-timestamp', 'event');
sleep 2;
is(sq('SELECT count(*) FROM anomstream.memory_events'), $staged,
	'nothing is consumed while the settings are pending');
is(results_digest($node), $digest, 'the results do not change while the settings are pending');

my $from = sq("SELECT to_timestamp($start_ts + 471)");
my $id = sq("SELECT anomstream.rebuild('$from')");
is(sq("SELECT anomstream.rebuild_wait($id, '3 min')"), 'done', 'rebuild applying window 1min is done');
load_log($node, $log2);
settle('after the rebuild');
my $r = sq("SELECT windows_from FROM anomstream.rebuild_requests WHERE id = $id");
# from is 12:01:00: its 1-minute window starts there, but the 2-minute window [12:00, 12:02)
# straddles it, so the rewritten range starts at 12:00, a start under both widths
is($r, sq("SELECT date_bin('2min', '$from'::timestamptz, '1970-01-01 00:00:00+00')"),
	'windows are rewritten from the latest start under both widths at or before from');
isnt($r, sq("SELECT date_bin('1min', '$from'::timestamptz, '1970-01-01 00:00:00+00')"),
	'(which is not the start of the 1-minute window containing from)');
is(sq("SELECT (old_settings->>'window_ms') || ' ' || (new_settings->>'window_ms') FROM anomstream.rebuild_requests WHERE id = $id"),
	'120000 60000', 'the request records the old and the new window');
is(sq('SELECT window_ms FROM anomstream.pipeline_config'), '60000', 'pipeline_config holds the new window');
is(sq('SELECT bool_or(config_pending) FROM anomstream.pipeline_status'), 'f', 'config no longer pending');
is(sq('SELECT state FROM anomstream.status LIMIT 1'), 'running', 'status is running');
is(sq("SELECT count(*) FROM anomstream.potential_attacks
	  WHERE window_end - window_start <> CASE WHEN window_start >= '$r' THEN interval '1min' ELSE interval '2min' END"),
	'0', '1-minute windows from there on, 2-minute windows before');
cmp_ok(sq("SELECT count(*) FROM anomstream.potential_attacks WHERE window_start >= '$r'"), '>', 10,
	'there are 1-minute windows');
build_reference($node, lateness => '5s', window => '1min', retention => '6min', bound => '30s');
is(windows_diff("window_start >= '$r'"), '0 0',
	'windows from there on equal the reference computed with window 1min');
sq('DROP TABLE ref_potential; ALTER TABLE ref_potential_2min RENAME TO ref_potential');
is(windows_diff("window_start < '$r'"), '0 0',
	'earlier windows equal the reference computed with window 2min');
is(pairs_diff('true'), '0 0', 'pairs equal the reference');
$res = compare_results($node);
is($res->{$_}, '0', "after the window rebuild: $_") for grep { /late|detected|closed/ } sort keys %$res;
is(check_state_counters($node), 't', 'held counters equal state row counts');

# join_bound 30s → 20s from a later time
sq(q{ALTER SYSTEM SET anomstream.join_bound = '20s'; SELECT pg_reload_conf()});
$node->poll_query_until('postgres', "SELECT state = 'config pending' FROM anomstream.status LIMIT 1")
  or die 'not pending';
my $from2 = sq("SELECT to_timestamp($start_ts + 600)");
my $before_pairs = sq("SELECT count(*) FROM anomstream.detected_attacks");
$id = sq("SELECT anomstream.rebuild('$from2')");
is(sq("SELECT anomstream.rebuild_wait($id, '3 min')"), 'done', 'rebuild applying join_bound 20s is done');
settle('after the second rebuild');
build_reference($node, lateness => '5s', window => '1min', retention => '6min', bound => '20s');
is(pairs_diff("greatest(p_event_time, m_event_time) >= '$from2'"), '0 0',
	'pairs whose later row is at or after from follow join_bound 20s');
sq('CREATE TABLE ref_detected_20 AS SELECT * FROM ref_detected');
build_reference($node, lateness => '5s', window => '1min', retention => '6min', bound => '30s');
is(pairs_diff("greatest(p_event_time, m_event_time) < '$from2'"), '0 0',
	'earlier pairs still follow join_bound 30s');
cmp_ok(sq("SELECT count(*) FROM anomstream.detected_attacks"), '<', $before_pairs,
	'the narrower bound left fewer pairs');
cmp_ok(sq('SELECT count(*) FROM ref_detected'), '>', sq('SELECT count(*) FROM ref_detected_20'),
	'the references with 30s and 20s differ (the test can fail)');
$node->stop;
stop_broker($broker);

# Without the library preloaded the rebuild refuses, with a hint.
my $plain = PostgreSQL::Test::Cluster->new('nopreload');
$plain->init;
$plain->start;
$plain->safe_psql('postgres', 'CREATE EXTENSION anomstream');
my ($ret, $out, $err) = $plain->psql('postgres', "SELECT anomstream.rebuild(now())");
isnt($ret, 0, 'rebuild() without the preloaded library fails');
like($err, qr/needs the anomstream worker/, 'it says why');
like($err, qr/HINT:  Add anomstream to shared_preload_libraries/, 'and what to do');
$plain->stop;
done_testing();
