# Keyed state and the pipeline watermark (DESIGN.md §5, §9):
# - TTL is measured against the pipeline watermark W (the minimum over the partitions that
#   are not idle), not against an operator's own newest event: a silent partition holds W
#   (and so every TTL) until its idle timeout fires, and then eviction happens without any
#   new micro-batch; a partition with old data holds W too; an operator evicts when W
#   moves even in a micro-batch without rows for it.
# - Late rows (listed in anomstream.late_rows) take part in nothing stateful: they neither
#   update an existing key nor create one, for built-in and user updaters, although the
#   operators' owner may not read late_rows.
use strict;
use warnings;

use AnomstreamTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $broker = start_broker(partitions => 1);
my $node = new_node('keyed_watermark', $broker->{bootstrap}, qq{
anomstream.trigger_interval = '50ms'
anomstream.lateness = '20s'
anomstream.idle_timeout = '1h'
});
my $ts0 = 1604231589;
my %produced = (process => 0, memory => 0);

sub sql { return $node->safe_psql('postgres', $_[0]); }

# One message on partition 0 of $topic at ts0 + $dt, committed before returning. Rows are
# [cmd, sequence].
sub batch
{
	my ($topic, $dt, @rows) = @_;
	my $msg = '{"ts": ' . ($ts0 + $dt) . ', "data": ['
	  . join(', ',
		map { qq({"CMD": "$_->[0]", "sequence": $_->[1], "PID": 1, "machine": 4, "MINFLT": "1K"}) }
		  @rows)
	  . "]}\n";
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'kcat', '-P', '-b', $broker->{bootstrap}, '-t', $topic, '-p', '0' ],
		'<', \$msg, '>', \$out, '2>', \$err)
	  or die "kcat failed: $err";
	$produced{$topic}++;
	$node->poll_query_until('postgres', qq{
		SELECT durable_offset >= $produced{$topic} FROM anomstream.positions
		WHERE topic = '$topic' AND kafka_partition = 0})
	  or die "message $produced{$topic} of $topic not committed";
}

sub keys_of
{
	my ($op) = @_;
	return sql("SELECT coalesce(string_agg(key, ',' ORDER BY key), '') FROM anomstream.keyed_state WHERE operator = '$op'");
}

sub watermark
{
	return sql("SELECT CASE WHEN watermark = '-infinity' THEN '-infinity'"
		  . " ELSE (extract(epoch FROM watermark) - $ts0)::int::text END FROM anomstream.pipeline_state");
}

# Reload a changed idle_timeout and wait until the worker applied it: the memory partition
# (which never delivers data) turns idle or not accordingly.
sub set_idle_timeout
{
	my ($value, $memory_idle) = @_;
	sql("ALTER SYSTEM SET anomstream.idle_timeout = '$value'");
	$node->reload;
	$node->poll_query_until('postgres', qq{
		SELECT idle = $memory_idle FROM anomstream.pipeline_partitions
		WHERE topic = 'memory' AND kafka_partition = 0})
	  or die "the worker did not apply idle_timeout = $value";
}

sql(q{
CREATE ROLE kadmin LOGIN IN ROLE anomstream_admin;
CREATE SCHEMA k AUTHORIZATION kadmin;
});
sql(q{
SET ROLE kadmin;
CREATE FUNCTION k.append(vs jsonb, s jsonb) RETURNS jsonb LANGUAGE sql
	AS $$ SELECT coalesce(s, '[]'::jsonb) || vs $$;
SELECT anomstream.keyed_create('ttl', 'anomstream.process_events', 'cmd', 'sequence',
	builtin => 'capped_list', filter => 'cmd LIKE ''t%''', ttl => '60 seconds');
SELECT anomstream.keyed_create('late_c', 'anomstream.process_events', 'cmd', 'sequence',
	builtin => 'capped_list', filter => 'cmd LIKE ''x%''');
SELECT anomstream.keyed_create('late_sql', 'anomstream.process_events', 'cmd', 'sequence',
	updater => 'k.append(jsonb,jsonb)', filter => 'cmd LIKE ''x%''');
});

