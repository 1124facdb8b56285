# Partitions this server starts to consume begin at their earliest offset (DESIGN.md §7): a
# server consuming partition 0 of both topics is given partitions 0-1; partition 1's
# backlog then arrives from its first offset, exactly once, next to partition 0's rows.
#
# What this does NOT test: partitions added to a live topic, found by the worker's 30 s
# metadata refresh. librdkafka 2.0.2's mock cluster cannot add partitions to an existing
# topic (no CreatePartitions; creating it again answers "Topic already exists"), so here the
# new partitions come from a configuration reload. Both paths end in the same code: list
# partitions, read positions, assign, partitions without a position from the beginning.
use strict;
use warnings;

use AnomstreamTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $broker = start_broker(partitions => 2);
my ($pcsv, $mcsv) = input_csvs();
is(broker_cmd($broker, 'topic process 4'), 'error: Broker: Topic already exists',
	'the mock cluster cannot add partitions to an existing topic');
my $node = new_node('ops_newparts', $broker->{bootstrap}, q{
anomstream.partitions = '0'
});
$node->poll_query_until('postgres',
	"SELECT bool_and(state = 'running') AND count(*) = 2 FROM anomstream.status")
  or die 'worker not running';

my $log = replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '0', '--cycles', '4', '--start-ts', '1604231589', '--seed', '1');
load_log($node, $log);
my $p0 = $node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM t_exp_process WHERE kafka_partition = 0)
		 + (SELECT count(*) FROM t_exp_memory WHERE kafka_partition = 0)});
my $p1 = $node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM t_exp_process WHERE kafka_partition = 1)
		 + (SELECT count(*) FROM t_exp_memory WHERE kafka_partition = 1)});
cmp_ok($p1, '>', 0, "partition 1 holds $p1 rows, partition 0 $p0");
ok( $node->poll_query_until('postgres', qq{
		SELECT (SELECT count(*) FROM anomstream.process_events)
			 + (SELECT count(*) FROM anomstream.memory_events) = $p0}),
	"partition 0's rows arrive");
is($node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM anomstream.process_events WHERE kafka_partition = 1)
		 + (SELECT count(*) FROM anomstream.memory_events WHERE kafka_partition = 1)
		 + (SELECT count(*) FROM anomstream.positions WHERE kafka_partition = 1)}),
	'0', 'nothing of partition 1 is read');

$node->safe_psql('postgres', "ALTER SYSTEM SET anomstream.partitions = '0-1'; SELECT pg_reload_conf()");
ok(wait_ingested($node, 60), "partition 1's backlog arrives");
ok($node->poll_query_until('postgres',
		"SELECT bool_and(state = 'running') AND count(*) = 4 FROM anomstream.status"),
	'4 partitions running');
my $cmp = compare_staging($node);
is($cmp->{$_}, '0', "staging vs input, the new partitions from their first offset: $_")
  for sort keys %$cmp;
# Partition 1 of each topic that holds rows starts at its first offset in Kafka (the input's
# first offset there; which topics have rows in partition 1 depends on the machines' keys).
my $first_sql = q{
	SELECT string_agg(topic || '/' || kafka_partition || ':' || first, ',' ORDER BY topic)
	  FROM (SELECT 'process' AS topic, kafka_partition, min(kafka_offset) AS first
			  FROM %s WHERE kafka_partition = 1 GROUP BY 2
			UNION ALL
			SELECT 'memory', kafka_partition, min(kafka_offset)
			  FROM %s WHERE kafka_partition = 1 GROUP BY 2) f};
my $first_input = $node->safe_psql('postgres', sprintf($first_sql, 't_exp_process', 't_exp_memory'));
like($first_input, qr{/1:0\b}, "the input has partition-1 rows from offset 0 ($first_input)");
is( $node->safe_psql('postgres',
		sprintf($first_sql, 'anomstream.process_events', 'anomstream.memory_events')),
	$first_input, 'partition 1 starts at its first offset');

$node->stop;
stop_broker($broker);
done_testing();
