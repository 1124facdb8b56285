# Scale-out check at start (DESIGN.md §11): a server given a partition list
# (anomstream.partitions) refuses to consume when the two topics have different partition
# counts: status 'error' with the reason, the reason in the log, nothing consumed. A single
# server consuming every partition (anomstream.partitions empty) is not affected. Fixing the
# configuration lets the worker start.
#
# (Partitions added to a live topic cannot be tested here: librdkafka 2.0.2's mock cluster
# has no CreatePartitions and refuses to create an existing topic again; see docs/ops.md.)
use strict;
use warnings;

use AnomstreamTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $broker = start_broker(partitions => 2);
is(broker_cmd($broker, 'topic memx 3'), 'ok', 'a memory topic with 3 partitions');
my ($pcsv, $mcsv) = input_csvs(generated => 1);
my $log = replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '0', '--cycles', '2', '--start-ts', '1604231589', '--seed', '1',
	'--memory-topic', 'memx');

my $node = new_node('ops_counts', $broker->{bootstrap}, q{
anomstream.topics = 'process,memx'
anomstream.partitions = '0-1'
});
ok( $node->poll_query_until('postgres', q{
		SELECT state = 'error'
		   AND last_error = 'topics "process" and "memx" have different partition counts (2 and 3)'
		  FROM anomstream.status}),
	"unequal partition counts: state 'error' with the reason");
my $log_text = slurp_file($node->logfile);
like($log_text, qr/ERROR:  topics "process" and "memx" have different partition counts \(2 and 3\)/,
	'the reason is logged');
like($log_text, qr/HINT:  Give both topics the same number of partitions/, 'with a hint');
is($node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM anomstream.positions)
		 + (SELECT count(*) FROM anomstream.process_events)
		 + (SELECT count(*) FROM anomstream.memory_events)}),
	'0', 'nothing consumed');

# One server consuming every partition does not need equal counts.
$node->safe_psql('postgres', 'ALTER SYSTEM SET anomstream.partitions = \'\'; SELECT pg_reload_conf()');
ok( $node->poll_query_until('postgres',
		"SELECT bool_and(state = 'running') AND count(*) = 5 FROM anomstream.status"),
	'without a partition list the worker consumes all 5 partitions');
my $rows = grep { !/^(#|BAD)\t/ } split /\n/, slurp_file($log);
cmp_ok($rows, '>', 0, "$rows rows replayed");
ok( $node->poll_query_until('postgres', qq{
		SELECT (SELECT count(*) FROM anomstream.process_events)
			 + (SELECT count(*) FROM anomstream.memory_events) = $rows}),
	'and the input arrives');

# Equal counts with a partition list: consumes.
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET anomstream.partitions = '0-1';
	ALTER SYSTEM SET anomstream.topics = 'process,memory';
	SELECT pg_reload_conf()});
ok( $node->poll_query_until('postgres', q{
		SELECT bool_and(state = 'running') AND count(*) = 4
		   AND bool_and(topic IN ('process', 'memory')) FROM anomstream.status}),
	'equal counts with a partition list: running on 4 partitions');

$node->stop;
stop_broker($broker);
done_testing();
