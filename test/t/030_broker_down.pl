# The broker goes down for 10 s in the middle of a stream and comes back: the worker shows
# 'waiting for broker', the database stays usable, and nothing is lost or doubled.
use strict;
use warnings;

use AnomstreamTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep time);

my $broker = start_broker(partitions => 2);
my ($pcsv, $mcsv) = input_csvs();
my $node = new_node('down', $broker->{bootstrap});

my ($replayer, $log, $r) = replay_bg($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '10', '--cycles', '60', '--start-ts', '1604231589', '--seed', '5');
sleep 4;
$node->poll_query_until('postgres', 'SELECT sum(rows) > 0 FROM anomstream.status')
  or die 'nothing consumed before the outage';

is(broker_cmd($broker, 'down 1'), 'ok', 'broker down');
my $t0 = time;
ok( $node->poll_query_until('postgres',
		"SELECT state = 'waiting for broker' FROM anomstream.status LIMIT 1"),
	'status says waiting for broker');
is($node->safe_psql('postgres', 'SELECT count(*) >= 0 FROM anomstream.positions'),
	't', 'the database answers during the outage');
sleep(10 - (time - $t0)) if time - $t0 < 10;
is(broker_cmd($broker, 'up 1'), 'ok', 'broker up after 10 s');

stop_bg($replayer) or die "replayer failed: $r->{err}";
load_log($node, $log);
ok(wait_ingested($node), 'everything produced arrived');
ok( $node->poll_query_until('postgres',
		"SELECT state = 'running' FROM anomstream.status LIMIT 1"),
	'status back to running');
my $cmp = compare_staging($node);
is($cmp->{$_}, '0', "nothing lost or doubled: $_") for sort keys %$cmp;

my $logtext = slurp_file($node->logfile);
my $kafka_lines = () = $logtext =~ /anomstream: kafka error/g;
cmp_ok($kafka_lines, '<=', 10, "broker errors are rate-limited in the log ($kafka_lines lines)");

$node->stop;
stop_broker($broker);
done_testing();
