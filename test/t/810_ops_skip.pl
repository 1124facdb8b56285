# anomstream.skip() (DESIGN.md §7, §10): a poison message makes every micro-batch fail (a
# CHECK constraint on staging that one row of one message violates); the worker retries with
# backoff, status shows 'error' with the message and the partition's position does not move
# past it. An administrator skips it: the raw message becomes a dead letter naming who
# skipped it, and everything else arrives exactly once. skip() refuses unknown topics and
# partitions, offsets the worker already passed, and callers who are not administrators.
use strict;
use warnings;

use AnomstreamTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes;

my $broker = start_broker(partitions => 2);
my ($pcsv, $mcsv) = input_csvs();
my $node = new_node('ops_skip', $broker->{bootstrap});
$node->safe_psql('postgres', q{
	CREATE ROLE ops LOGIN IN ROLE anomstream_admin;
	CREATE ROLE watcher LOGIN IN ROLE anomstream_reader});
$node->poll_query_until('postgres',
	"SELECT bool_and(state = 'running') AND count(*) = 4 FROM anomstream.status")
  or die 'worker not running';

# Poll for at most a minute (a failure should not cost the default three minutes).
sub poll
{
	my ($sql) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = 60;
	return $node->poll_query_until('postgres', $sql);
}

sub as_ops
{
	my ($sql, $user) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql",
		extra_params => [ '-U', $user // 'ops' ]);
	return ($ret, $out, $err);
}

my $log1 = replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '0', '--cycles', '3', '--start-ts', '1604231589', '--seed', '1');
load_log($node, $log1);
ok(wait_ingested($node), 'first replay consumed');

# Hold the worker while the next messages arrive, so the poison is in place before it reads.
as_ops('SELECT anomstream.pause()');
$node->poll_query_until('postgres', "SELECT bool_and(state = 'paused') FROM anomstream.status")
  or die 'not paused';
my $log2 = replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '0', '--cycles', '3', '--start-ts', '1604232000', '--seed', '2',
	'--inject-bad', '3');
load_log($node, $log2);

# The poison: a process message the worker has not read yet, one of whose rows is invalid
# (the replayer's bad-pid), on a partition it has read before (so it has a durable position).
# Its row-level dead letter violates a CHECK constraint, so every micro-batch holding it
# fails. (Staging rows are inserted through the COPY path, which checks no constraints, so
# the constraint is on dead_letters.)
my ($ppart, $poff, $pbadrow) = split /\|/, $node->safe_psql('postgres', q{
	SELECT b.kafka_partition, b.kafka_offset, b.row_index
	  FROM t_bad b
	  JOIN anomstream.positions p ON p.topic = b.topic AND p.kafka_partition = b.kafka_partition
	 WHERE b.topic = 'process' AND b.kind = 'bad-pid' AND b.kafka_offset >= p.durable_offset
	 ORDER BY 2 DESC, 1 LIMIT 1});
ok(defined $poff, "poison message: process/$ppart offset $poff (row $pbadrow invalid)");
my $prows = 1 + $node->safe_psql('postgres',
	"SELECT count(*) FROM t_exp_process WHERE kafka_partition = $ppart AND kafka_offset = $poff");
my $durable_before = $node->safe_psql('postgres',
	"SELECT durable_offset FROM anomstream.positions WHERE topic = 'process' AND kafka_partition = $ppart");
$node->safe_psql('postgres', qq{
	ALTER TABLE anomstream.dead_letters ADD CONSTRAINT ops_poison
		CHECK (NOT (topic = 'process' AND kafka_partition = $ppart AND kafka_offset = $poff
					AND row_index IS NOT NULL))});

my $log_offset = -s $node->logfile;
as_ops('SELECT anomstream.resume()');
ok( poll(q{SELECT bool_and(state = 'error' AND last_error LIKE '%ops_poison%') FROM anomstream.status}),
	"every micro-batch with the poison fails: state 'error' with the message");

# The worker retries (backoff 1 s, 2 s, ...), and the position never passes the poison.
my $retried = 0;
for (1 .. 300)
{
	my @errors = slurp_file($node->logfile, $log_offset) =~ /violates check constraint "ops_poison"/g;
	if (@errors >= 3) { $retried = 1; last; }
	Time::HiRes::sleep(0.1);
}
ok($retried, 'the worker retried the failing micro-batch several times');
cmp_ok($node->safe_psql('postgres',
	"SELECT durable_offset FROM anomstream.positions WHERE topic = 'process' AND kafka_partition = $ppart"),
	'<=', $poff, 'the position did not move past the poison message');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM anomstream.process_events WHERE kafka_partition = $ppart AND kafka_offset = $poff"),
	'0', 'nothing of the poison message is staged');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM anomstream.dead_letters WHERE topic = 'process' AND kafka_partition = $ppart AND kafka_offset = $poff"),
	'0', 'nor dead-lettered');

# Refusals, each with its SQLSTATE.
my ($ret, $out, $err) = as_ops("SELECT anomstream.skip('nope', 0, 1)");
like($err, qr/42704: topic "nope" is not consumed by anomstream/, 'unknown topic: 42704');
($ret, $out, $err) = as_ops("SELECT anomstream.skip('process', 7, 1)");
like($err, qr/42704: partition 7 of topic "process" is not consumed by this server/,
	'unknown partition: 42704');
($ret, $out, $err) = as_ops("SELECT anomstream.skip('process', $ppart, 0)");
like($err, qr/55000: offset 0 of partition process\/$ppart was already processed/,
	'an offset the worker already passed: 55000');
