# anomstream.rebuild(from) refuses when Kafka no longer has the data (DESIGN.md §7).
# librdkafka's mock cluster keeps about 5 MB per partition and drops the oldest messages
# beyond that, so a long enough replay leaves partitions whose earliest offset is above 0.
# A rebuild from before the data that is left is refused (status 'refused', the reason in
# rebuild_wait's error and in the request row) and changes nothing; a rebuild from a time
# whose horizon is still in Kafka is carried out and gives the same results.
use strict;
use warnings;

use AnomstreamTest;
use PipelineTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $start_ts = 1604231589;
my $cycles = 1500;
my $broker = start_broker(partitions => 1);
my ($pcsv, $mcsv) = generated_csvs(rows => 3000, seed => 7);
# The worker gets the brokers only after the replay: consuming while the broker drops the
# oldest messages would leave it behind them (a gap, another feature).
my $node = new_node('refused', '',
	pipeline_settings(lateness => '5s', window => '2min', new_attack_retention => '2min',
		join_bound => '30s', idle_timeout => '3s') . qq{
anomstream.max_batch_rows = 5000
anomstream.trigger_interval = '100ms'
anomstream.max_future = '10s'
});

replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv, '--speedup', '0',
	'--cycles', $cycles, '--start-ts', $start_ts, '--seed', '3', '--kafka-timestamp', 'event');
$node->safe_psql('postgres',
	"ALTER SYSTEM SET anomstream.brokers = '$broker->{bootstrap}'; SELECT pg_reload_conf()");
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 2 AND bool_and(durable_offset >= high_watermark) FROM anomstream.status}),
	'the worker consumed what Kafka still has');
ok($node->poll_query_until('postgres',
	'SELECT bool_and(idle) FROM anomstream.pipeline_partitions'), 'partitions are idle');
is($node->safe_psql('postgres', 'SELECT min(kafka_offset) > 0 FROM anomstream.process_events'),
	't', 'the broker dropped the oldest messages: the worker started above offset 0');
my $digest = results_digest($node);
my ($pot, $det) = result_counts($node);
cmp_ok($pot, '>', 0, 'there are results');

# from before the data Kafka still has: refused
my $id = $node->safe_psql('postgres', "SELECT anomstream.rebuild(to_timestamp($start_ts))");
my ($ret, $out, $err) = $node->psql('postgres', "SELECT anomstream.rebuild_wait($id, '2 min')");
isnt($ret, 0, 'rebuild_wait raises for a refused request');
like($err, qr/rebuild request $id was refused/, 'it says the request was refused');
like($err, qr/DETAIL:  Kafka no longer has the data: partition \w+\/0 starts at offset \d+/,
	'and why: the partition starts above the needed position');
is($node->safe_psql('postgres',
	"SELECT status || ' ' || (finished_at IS NOT NULL) FROM anomstream.rebuild_requests WHERE id = $id"),
	'refused true', 'the request is refused');
is(results_digest($node), $digest, 'a refused rebuild changes no result');
is($node->safe_psql('postgres', 'SELECT count(*) FROM anomstream.rebuild_positions'), '0',
	'and starts no replay');
is($node->safe_psql('postgres', 'SELECT state FROM anomstream.status LIMIT 1'), 'running',
	'the worker runs on');

# from a time whose horizon Kafka still has: carried out, same results
my $late = $start_ts + 5 * $cycles - 300;
$id = $node->safe_psql('postgres', "SELECT anomstream.rebuild(to_timestamp($late))");
is($node->safe_psql('postgres', "SELECT anomstream.rebuild_wait($id, '2 min')"), 'done',
	'a rebuild from a recent time is done');
cmp_ok($node->safe_psql('postgres',
	"SELECT deleted_windows FROM anomstream.rebuild_requests WHERE id = $id"), '>', 0,
	'it recomputed windows');
ok($node->poll_query_until('postgres',
	'SELECT bool_and(idle) FROM anomstream.pipeline_partitions'), 'partitions are idle again');
is(results_digest($node), $digest, 'the results are the same');

$node->stop;
stop_broker($broker);
done_testing();
