# anomstream.rebuild(from) (DESIGN.md §7): rewind and replay.
#  (a) After a run, rebuild from a time in the middle: the results equal the original run's
#      row for row (and the plain batch SQL reference of test 400); the pairs and windows
#      of the rewritten range were really deleted and emitted again by the replay; only
#      the messages from the Kafka seek position on were replayed to the pipeline (Kafka
#      timestamps = event times here, so the seek lands inside the topic).
#  (c) Rebuild while the producer streams, with kill -9 of the worker during the replay:
#      nothing doubled or lost in detected_attacks, potential_attacks or late_rows.
use strict;
use warnings;

use AnomstreamTest;
use PipelineTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my $start_ts = 1604231589;
my %ref = (lateness => '5s', window => '2min', retention => '6min', bound => '30s');
my $broker = start_broker(partitions => 4);
my ($pcsv, $mcsv) = generated_csvs(rows => 3000, seed => 7);
my $node = new_node('rebuild', $broker->{bootstrap},
	pipeline_settings(lateness => '5s', window => '2min', new_attack_retention => '6min',
		join_bound => '30s', idle_timeout => '3s') . qq{
anomstream.max_batch_rows = 300
anomstream.trigger_interval = '50ms'
anomstream.max_future = '10s'
});

# Compare with the reference; returns the digest of the deterministic columns.
sub check_all
{
	my ($label) = @_;
	my $cmp = compare_staging($node);
	is($cmp->{$_}, '0', "$label: staging equals input ($_)") for sort keys %$cmp;
	build_reference($node, %ref);
	my $res = compare_results($node);
	is($res->{$_}, '0', "$label: $_") for sort keys %$res;
	is(check_state_counters($node), 't', "$label: held counters equal state row counts");
	return results_digest($node);
}

# Wait for a request to finish; returns its status.
sub rebuild
{
	my ($from) = @_;
	my $id = $node->safe_psql('postgres', "SELECT anomstream.rebuild('$from')");
	return ($id, $node->safe_psql('postgres', "SELECT anomstream.rebuild_wait($id, '3 min')"));
}

my $log = replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '0', '--cycles', '150', '--start-ts', $start_ts, '--seed', '3',
	'--kafka-timestamp', 'event');
load_log($node, $log);
ok(wait_ingested($node), 'all rows arrived');
# the pipeline went through every row: W stops moving once every partition is idle
$node->poll_query_until('postgres',
	"SELECT bool_and(idle) FROM anomstream.pipeline_partitions") or die 'not idle';
my $before = check_all('original run');
my ($pot, $det) = result_counts($node);
cmp_ok($det, '>', 20, "the original run found pairs ($det)");
my $last_batch = $node->safe_psql('postgres', 'SELECT max(batch_id) FROM anomstream.detected_attacks');
my $messages = $node->safe_psql('postgres',
	'SELECT sum(durable_offset) FROM anomstream.positions');
# Per partition: its largest event time. W itself depends on the order in which partitions
# went idle (wall-clock timing, DESIGN.md §5), so only its bounds are deterministic.
my $maxima_q = q{SELECT string_agg(topic || '/' || kafka_partition || '=' || coalesce(max_event_time::text, '-'), ','
	ORDER BY topic, kafka_partition) FROM anomstream.pipeline_partitions};
my $w_bounds_q = q{SELECT w.watermark >= min(p.max_event_time) - interval '5s'
	AND w.watermark <= max(p.max_event_time) - interval '5s'
	FROM anomstream.pipeline_state w, anomstream.pipeline_partitions p GROUP BY w.watermark};
my $maxima_before = $node->safe_psql('postgres', $maxima_q);
is($node->safe_psql('postgres', $w_bounds_q), 't',
	'W lies between the smallest and largest partition watermark once all are idle');

