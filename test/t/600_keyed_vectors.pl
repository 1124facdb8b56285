# Keyed state through the worker: the two test vectors of the updateStateByKey write-up
# (DESIGN.md §9), each input batch its own micro-batch (one Kafka message, wait until it is
# committed, check the state, then the next), through SQL/PL/pgSQL updaters and through the
# built-in C operators. Operators belong to a non-superuser member of anomstream_admin and
# run as that role.
use strict;
use warnings;

use AnomstreamTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use File::Basename qw(dirname);

my $broker = start_broker(partitions => 1);
my $node = new_node('keyed_vectors', $broker->{bootstrap}, qq{
anomstream.trigger_interval = '50ms'
});
my $ts0 = 1604231589;
my $produced = 0;
my $tshift = 0;	# event times move on past the out-of-order messages below (no late rows)

# Messages (one a line) on partition 0 of topic process.
sub produce
{
	my ($msgs) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'kcat', '-P', '-b', $broker->{bootstrap}, '-t', 'process', '-p', '0' ],
		'<', \"$msgs\n", '>', \$out, '2>', \$err)
	  or die "kcat failed: $err";
}

# One message on topic process, then wait until the worker committed it.
sub micro_batch
{
	my (@rows) = @_;
	my $msg = '{"ts": ' . ($ts0 + $tshift + $produced) . ', "data": [' . join(', ', @rows) . ']}';
	produce($msg);
	$produced++;
	$node->poll_query_until('postgres', qq{
		SELECT durable_offset >= $produced FROM anomstream.positions
		WHERE topic = 'process' AND kafka_partition = 0})
	  or die "message $produced not committed";
}

sub state_of
{
	my ($op, $key) = @_;
	return $node->safe_psql('postgres',
		"SELECT state FROM anomstream.keyed_state WHERE operator = '$op' AND key = '$key'");
}

$node->safe_psql('postgres', q{
CREATE ROLE kadmin LOGIN IN ROLE anomstream_admin;
CREATE SCHEMA k AUTHORIZATION kadmin;
});
# Everything below is done by the operator owner, a non-superuser. k.deriv: the write-up's
# derivative as a PL/pgSQL updater.
$node->safe_psql('postgres', "SET ROLE kadmin; SET search_path = k;\n"
	  . slurp_file(dirname(__FILE__) . '/../keyed/deriv_updater.sql'));
$node->safe_psql('postgres', q{
SET ROLE kadmin;
-- the write-up's first updater: extend the state by the new values
CREATE FUNCTION k.append(vs jsonb, s jsonb) RETURNS jsonb LANGUAGE sql
	AS $$ SELECT coalesce(s, '[]'::jsonb) || vs $$;
-- NULL deletes the key: forget everything when a 6 arrives
CREATE FUNCTION k.forget6(vs jsonb, s jsonb) RETURNS jsonb LANGUAGE sql
	AS $$ SELECT CASE WHEN vs @> '[6]' THEN NULL ELSE coalesce(s, '[]'::jsonb) || vs END $$;
SELECT anomstream.keyed_create('forget', 'anomstream.process_events', key => 'cmd',
	value => 'sequence', filter => 'cmd = ''k''', updater => 'k.forget6(jsonb,jsonb)');
-- records who runs it
CREATE FUNCTION k.whoami(vs jsonb, s jsonb) RETURNS jsonb LANGUAGE sql
	AS $$ SELECT to_jsonb(current_user::text) $$;
SELECT anomstream.keyed_create('list_sql', 'anomstream.process_events', key => 'cmd',
	value => 'sequence', filter => 'cmd = ''k''', updater => 'k.append(jsonb,jsonb)');
SELECT anomstream.keyed_create('list_c', 'anomstream.process_events', key => 'cmd',
	value => 'sequence', filter => 'cmd = ''k''', builtin => 'capped_list');
SELECT anomstream.keyed_create('deriv_sql', 'anomstream.process_events', key => 'cmd',
	value => 'jsonb_build_object(''x'', pid, ''y'', sequence)', filter => 'cmd = ''d''',
	updater => 'k.deriv(jsonb,jsonb)');
SELECT anomstream.keyed_create('deriv_c', 'anomstream.process_events', key => 'cmd',
	value => 'jsonb_build_object(''x'', pid, ''y'', sequence)', filter => 'cmd = ''d''',
	builtin => 'derivative');
SELECT anomstream.keyed_create('who', 'anomstream.process_events', key => 'cmd || ''/'' || current_user',
	value => 'sequence', updater => 'k.whoami(jsonb,jsonb)');
});

