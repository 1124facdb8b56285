# anomstream.pause()/resume() (DESIGN.md §10): a paused worker consumes nothing, stays paused
# across a restart, and resumes where it stopped; a rolled-back pause() changes nothing. Also:
# the worker applies retention on its own.
use strict;
use warnings;

use AnomstreamTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $broker = start_broker(partitions => 2);
my ($pcsv, $mcsv) = input_csvs();
my $node = new_node('ops_pause', $broker->{bootstrap});
$node->safe_psql('postgres', 'CREATE ROLE ops LOGIN IN ROLE anomstream_admin');
$node->poll_query_until('postgres',
	"SELECT bool_and(state = 'running') AND count(*) = 4 FROM anomstream.status")
  or die 'worker not running';


my $log1 = replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '0', '--cycles', '3', '--start-ts', '1604231589', '--seed', '1');
load_log($node, $log1);
ok(wait_ingested($node), 'first replay consumed');
my $n1 = staged_rows($node);
cmp_ok($n1, '>', 0, "$n1 rows staged");

# A pause() that is rolled back changes nothing.
$node->safe_psql('postgres', 'BEGIN; SELECT anomstream.pause(); ROLLBACK;', extra_params => [ '-U', 'ops' ]);
is($node->safe_psql('postgres', 'SELECT count(*) FROM anomstream.control WHERE paused'), '0',
	'a rolled-back pause() leaves the flag off');

$node->safe_psql('postgres', 'SELECT anomstream.pause()', extra_params => [ '-U', 'ops' ]);
ok($node->poll_query_until('postgres', "SELECT bool_and(state = 'paused') FROM anomstream.status"),
	"after pause() the state is 'paused'");
is($node->safe_psql('postgres', 'SELECT paused_by FROM anomstream.control WHERE paused'), 'ops',
	'the control row says who paused');
my $pos1 = durable_positions($node);

my $log2 = replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '0', '--cycles', '3', '--start-ts', '1604232000', '--seed', '2');
# The worker goes around its loop (it is woken every few seconds) without consuming.
ok( $node->poll_query_until('postgres', q{
		SELECT state_since < now() - interval '6 seconds' FROM anomstream.status LIMIT 1}),
	'paused for a while with new data in Kafka');
is(staged_rows($node), $n1, 'a paused worker stages nothing');
is(durable_positions($node), $pos1, 'and moves no position');

# Paused across a restart.
$node->restart;
ok($node->poll_query_until('postgres', "SELECT bool_and(state = 'paused') FROM anomstream.status"),
	'still paused after a restart');
ok( $node->poll_query_until('postgres', q{
		SELECT state_since < now() - interval '6 seconds' FROM anomstream.status LIMIT 1}),
	'paused for a while after the restart');
is(durable_positions($node), $pos1, 'no position moved after the restart');

# Resume: everything that arrived meanwhile is consumed.
$node->safe_psql('postgres', 'SELECT anomstream.resume()', extra_params => [ '-U', 'ops' ]);
load_log($node, $log2);
ok(wait_ingested($node), 'after resume() the backlog is consumed');
ok($node->poll_query_until('postgres', "SELECT bool_and(state = 'running') FROM anomstream.status"),
	"state 'running' again");
my $cmp = compare_staging($node);
is($cmp->{$_}, '0', "staging vs input after pause, restart and resume: $_") for sort keys %$cmp;

# The worker applies retention every 10 s (late_rows: the pipeline's own retention or ours).
$node->safe_psql('postgres', q{
	DELETE FROM anomstream.late_rows;
	INSERT INTO anomstream.late_rows (topic, kafka_partition, kafka_offset, row_index, watermark,
									  reason, batch_id, recorded_at)
	VALUES ('process', 0, 1, 0, now(), 'partition_watermark', 1, now() - interval '8 days'),
		   ('process', 0, 2, 0, now(), 'partition_watermark', 1, now());
	INSERT INTO anomstream.dead_letters (topic, value, error, received_at)
		VALUES ('process', 'v', 'e', now() - interval '8 days'), ('process', 'v', 'e', now());
	INSERT INTO anomstream.potential_attacks VALUES
		('2001-01-01', '2001-01-01 00:02', 9, 1, 1, true);
	ALTER SYSTEM SET anomstream.result_retention = '30d'; SELECT pg_reload_conf()});
ok( $node->poll_query_until('postgres', q{
		SELECT (SELECT count(*) FROM anomstream.late_rows) = 1
		   AND (SELECT count(*) FROM anomstream.dead_letters WHERE received_at < now() - interval '7 days') = 0
		   AND (SELECT count(*) FROM anomstream.potential_attacks WHERE machine = 9) = 0}),
	'the worker expires late rows, dead letters and results on its own');
is($node->safe_psql('postgres', q{SELECT count(*) FROM anomstream.dead_letters WHERE received_at > now() - interval '1 hour'}),
	'1', 'and keeps the recent ones');

$node->stop;
stop_broker($broker);
done_testing();