# (a) rebuild from the middle
my $from = $node->safe_psql('postgres', "SELECT to_timestamp($start_ts + 470)");
my ($id, $st) = rebuild($from);
is($st, 'done', "rebuild from $from is done");
my ($wfrom, $horizon, $dw, $dp, $replayed) = split /\|/, $node->safe_psql('postgres',
	"SELECT windows_from, horizon, deleted_windows, deleted_pairs, replayed_messages
	 FROM anomstream.rebuild_requests WHERE id = $id");
note "windows from $wfrom, horizon $horizon, deleted $dw windows and $dp pairs, replayed $replayed of $messages messages";
is($node->safe_psql('postgres',
	"SELECT '$wfrom' = date_bin('2min', '$from'::timestamptz, '1970-01-01 00:00:00+00')"),
	't', 'windows are recomputed from the window containing from');
cmp_ok($dw, '>', 0, 'window rows of the range were deleted');
cmp_ok($dp, '>', 0, 'pairs of the range were deleted');
cmp_ok($replayed, '>', 0, 'messages were replayed');
cmp_ok($replayed, '<', $messages, 'not everything: the seek by timestamp landed inside the topics');
ok(wait_ingested($node), 'staging was refilled');
# W restarted from -infinity; the windows kept from before stay closed meanwhile. Once every
# partition is idle again, each has its largest event time back and W is within the same
# bounds as before (which partition went idle last, and so W, is a matter of timing).
ok($node->poll_query_until('postgres',
	"SELECT bool_and(idle) AND ($maxima_q) = '$maxima_before' FROM anomstream.pipeline_partitions"),
	'every partition is idle again with its largest event time from before the rebuild');
is($node->safe_psql('postgres', $w_bounds_q), 't',
	'W is back between the smallest and largest partition watermark');
my $after = check_all('after rebuild');
is($after, $before, 'results equal the original run row for row');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM anomstream.detected_attacks
	  WHERE (greatest(p_event_time, m_event_time) >= '$from') <> (batch_id > $last_batch)"),
	'0', 'exactly the pairs whose later row is at or after from were emitted again');
is($node->safe_psql('postgres',
	"SELECT count(*) = $dp FROM anomstream.detected_attacks WHERE batch_id > $last_batch"),
	't', 'as many pairs as were deleted');
is($node->safe_psql('postgres', "SELECT state FROM anomstream.status LIMIT 1"),
	'running', 'status is running again');
is($node->safe_psql('postgres', "SELECT count(*) FROM anomstream.rebuild_positions"),
	'0', 'no replay position is left');

# (c) rebuild while streaming, kill -9 of the worker during the replay
my ($replayer, $log2, $r) = replay_bg($broker->{bootstrap}, '--process', $pcsv, '--memory',
	$mcsv, '--speedup', '15', '--cycles', '80', '--start-ts', $start_ts + 750, '--seed', '4',
	'--kafka-timestamp', 'event');
$node->poll_query_until('postgres',
	"SELECT max(max_event_time) > to_timestamp($start_ts + 800) FROM anomstream.pipeline_partitions")
  or die 'stream did not continue';
my $id2 = $node->safe_psql('postgres',
	"SELECT anomstream.rebuild(to_timestamp($start_ts + 300))");
$node->poll_query_until('postgres',
	"SELECT status = 'replaying' FROM anomstream.rebuild_requests WHERE id = $id2")
  or die 'no replay';
is($node->safe_psql('postgres', "SELECT state FROM anomstream.status LIMIT 1"),
	'rebuilding', 'status shows rebuilding during the replay');
kill_worker($node);
stop_bg($replayer) or die "replayer failed: $r->{err}";
is($node->safe_psql('postgres', "SELECT anomstream.rebuild_wait($id2, '3 min')"),
	'done', 'the rebuild finished after the worker was killed during its replay');
load_log($node, $log2);
ok(wait_ingested($node), 'all rows of both runs arrived');
$node->poll_query_until('postgres',
	"SELECT bool_and(idle) FROM anomstream.pipeline_partitions") or die 'not idle';
my $streamed = check_all('rebuild while streaming, with a crash');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM (SELECT 1 FROM anomstream.detected_attacks
	   GROUP BY p_kafka_partition, p_kafka_offset, p_row_index,
				m_kafka_partition, m_kafka_offset, m_row_index HAVING count(*) > 1) d"),
	'0', 'no pair doubled');
my ($pot2, $det2) = result_counts($node);

# A time before any data: everything Kafka holds is recomputed.
my ($id3, $st3) = rebuild('1960-01-01 00:00:00+00');
is($st3, 'done', 'rebuild from before any data is done');
is($node->safe_psql('postgres',
	"SELECT windows_from = '1970-01-01 00:00:00+00' AND replayed_messages = (SELECT sum(durable_offset) FROM anomstream.positions)
	   AND deleted_windows = $pot2 AND deleted_pairs = $det2
	 FROM anomstream.rebuild_requests WHERE id = $id3"),
	't', 'it deleted every result and replayed every message');
ok(wait_ingested($node), 'staging was refilled again');
is(results_digest($node), $streamed, 'the results are the same again');

$node->stop;
stop_broker($broker);
done_testing();