# Vector 1: [('k',0)] ... [('k',4)] give [0], [0,1], ..., [0,1,2,3,4].
my @expected = ('[0]', '[0, 1]', '[0, 1, 2]', '[0, 1, 2, 3]', '[0, 1, 2, 3, 4]');
for my $i (0 .. 4)
{
	micro_batch(qq({"CMD": "k", "sequence": $i, "PID": 1, "machine": 4}));
	is(state_of('list_sql', 'k'), $expected[$i], "SQL updater, micro-batch $i");
	is(state_of('list_c', 'k'), $expected[$i], "built-in capped list, micro-batch $i");
}

# Vector 2: {'x':2,'y':1}, {'x':3,'y':2}, {'x':5,'y':3}.
my @points = ([ 2, 1 ], [ 3, 2 ], [ 5, 3 ]);
my @dexp = (
	'{"d": [], "lv": {"x": 2, "y": 1}}',
	'{"d": [1.0], "lv": {"x": 3, "y": 2}}',
	'{"d": [1.0, 0.5], "lv": {"x": 5, "y": 3}}');
for my $i (0 .. 2)
{
	my ($x, $y) = @{ $points[$i] };
	micro_batch(qq({"CMD": "d", "sequence": $y, "PID": $x, "machine": 4}));
	# PL/pgSQL's float8 -> jsonb prints 1.0 as 1: compare as jsonb values
	is( $node->safe_psql('postgres',
			"SELECT state = '$dexp[$i]'::jsonb FROM anomstream.keyed_state WHERE operator = 'deriv_sql'"),
		't', "PL/pgSQL derivative updater, micro-batch $i");
	# the built-in prints exactly as the write-up does
	is(state_of('deriv_c', 'd'), $dexp[$i], "built-in derivative, micro-batch $i");
}

# Several values of one key in one micro-batch reach the updater in event-time order
# (then offset and row_index), whatever their order in the message.
micro_batch(
	qq({"CMD": "o", "sequence": 2, "PID": 1}),
	qq({"CMD": "o", "sequence": 1, "PID": 1}));
$node->safe_psql('postgres', q{
SET ROLE kadmin;
SELECT anomstream.keyed_create('order_c', 'anomstream.process_events', key => 'cmd',
	value => 'sequence', filter => 'cmd = ''o''', builtin => 'capped_list');
});
# Both messages wait in Kafka while the server is down, so the restarted worker normally
# reads them in one micro-batch; the expectation follows the batches it actually made.
$node->stop;
my $late = '{"ts": ' . ($ts0 + 100) . ', "data": [{"CMD": "o", "sequence": 30}, {"CMD": "o", "sequence": 31}]}';
# (90 s is not late: within anomstream.lateness of 100 s.)
my $early = '{"ts": ' . ($ts0 + 90) . ', "data": [{"CMD": "o", "sequence": 20}]}';
produce("$late\n$early");
$produced += 2;
$node->start;
$node->poll_query_until('postgres', qq{
	SELECT durable_offset >= $produced FROM anomstream.positions WHERE topic = 'process'})
  or die 'not committed';
my $same = $node->safe_psql('postgres',
	"SELECT count(DISTINCT batch_id) = 1 FROM anomstream.process_events WHERE sequence >= 20 AND cmd = 'o'");
note "both messages in one micro-batch: $same";
# the operator was created after the first 'o' batch: it only saw later ones
is(state_of('order_c', 'o'), $same eq 't' ? '[20, 30, 31]' : '[30, 31, 20]',
	'values reach the updater in event-time order within a micro-batch, batch after batch');
$tshift = 200;

# Updaters ran as the operator's owner.
is(state_of('who', 'k/kadmin'), '"kadmin"', 'expressions and updater run as the operator owner');
is($node->safe_psql('postgres',
		"SELECT string_agg(operator || '=' || keys, ',' ORDER BY operator) FROM anomstream.keyed_status WHERE operator <> 'minflt_growth'"),
	'deriv_c=1,deriv_sql=1,forget=1,list_c=1,list_sql=1,order_c=1,who=3', 'key counts in the status view');
is($node->safe_psql('postgres', "SELECT count(*) FROM anomstream.keyed_status WHERE last_error IS NOT NULL"),
	'0', 'no operator errors');

