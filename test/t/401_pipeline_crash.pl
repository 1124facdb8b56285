# Crash exactness (DESIGN.md §7): while the replayer streams, kill -9 the worker, kill -9 an
# ordinary backend and stop the server in immediate mode, repeatedly and at random points.
# Operator state and results are logged and change only inside the micro-batch
# transaction, so potential_attacks, detected_attacks and late_rows must equal the batch
# reference over all input rows, exactly as without crashes (test 400).
use strict;
use warnings;

use AnomstreamTest;
use IPC::Run;
use PipelineTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my $seed = $ENV{ANOMSTREAM_CRASH_SEED} // time();
srand($seed);
note "random seed $seed (ANOMSTREAM_CRASH_SEED reproduces the crash points)";

my $broker = start_broker(partitions => 4);
my ($pcsv, $mcsv) = generated_csvs(rows => 3000, seed => 7);
my $node = new_node('pcrash', $broker->{bootstrap},
	pipeline_settings(lateness => '5s', window => '2min', new_attack_retention => '6min',
		join_bound => '30s', idle_timeout => '10s') . qq{
anomstream.max_batch_rows = 250
anomstream.trigger_interval = '50ms'
});

my ($replayer, $log, $r) = replay_bg($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '20', '--cycles', '160', '--start-ts', '1604231589', '--seed', '3');

sub immediate
{
	$node->stop('immediate');
	$node->start;
	note 'immediate stop and start';
}

my @crashes = (\&kill_worker, \&immediate, \&kill_backend, \&kill_worker, \&kill_worker,
	\&immediate, \&kill_worker);
my $n = 0;
for my $c (@crashes)
{
	# wait until the pipeline is processing again, then a random moment
	$node->poll_query_until('postgres',
		"SELECT batches > 0 FROM anomstream.pipeline_state") or die 'no batches';
	sleep(0.3 + rand(2.0));
	$c->($node);
	$n++;
}
stop_bg($replayer) or die "replayer failed: $r->{err}";
kill_worker($node);
$n++;

load_log($node, $log);
ok(wait_ingested($node), "all rows arrived after $n crashes");
sleep 1;
my $cmp = compare_staging($node);
is($cmp->{$_}, '0', "staging equals input: $_") for sort keys %$cmp;
build_reference($node, lateness => '5s', window => '2min', retention => '6min', bound => '30s');
my $res = compare_results($node);
is($res->{$_}, '0', "after $n crashes: $_") for sort keys %$res;
my ($pot, $det, $late, $behind) = result_counts($node);
note "$pot window rows, $det pairs, $late late rows";
cmp_ok($det, '>', 100, 'pairs were detected');
cmp_ok($late, '>', 10, 'late rows were listed');
is($behind, '0', 'no row was behind the pipeline watermark');
is(check_state_counters($node), 't', 'held counters equal the state tables');
my $refills = () = slurp_file($node->logfile) =~ /refilling it from Kafka/g;
cmp_ok($refills, '>=', $n, 'staging was refilled after every crash');
is($node->safe_psql('postgres',
		'SELECT count(DISTINCT batch_id) = count(*) FROM anomstream.pipeline_batches'),
	't', 'batch ids are unique');

$node->stop;
stop_broker($broker);
done_testing();
