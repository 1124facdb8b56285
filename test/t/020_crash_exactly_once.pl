# Exactly once across crashes: while the replayer streams, kill -9 the worker, kill -9 an
# ordinary backend, and stop the server in immediate mode, several times. Each of these
# makes PostgreSQL empty the UNLOGGED staging tables; the worker must refill them from Kafka
# without writing any dead letter twice. At the end staging equals the input row for row.
use strict;
use warnings;

use AnomstreamTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my $broker = start_broker(partitions => 4);
my ($pcsv, $mcsv) = input_csvs();
my $node = new_node('crash', $broker->{bootstrap}, qq{
anomstream.max_batch_rows = 400
anomstream.trigger_interval = '100ms'
});

my ($replayer, $log, $r) = replay_bg($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '25', '--cycles', '100', '--start-ts', '1604231589', '--seed', '7',
	'--inject-bad', '11');

my $crashes = 0;
sleep 2;
kill_worker($node);
$crashes++;

sleep 2;
$node->stop('immediate');
$node->start;
$crashes++;

# An ordinary backend dies: the postmaster restarts everything, staging included.
sleep 2;
kill_backend($node);
$crashes++;

sleep 2;
kill_worker($node);
$crashes++;

sleep 1;
$node->stop('immediate');
$node->start;
$crashes++;

stop_bg($replayer) or die "replayer failed: $r->{err}";
# One more crash after the input ended, while the worker may be refilling.
kill_worker($node);
$crashes++;

load_log($node, $log);
my ($rows, $dead) = expected_counts($node);
note "replayed $rows rows and $dead malformed messages/rows through $crashes crashes";
cmp_ok($rows, '>', 5000, 'enough rows replayed');
ok(wait_ingested($node), 'all rows arrived after the crashes');
# Give a wrongly duplicating worker the chance to show it.
sleep 2;
my $cmp = compare_staging($node);
is($cmp->{$_}, '0', "exactly once after $crashes crashes: $_") for sort keys %$cmp;

my $refills = () = slurp_file($node->logfile) =~ /refilling it from Kafka/g;
cmp_ok($refills, '>=', $crashes, 'the worker refilled staging after every crash');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM anomstream.positions WHERE staging_low > durable_offset"),
	'0', 'staging_low never passes the durable position');

$node->stop;
stop_broker($broker);
done_testing();
