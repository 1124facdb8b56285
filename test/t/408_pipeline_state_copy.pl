# The worker's copy of the operator state (src/pipeline/state_cache.c) stays equal to the
# tables, or is loaded again, whatever happens to them between micro-batches:
#  (a) VACUUM FULL of the join buffers and window_keys moves every row (new TIDs, new
#      relfilenodes) while the state holds rows: the copy is loaded again and the results
#      stay exact (eviction deletes by TID, so a stale copy would delete the wrong rows or
#      none);
#  (b) micro-batches that changed the copy and then fail (a CHECK constraint on
#      detected_attacks rejects their pairs) roll back: the copy is loaded again and, once
#      the constraint is gone, the results equal the reference;
#  (c) kill -9 of the worker: the new worker loads the copy from the tables.
# Each time the results are compared with the plain-SQL reference (PipelineTest.pm) and
# the held counters with the tables.
use strict;
use warnings;

use AnomstreamTest;
use PipelineTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $start_ts = 1604231589;
my %ref = (lateness => '5s', window => '2min', retention => '6min', bound => '30s');
my $broker = start_broker(partitions => 4);
my ($pcsv, $mcsv) = generated_csvs(rows => 3000, seed => 11);
my $node = new_node('state_copy', $broker->{bootstrap},
	pipeline_settings(lateness => '5s', window => '2min', new_attack_retention => '6min',
		join_bound => '30s', idle_timeout => '3s') . qq{
anomstream.max_batch_rows = 300
anomstream.trigger_interval = '50ms'
anomstream.max_future = '10s'
});

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub check_all
{
	my ($label) = @_;
	ok(wait_ingested($node), "$label: all rows arrived");
	$node->poll_query_until('postgres',
		"SELECT bool_and(idle) FROM anomstream.pipeline_partitions") or die 'not idle';
	build_reference($node, %ref);
	my $res = compare_results($node);
	is($res->{$_}, '0', "$label: $_") for sort keys %$res;
	is(check_state_counters($node), 't', "$label: held counters equal state row counts");
}

# Produce the next stretch of event time; returns the replay log.
my $cycle = 0;
sub produce
{
	my ($cycles, $seed) = @_;
	my $log = replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
		'--speedup', '0', '--cycles', $cycles, '--start-ts', $start_ts + $cycle * 5,
		'--seed', $seed, '--kafka-timestamp', 'event');
	$cycle += $cycles;
	return $log;
}

load_log($node, produce(60, 1));
ok(wait_ingested($node), 'first stretch arrived');
$node->poll_query_until('postgres',
	"SELECT bool_and(idle) FROM anomstream.pipeline_partitions") or die 'not idle';
my $held = sql('SELECT held_process + held_memory, held_keys FROM anomstream.pipeline_state');
my ($rows, $keys) = split /\|/, $held;
cmp_ok($rows, '>', 0, "the join buffers hold rows ($rows)");
cmp_ok($keys, '>', 0, "window_keys holds keys ($keys)");
is(sql(q{SELECT (SELECT sum(attack_rows) FROM anomstream.pipeline_batches)
	  > (SELECT held_process + held_memory FROM anomstream.pipeline_state)}),
	't', 'join rows were evicted along the way');
unlike(slurp_file($node->logfile), qr/copy of the pipeline state was loaded again/,
	'plain streaming never finds the copy different from the tables');

# (a) every row of the state moves
my $nodes_before = sql(q{SELECT string_agg(relfilenode::text, ',' ORDER BY relname) FROM pg_class
	WHERE relnamespace = 'anomstream'::regnamespace
	  AND relname IN ('join_process', 'join_memory', 'window_keys')});
sql('VACUUM FULL anomstream.join_process, anomstream.join_memory, anomstream.window_keys');
isnt(sql(q{SELECT string_agg(relfilenode::text, ',' ORDER BY relname) FROM pg_class
	WHERE relnamespace = 'anomstream'::regnamespace
	  AND relname IN ('join_process', 'join_memory', 'window_keys')}),
	$nodes_before, 'VACUUM FULL gave the state tables new relfilenodes');
my $offset = -s $node->logfile;
load_log($node, produce(40, 2));
check_all('after VACUUM FULL of the state');
like(slurp_file($node->logfile, $offset),
	qr/the copy of the pipeline state was loaded again: the tables were replaced or rewritten/,
	'the worker loaded its copy again after the rewrite');

# (b) failing micro-batches roll back after changing the copy
sql('ALTER TABLE anomstream.detected_attacks ADD CONSTRAINT no_pairs_now CHECK (batch_id < 0) NOT VALID');
$offset = -s $node->logfile;
my $log3 = produce(40, 3);
my $failed = 0;
for (1 .. 600)
{
	last if ($failed = slurp_file($node->logfile, $offset) =~ /no_pairs_now/);
	select(undef, undef, undef, 0.1);
}
ok($failed, 'micro-batches with pairs fail on the constraint');
sql('ALTER TABLE anomstream.detected_attacks DROP CONSTRAINT no_pairs_now');
load_log($node, $log3);
check_all('after failed micro-batches');
like(slurp_file($node->logfile, $offset),
	qr/the copy of the pipeline state was loaded again: a transaction that changed it was rolled back/,
	'the worker loaded its copy again after the rollback');

# (c) a new worker process starts from the tables
kill_worker($node);
load_log($node, produce(40, 4));
check_all('after kill -9 of the worker');
my ($pot, $det) = result_counts($node);
cmp_ok($det, '>', 20, "pairs were found ($det)");

$node->stop;
stop_broker($broker);
done_testing();