($ret, $out, $err) = as_ops("SELECT anomstream.skip('process', $ppart, -1)");
like($err, qr/22023: invalid Kafka position/, 'a negative offset: 22023');
($ret, $out, $err) = as_ops("SELECT anomstream.skip('process', $ppart, $poff)", 'watcher');
like($err, qr/42501: permission denied for function skip/, 'the reader may not skip');
as_ops("BEGIN; SELECT anomstream.skip('process', $ppart, $poff); ROLLBACK;");
is($node->safe_psql('postgres', 'SELECT count(*) FROM anomstream.skips'), '0',
	'a rolled-back skip() records nothing');

# Skip it.
($ret, $out, $err) = as_ops("SELECT anomstream.skip('process', $ppart, $poff)");
is($out, 't', 'skip() as an administrator') or diag $err;
($ret, $out, $err) = as_ops("SELECT anomstream.skip('process', $ppart, $poff)");
is($out, 'f', 'a second skip() of the same message says false');
like($err, qr/already being skipped/, 'with a notice');

# Everything else arrives exactly once; the poison message is one whole-message dead letter.
$node->safe_psql('postgres', qq{
	DELETE FROM t_exp_process WHERE kafka_partition = $ppart AND kafka_offset = $poff;
	DELETE FROM t_bad WHERE topic = 'process' AND kafka_partition = $ppart AND kafka_offset = $poff;
	INSERT INTO t_bad VALUES ('process', $ppart, $poff, 'skipped', -1)});
ok(wait_ingested($node, 60), 'after skip() the backlog is consumed');
ok($node->poll_query_until('postgres', "SELECT bool_and(state = 'running') FROM anomstream.status"),
	"state 'running' again");
my $cmp = compare_staging($node);
is($cmp->{$_}, '0', "staging and dead letters vs input after the skip: $_") for sort keys %$cmp;

my $dl = $node->safe_psql('postgres', qq{
	SELECT row_index IS NULL,
		   json_array_length(convert_from(value, 'UTF8')::json -> 'data'),
		   error ~ '^skipped by anomstream\\.skip\\(\\): requested by ops \\(session user ops\\) at ',
		   received_at > now() - interval '5 minutes'
	  FROM anomstream.dead_letters
	 WHERE topic = 'process' AND kafka_partition = $ppart AND kafka_offset = $poff});
is($dl, "t|$prows|t|t",
	'the dead letter holds the raw message (all its rows) and says who skipped it and when');
is($node->safe_psql('postgres', q{
	SELECT requested_by || ' ' || session_user_name || ' ' || (applied_at IS NOT NULL) || ' ' || (batch_id IS NOT NULL)
	  FROM anomstream.skips}), 'ops ops true true', 'the skip is marked applied in its micro-batch');
is($node->safe_psql('postgres', 'SELECT count(*) FROM anomstream.skips', extra_params => [ '-U', 'watcher' ]),
	'1', 'the reader may read who skipped what');

# A skip of a message that has not arrived yet is applied when it arrives.
my $next = $node->safe_psql('postgres', "SELECT max(kafka_offset) + 1 FROM t_exp_process WHERE kafka_partition = $ppart");
($ret, $out, $err) = as_ops("SELECT anomstream.skip('process', $ppart, $next)");
is($out, 't', "skip() of a future offset ($next)");
my $log3 = replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '0', '--cycles', '2', '--start-ts', '1604233000', '--seed', '3');
load_log($node, $log3);
my $nrows = $node->safe_psql('postgres',
	"SELECT count(*) FROM t_exp_process WHERE kafka_partition = $ppart AND kafka_offset = $next");
cmp_ok($nrows, '>', 0, 'the replayer wrote that offset');
$node->safe_psql('postgres', qq{
	DELETE FROM t_exp_process WHERE kafka_partition = $ppart AND kafka_offset = $next;
	INSERT INTO t_bad VALUES ('process', $ppart, $next, 'skipped', -1)});
ok(wait_ingested($node, 60), 'the third replay is consumed');
$cmp = compare_staging($node);
is($cmp->{$_}, '0', "staging and dead letters vs input with a skip ahead: $_") for sort keys %$cmp;

# A skip() that commits while the micro-batch holding that message waits for the position row
# skip() locked: the batch aborts and is retried with the message skipped.
my $race = $node->safe_psql('postgres',
	"SELECT max(kafka_offset) + 1 FROM t_exp_process WHERE kafka_partition = $ppart");
my $bg = $node->background_psql('postgres', extra_params => [ '-U', 'ops' ]);
$bg->query_safe('BEGIN');
$bg->query_safe("SELECT anomstream.skip('process', $ppart, $race)");
$log_offset = -s $node->logfile;
my $log4 = replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '0', '--cycles', '2', '--start-ts', '1604234000', '--seed', '4');
load_log($node, $log4);
ok( poll(q{SELECT count(*) = 1 FROM pg_stat_activity
			WHERE backend_type = 'anomstream worker' AND wait_event_type = 'Lock'}),
	'the micro-batch holding the message waits for the row lock of the uncommitted skip()');
$bg->query_safe('COMMIT');
$bg->quit;
$node->safe_psql('postgres', qq{
	DELETE FROM t_exp_process WHERE kafka_partition = $ppart AND kafka_offset = $race;
	DELETE FROM t_bad WHERE topic = 'process' AND kafka_partition = $ppart AND kafka_offset = $race;
	INSERT INTO t_bad VALUES ('process', $ppart, $race, 'skipped', -1)});
ok(wait_ingested($node, 60), 'the fourth replay is consumed');
like(slurp_file($node->logfile, $log_offset),
	qr/offset $race of partition process\/$ppart was skipped while its micro-batch ran/,
	'that micro-batch was aborted and retried');
$cmp = compare_staging($node);
is($cmp->{$_}, '0', "staging and dead letters vs input after a skip during a batch: $_")
  for sort keys %$cmp;

$node->stop;
stop_broker($broker);
done_testing();
