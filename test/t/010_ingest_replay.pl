# Replay real (or generated) rows through the real Kafka protocol and check that staging
# equals the input row for row, that malformed messages land in dead_letters, that an
# independent client (kcat) is consumed, and that the worker reacts to a reload.
use strict;
use warnings;

use AnomstreamTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $broker = start_broker(partitions => 4);
my ($pcsv, $mcsv) = input_csvs();

# Start idle (no brokers), then point the worker at Kafka with a reload.
my $node = new_node('ingest', '');
$node->poll_query_until('postgres',
	"SELECT state = 'idle (no brokers)' FROM anomstream.status LIMIT 1")
  or die 'worker not idle';
$node->safe_psql('postgres',
	"ALTER SYSTEM SET anomstream.brokers = '$broker->{bootstrap}'; SELECT pg_reload_conf()");
$node->poll_query_until('postgres',
	"SELECT bool_and(state = 'running') AND count(*) = 8 FROM anomstream.status")
  or die 'worker did not start consuming after reload';
pass('worker picks up anomstream.brokers on reload');

# Three replays: numbers as ts with double-encoded rows and malformed messages mixed in;
# numeric-string ts with plain-object rows; ISO-8601 ts.
my @logs;
push @logs, replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '0', '--cycles', '60', '--start-ts', '1604231589', '--seed', '1',
	'--inject-bad', '5');
push @logs, replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '0', '--cycles', '6', '--start-ts', '1604232000', '--seed', '2',
	'--ts-format', 'string', '--plain-rows');
push @logs, replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '0', '--cycles', '6', '--start-ts', '1604233000', '--seed', '3',
	'--ts-format', 'iso');
load_log($node, @logs);
my ($rows, $dead) = expected_counts($node);
cmp_ok($rows, '>', 10000, "replayed $rows rows");
cmp_ok($dead, '>', 5, "with $dead malformed messages or rows");

ok(wait_ingested($node), 'all rows and dead letters arrived');
my $cmp = compare_staging($node);
is($cmp->{$_}, '0', "staging vs input: $_") for sort keys %$cmp;

# Each kind of malformation has the dead-letter reason the spec gives it.
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM t_bad b JOIN anomstream.dead_letters d
		  ON d.topic = b.topic AND d.kafka_partition = b.kafka_partition
		 AND d.kafka_offset = b.kafka_offset
		 AND d.row_index IS NOT DISTINCT FROM NULLIF(b.row_index, -1)
		WHERE NOT CASE b.kind
			WHEN 'broken-json' THEN d.error LIKE 'invalid JSON%'
			WHEN 'missing-ts' THEN d.error = 'missing ts'
			WHEN 'data-not-array' THEN d.error = 'data is not an array'
			WHEN 'bad-pid' THEN d.error LIKE '%column "pid"'
			WHEN 'bad-unit' THEN d.error LIKE 'invalid unit value for column %'
			ELSE false END}),
	'0', 'every dead letter carries the reason of its malformation');
cmp_ok($node->safe_psql('postgres', 'SELECT count(DISTINCT kind) FROM t_bad'),
	'>=', 4, 'at least four kinds of malformation were sent');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM anomstream.dead_letters WHERE value IS NULL OR length(value) = 0"),
	'0', 'dead letters keep the raw bytes');

# An independent producer: kcat.
my $msg = '{"ts": 1604235000, "data": ["{\"sequence\": 99, \"machine\": 4, \"PID\": 424242, '
  . '\"PRI\": 100, \"CMD\": \"kcat-test\", \"Status\": \"NE\"}"]}';
my ($out, $err) = ('', '');
IPC::Run::run([ 'kcat', '-b', $broker->{bootstrap}, '-P', '-t', 'process', '-k', '4', '-p', '1' ],
	'<', \$msg, '>', \$out, '2>', \$err)
  or die "kcat failed: $err";
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM anomstream.process_events WHERE pid = 424242")
  or die 'kcat message not consumed';
is( $node->safe_psql('postgres',
		"SELECT cmd_pid || ' ' || nice || ' ' || status || ' ' || event_time FROM anomstream.process_events WHERE pid = 424242"),
	'kcat-test_424242 -20 NE 2020-11-01 12:50:00+00',
	'a message produced by kcat is decoded like ours');

# VACUUM holds SHARE UPDATE EXCLUSIVE on a table it works on; summarizing staging's BRIN
# index needs the same lock. While another session holds it, the worker (with the default
# keyed operator on, so it summarizes in every batch) keeps committing micro-batches instead
# of waiting for the lock.
cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM anomstream.keyed_operators WHERE enabled'),
	'>', 0, 'a keyed operator reads staging by batch_id');
my $vac = $node->background_psql('postgres');
$vac->query_safe('BEGIN');
$vac->query_safe('LOCK anomstream.process_events, anomstream.memory_events IN SHARE UPDATE EXCLUSIVE MODE');
$msg =~ s/424242/424243/g;
IPC::Run::run([ 'kcat', '-b', $broker->{bootstrap}, '-P', '-t', 'process', '-k', '4', '-p', '1' ],
	'<', \$msg, '>', \$out, '2>', \$err)
  or die "kcat failed: $err";
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM anomstream.process_events WHERE pid = 424243"),
	'a message is staged while another session holds the lock VACUUM takes');
$vac->query_safe('COMMIT');
$vac->quit;

# Status: every partition caught up, counts add up.
$node->poll_query_until('postgres',
	"SELECT bool_and(lag = 0 OR lag IS NULL) FROM anomstream.status")
  or die 'lag did not reach 0';
is( $node->safe_psql('postgres', q{
		SELECT sum(rows) = (SELECT count(*) FROM anomstream.process_events) +
						   (SELECT count(*) FROM anomstream.memory_events)
		   AND sum(dead_letters) = (SELECT count(*) FROM anomstream.dead_letters)
		   AND bool_and(durable_offset = next_offset OR durable_offset IS NULL)
		FROM anomstream.status}),
	't', 'status counts match the tables and positions are durable');
is( $node->safe_psql('postgres',
		"SELECT backend_type FROM pg_stat_activity WHERE backend_type LIKE 'anomstream%'"),
	'anomstream worker', 'worker visible in pg_stat_activity');

$node->stop;
stop_broker($broker);
done_testing();