# 1. The memory partition never delivered data and is not idle: W stays -infinity, so no
# TTL fires, although the operator's own newest event (85 s) minus lateness and ttl would
# put ta (0 s) behind the cutoff.
batch('process', 0, [ 'ta', 1 ]);
batch('process', 10, [ 'tb', 1 ]);
batch('process', 85, [ 'tc', 1 ]);
is(watermark(), '-infinity', 'a silent partition holds the pipeline watermark');
is(keys_of('ttl'), 'ta,tb,tc', 'no TTL eviction while W is held');

# 2. The silent partition's idle timeout fires: W = 85 - 20 = 65 s, cutoff 5 s, and ta goes
# at that moment, in the tick that moved W, with no micro-batch.
my $batches = sql('SELECT batches FROM anomstream.pipeline_state');
set_idle_timeout('1s', 'true');
$node->poll_query_until('postgres',
	"SELECT string_agg(key, ',' ORDER BY key) = 'tb,tc' FROM anomstream.keyed_state WHERE operator = 'ttl'")
  or die 'ta was not evicted when the watermark moved';
is(keys_of('ttl'), 'tb,tc', 'TTL evicts once the idle timeout releases W');
is(sql('SELECT batches FROM anomstream.pipeline_state'), $batches, 'without a micro-batch');
is(watermark(), '65', 'W = newest event of the active partition - lateness');
is(sql("SELECT evicted_ttl, keys, (extract(epoch FROM ttl_cutoff) - $ts0)::int FROM anomstream.keyed_status WHERE operator = 'ttl'"),
	'1|2|5', 'status: eviction, keys, the cutoff W - ttl');

# 3. The memory partition is not idle again (long timeout): with no data it holds W at 65 s
# while process moves on; then its data (70 s, W_memory = 50 s) holds W too.
set_idle_timeout('1h', 'false');
batch('process', 95, [ 'tc', 2 ]);
batch('memory', 70, [ 'java', 1 ]);
batch('process', 100, [ 'tc', 3 ]);
is(watermark(), '65', 'W is the minimum over the partitions: it waits for memory');
is(keys_of('ttl'), 'tb,tc', 'a key is kept while W has not passed it (own newest event - lateness would have)');
# memory advances to 95 s: W = min(100, 95) - 20 = 75 s, cutoff 15 s. The micro-batch has
# no process rows; the process operator still evicts.
batch('memory', 95, [ 'java', 2 ]);
is(watermark(), '75', 'W follows the slower partition');
is(keys_of('ttl'), 'tc', 'an operator evicts when W moves, also in a micro-batch without its rows');

# 4. Late rows. The operators' owner may not read late_rows; the worker excludes them.
my ($ret, $out, $err) = $node->psql('postgres', 'SET ROLE kadmin; SELECT count(*) FROM anomstream.late_rows');
like($err, qr/permission denied/, 'the operator owner may not read late_rows');
batch('process', 200, [ 'xa', 1 ]);
batch('process', 150, [ 'xa', 2 ], [ 'xb', 1 ]);	# behind W_p = 200 - 20: late
batch('process', 201, [ 'xa', 3 ]);
is(sql("SELECT count(*) FROM anomstream.late_rows WHERE topic = 'process' AND reason = 'partition_watermark'"),
	'2', 'the pipeline listed both rows of the old message as late');
for my $op ('late_c', 'late_sql')
{
	is(sql("SELECT state FROM anomstream.keyed_state WHERE operator = '$op' AND key = 'xa'"),
		'[1, 3]', "$op: a late row does not update a key's state");
	is(keys_of($op), 'xa', "$op: a late row does not create a key");
}
is(sql("SELECT sum(updates) FROM anomstream.keyed_status WHERE operator IN ('late_c', 'late_sql')"),
	'4', 'updaters were called only for the batches with non-late rows');
is(sql('SELECT count(*) FROM anomstream.keyed_status WHERE last_error IS NOT NULL'), '0',
	'no operator errors');

$node->stop;
stop_broker($broker);
done_testing();
