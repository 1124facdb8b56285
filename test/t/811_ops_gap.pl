# Kafka gaps (DESIGN.md §7): while the worker is paused, one process partition receives far
# more than the mock broker keeps per partition (about 5 MB), so the committed position falls
# out of Kafka's range. After resume() that partition stops with state 'gap' (and the worker
# reports 'gap'), consumes nothing more, while the memory partitions keep flowing.
# anomstream.accept_gap() records the lost range in anomstream.gaps (who, when) and the
# worker resumes at the earliest offset Kafka has: staging then holds everything the broker
# still had, exactly once, and nothing of the lost range.
use strict;
use warnings;

use AnomstreamTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $broker = start_broker(partitions => 2);
my ($pcsv, $mcsv) = input_csvs(generated => 1);
# One machine: every process message of the big replay goes to one partition.
my $one = PostgreSQL::Test::Utils::tempdir() . '/one_machine.csv';
system(tool('generate'), '--stream', 'process', '--machines', '4', '--rows', '100000',
	'--seed', '5', '-o', $one) == 0
  or die 'generate failed';

# A small consumer queue, so a paused worker does not prefetch what Kafka is about to drop.
my $node = new_node('ops_gap', $broker->{bootstrap}, q{
anomstream.kafka_options = 'queued.max.messages.kbytes=1024'
});
$node->safe_psql('postgres', 'CREATE ROLE ops LOGIN IN ROLE anomstream_admin');
$node->poll_query_until('postgres',
	"SELECT bool_and(state = 'running') AND count(*) = 4 FROM anomstream.status")
  or die 'worker not running';

sub as_ops
{
	my ($sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql",
		extra_params => [ '-U', 'ops' ]);
	return ($ret, $out, $err);
}

# Before: a little of the one machine's process rows, and both streams of normal input.
my $log0 = replay($broker->{bootstrap}, '--process', $one, '--rate', '0', '--max-rows', '500');
my $log1 = replay($broker->{bootstrap}, '--memory', $mcsv, '--speedup', '0', '--cycles', '2',
	'--start-ts', '1604231589', '--seed', '1');
load_log($node, $log0, $log1);
ok(wait_ingested($node), 'the first input is consumed');
my $gpart = $node->safe_psql('postgres', 'SELECT DISTINCT kafka_partition FROM t_exp_process');
like($gpart, qr/^\d+$/, "the one machine's process rows are all on partition $gpart");
my $durable = $node->safe_psql('postgres',
	"SELECT durable_offset FROM anomstream.positions WHERE topic = 'process' AND kafka_partition = $gpart");

# Paused, about 20 MB arrive on that partition: the mock keeps only the last ~5 MB.
as_ops('SELECT anomstream.pause()');
$node->poll_query_until('postgres', "SELECT bool_and(state = 'paused') FROM anomstream.status")
  or die 'not paused';
my $log2 = replay($broker->{bootstrap}, '--process', $one, '--rate', '0', '--max-rows', '80000');
load_log($node, $log2);
as_ops('SELECT anomstream.resume()');

ok( $node->poll_query_until('postgres', qq{
		SELECT state = 'gap' AND worker_state = 'gap' AND gap_earliest_offset > $durable
		   AND durable_offset = next_offset
		  FROM anomstream.status WHERE topic = 'process' AND kafka_partition = $gpart}),
	"the partition stops with state 'gap', the worker reports 'gap', the earliest offset is known");
my $earliest = $node->safe_psql('postgres', qq{
	SELECT gap_earliest_offset FROM anomstream.status WHERE topic = 'process' AND kafka_partition = $gpart});
is($node->safe_psql('postgres', qq{
	SELECT string_agg(state, ',' ORDER BY topic, kafka_partition) FROM anomstream.status
	 WHERE NOT (topic = 'process' AND kafka_partition = $gpart)}),
	'running,running,running', 'the other partitions are running');
my $gap_position = $node->safe_psql('postgres',
	"SELECT durable_offset FROM anomstream.positions WHERE topic = 'process' AND kafka_partition = $gpart");