# Expressions cannot smuggle in a second statement: keyed_create refuses, and a row written
# directly (admins may) is stopped by the worker before anything runs.
my ($ret, $o, $e) = $node->psql('postgres', q{
SET ROLE kadmin;
SELECT anomstream.keyed_create('smuggle', 'anomstream.process_events', key => 'cmd',
	value => 'sequence', filter => 'true); DELETE FROM anomstream.keyed_state_data; SELECT (1',
	builtin => 'capped_list');
});
like($e, qr/must be single expressions/, 'keyed_create refuses an expression with a second statement');
$node->safe_psql('postgres', q{
SET ROLE kadmin;
INSERT INTO anomstream.keyed_operators (name, owner, source, key_expr, value_expr, builtin, filter)
VALUES ('smuggle', 0, 'anomstream.process_events', 'cmd', 'sequence', 'capped_list',
	'true); DELETE FROM anomstream.keyed_state_data; SELECT (1');
});
micro_batch(qq({"CMD": "k", "sequence": 100, "PID": 1}));
like($node->safe_psql('postgres', "SELECT enabled, last_error FROM anomstream.keyed_status WHERE operator = 'smuggle'"),
	qr/^f\|.*not single expressions/, 'an operator with a second statement in an expression is stopped');
is(state_of('list_c', 'k'), '[0, 1, 2, 3, 4, 100]', 'and nothing else was touched');
$node->safe_psql('postgres', q{SET ROLE kadmin; SELECT anomstream.keyed_drop('smuggle')});

# A failing updater stops only its operator; the batch and the other operators go on.
$node->safe_psql('postgres', q{
SET ROLE kadmin;
CREATE FUNCTION k.boom(vs jsonb, s jsonb) RETURNS jsonb LANGUAGE sql
	AS $$ SELECT (1 / (vs ->> 0)::int)::text::jsonb $$;
SELECT anomstream.keyed_create('boom', 'anomstream.process_events', key => 'cmd',
	value => 'sequence', filter => 'cmd = ''k''', updater => 'k.boom(jsonb,jsonb)');
});
micro_batch(qq({"CMD": "k", "sequence": 0, "PID": 1}));
is($node->safe_psql('postgres', "SELECT enabled, last_error FROM anomstream.keyed_status WHERE operator = 'boom'"),
	'f|division by zero', 'a failing updater stops its operator with the error');
is(state_of('list_c', 'k'), '[0, 1, 2, 3, 4, 100, 0]', 'other operators saw the same micro-batch');
micro_batch(qq({"CMD": "k", "sequence": 5, "PID": 1}));
$node->safe_psql('postgres', q{SET ROLE kadmin; SELECT anomstream.keyed_alter('boom', enabled => true)});
micro_batch(qq({"CMD": "k", "sequence": 6, "PID": 1}));
is(state_of('boom', 'k'), '0', 're-enabled operator runs again (1/6 = 0)');
is($node->safe_psql('postgres', "SELECT (SELECT count(*) FROM anomstream.keyed_state WHERE operator = 'forget') || '/' || keys FROM anomstream.keyed_status WHERE operator = 'forget'"),
	'0/0', 'an updater returning NULL deletes the key');

# Dropping an operator while streaming removes its state.
$node->safe_psql('postgres', q{SET ROLE kadmin; SELECT anomstream.keyed_drop('list_sql')});
micro_batch(qq({"CMD": "k", "sequence": 7, "PID": 1}));
is($node->safe_psql('postgres', "SELECT count(*) FROM anomstream.keyed_state WHERE operator = 'list_sql'"),
	'0', 'dropped operator has no state');
is(state_of('list_c', 'k'), '[0, 1, 2, 3, 4, 100, 0, 5, 6, 7]', 'streaming went on');
is(state_of('forget', 'k'), '[7]', 'a deleted key starts again from a NULL state');

# The default install's operator: MINFLT growth per second per process, from memory rows.
# (Stamped after the process rows: had the silent memory partition idled out meanwhile,
# W would be the process partition's, and older memory rows would be late.)
for my $m ([ 0, '1K' ], [ 5, '2K' ], [ 15, '2.5K' ])
{
	my $msg = '{"ts": ' . ($ts0 + 1000 + $m->[0]) . qq(, "data": [{"machine": 4, "PID": 7, "CMD": "java", "MINFLT": "$m->[1]"}]});
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'kcat', '-P', '-b', $broker->{bootstrap}, '-t', 'memory', '-p', '0' ],
		'<', \"$msg\n", '>', \$out, '2>', \$err)
	  or die "kcat failed: $err";
}
$node->poll_query_until('postgres',
	"SELECT durable_offset >= 3 FROM anomstream.positions WHERE topic = 'memory'")
  or die 'memory rows not committed';
is($node->safe_psql('postgres',
		'SELECT machine, cmd_pid, minflt_per_sec, last_minflt, recent_rates FROM anomstream.minflt_growth'),
	'4|java_7|50|2500|[200.0, 50.0]', 'minflt_growth: MINFLT per second between memory rows');

$node->stop;
stop_broker($broker);
done_testing();
