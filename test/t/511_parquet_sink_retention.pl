# Continuous Parquet sinks are durable consumers (DESIGN.md §7, §8): the rows of an open part
# live only in staging, so staging retention must keep them and a crash must bring them back
# from Kafka. Here staging_retention is 1 s (the worker expires staging every 10 s) while parts
# roll only every 12 s, and the worker is killed and the server stopped in immediate mode
# during the stream. Every input row must still be in exactly one part file, and retention
# must have emptied staging of what the parts took (so it did run).
use strict;
use warnings;

use AnomstreamTest;
use PipelineTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SinkTest;
use Test::More;
use Time::HiRes qw(sleep);

my $seed = $ENV{ANOMSTREAM_CRASH_SEED} // time();
srand($seed);
note "random seed $seed (ANOMSTREAM_CRASH_SEED reproduces the crash points)";

my $broker = start_broker(partitions => 2);
my ($pcsv, $mcsv) = generated_csvs(rows => 3000, seed => 5);
my $node = new_node('sinkret', $broker->{bootstrap}, qq{
anomstream.max_batch_rows = 500
anomstream.trigger_interval = '50ms'
anomstream.staging_retention = 1
anomstream.sink_roll_rows = 1000000
anomstream.sink_roll_interval = '12s'
});
my $dir = PostgreSQL::Test::Utils::tempdir();
$node->safe_psql('postgres', qq{
SELECT anomstream.set_sink('process', '$dir');
SELECT anomstream.set_sink('memory', '$dir');});

my ($replayer, $log, $r) = replay_bg($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '20', '--cycles', '60', '--start-ts', '1604231589', '--seed', '4');

# Crash while parts are open and retention has run at least once.
my $n = 0;
for my $c (\&kill_worker, \&immediate_restart)
{
	$node->poll_query_until('postgres',
		'SELECT coalesce(sum(open_rows), 0) > 0 FROM anomstream.sink_positions')
	  or die 'no open part';
	sleep(4 + rand(4.0));
	$c->($node);
	$n++;
}
stop_bg($replayer) or die "replayer failed: $r->{err}";
load_log($node, $log);

my ($rows) = expected_counts($node);
{
	local $PostgreSQL::Test::Utils::timeout_default = 120;
	ok( $node->poll_query_until('postgres', qq{
		SELECT coalesce(sum(rows), 0) >= $rows AND
			   (SELECT coalesce(sum(open_rows), 0) FROM anomstream.sink_positions) = 0
		FROM anomstream.sink_manifest}),
		"the parts hold as many rows as were produced ($rows) after $n crashes");
}
note $node->safe_psql('postgres',
	"SELECT string_agg(sink || ': ' || n || ' parts', ', ') FROM (SELECT sink, count(*) AS n FROM anomstream.sink_manifest GROUP BY sink) s");

check_directory($node, $dir);
check_exactly_once($node, $dir);

# Retention ran: once the parts took the rows, staging lets them go.
ok( $node->poll_query_until('postgres', qq{
	SELECT (SELECT count(*) FROM anomstream.process_events) +
		   (SELECT count(*) FROM anomstream.memory_events) < $rows / 2}),
	'staging retention expired the exported rows');
my $refills = () = slurp_file($node->logfile) =~ /refilling it from Kafka/g;
cmp_ok($refills, '>=', $n + 1, 'staging was refilled after every crash');

$node->stop;
stop_broker($broker);
done_testing();