my $gap_staged = $node->safe_psql('postgres',
	"SELECT count(*) FROM anomstream.process_events WHERE kafka_partition = $gpart");
note "durable $durable before the pause, $gap_position at the gap, Kafka keeps from $earliest";

# The memory partitions keep flowing during the gap.
my $log3 = replay($broker->{bootstrap}, '--memory', $mcsv, '--speedup', '0', '--cycles', '2',
	'--start-ts', '1604232000', '--seed', '2');
load_log($node, $log3);
ok( $node->poll_query_until('postgres', q{
		SELECT (SELECT count(*) FROM anomstream.memory_events) = (SELECT count(*) FROM t_exp_memory)}),
	'memory rows produced during the gap are consumed');
is($node->safe_psql('postgres',
	"SELECT durable_offset FROM anomstream.positions WHERE topic = 'process' AND kafka_partition = $gpart"),
	$gap_position, 'the gap partition position does not move');
is($node->safe_psql('postgres', "SELECT count(*) FROM anomstream.process_events WHERE kafka_partition = $gpart"),
	$gap_staged, 'nothing more is staged from the gap partition');
is($node->safe_psql('postgres', qq{
	SELECT state FROM anomstream.status WHERE topic = 'process' AND kafka_partition = $gpart}),
	'gap', 'still in gap');

# Refusals.
my ($ret, $out, $err) = as_ops("SELECT * FROM anomstream.accept_gap('memory', 0)");
like($err, qr/55000: partition memory\/0 is not stopped at a gap/, 'a partition without a gap: 55000');
($ret, $out, $err) = as_ops("SELECT * FROM anomstream.accept_gap('process', 9)");
like($err, qr/42704: partition 9 of topic "process" is not consumed by this server/,
	'an unknown partition: 42704');
as_ops("BEGIN; SELECT * FROM anomstream.accept_gap('process', $gpart); ROLLBACK;");
is($node->safe_psql('postgres', 'SELECT count(*) FROM anomstream.gaps'), '0',
	'a rolled-back accept_gap() records nothing');

# Accept the loss.
($ret, $out, $err) = as_ops("SELECT from_offset, to_offset FROM anomstream.accept_gap('process', $gpart)");
is($out, "$gap_position|" . ($earliest - 1), 'accept_gap() returns the lost range') or diag $err;
is($node->safe_psql('postgres', qq{
	SELECT topic, kafka_partition, from_offset, to_offset, lost_offsets, accepted_by, session_user_name,
		   accepted_at > now() - interval '5 minutes'
	  FROM anomstream.gaps}),
	"process|$gpart|$gap_position|" . ($earliest - 1) . '|' . ($earliest - $gap_position) . '|ops|ops|t',
	'anomstream.gaps records the range, who and when');

# The rest of the partition arrives, exactly once; nothing of the lost range.
$node->safe_psql('postgres', qq{
	DELETE FROM t_exp_process WHERE kafka_partition = $gpart
	   AND kafka_offset BETWEEN $gap_position AND $earliest - 1});
ok(wait_ingested($node), 'after accept_gap() the partition is consumed again');
ok($node->poll_query_until('postgres', "SELECT bool_and(state = 'running' AND worker_state = 'running') FROM anomstream.status"),
	"every partition and the worker are 'running' again");
my $cmp = compare_staging($node);
is($cmp->{$_}, '0', "staging vs input minus the lost range: $_") for sort keys %$cmp;
is($node->safe_psql('postgres', qq{
	SELECT count(*) FROM anomstream.process_events
	 WHERE kafka_partition = $gpart AND kafka_offset BETWEEN $gap_position AND $earliest - 1}),
	'0', 'nothing of the lost range was consumed');

# pg_dump carries the gaps (an extension configuration table).
my $dump = $node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_extension e, unnest(e.extconfig) c
	 WHERE e.extname = 'anomstream' AND c IN ('anomstream.gaps'::regclass, 'anomstream.skips'::regclass)});
is($dump, '2', 'gaps and skips are extension configuration tables');

$node->stop;
stop_broker($broker);
done_testing();
