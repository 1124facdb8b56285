# Keyed state bounds (DESIGN.md §9): TTL in event time against the pipeline watermark W,
# the key limit under both policies, and a soak: input keeps growing while the state stays
# flat. The memory topic stays silent and idles out at once (idle_timeout 0), so W is the
# process partition's newest event_time minus lateness (test 603 covers a W held by
# another partition).
use strict;
use warnings;

use AnomstreamTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $broker = start_broker(partitions => 1);
my $node = new_node('keyed_bounds', $broker->{bootstrap}, qq{
anomstream.trigger_interval = '50ms'
anomstream.lateness = '20s'
anomstream.idle_timeout = 0
});
my $ts0 = 1604231589;
my $produced = 0;

# One message (rows given as [cmd, sequence]) at ts0 + $dt, committed before returning.
sub batch
{
	my ($dt, @rows) = @_;
	my $msg = '{"ts": ' . ($ts0 + $dt) . ', "data": ['
	  . join(', ', map { qq({"CMD": "$_->[0]", "sequence": $_->[1], "PID": 1}) } @rows) . "]}\n";
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'kcat', '-P', '-b', $broker->{bootstrap}, '-t', 'process', '-p', '0' ],
		'<', \$msg, '>', \$out, '2>', \$err)
	  or die "kcat failed: $err";
	$produced++;
	$node->poll_query_until('postgres', qq{
		SELECT durable_offset >= $produced FROM anomstream.positions WHERE topic = 'process'})
	  or die "message $produced not committed";
}

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub keys_of
{
	my ($op) = @_;
	return sql("SELECT string_agg(key, ',' ORDER BY key) FROM anomstream.keyed_state WHERE operator = '$op'");
}

sql(q{
SELECT anomstream.keyed_create('ttl', 'anomstream.process_events', 'cmd', 'sequence',
	builtin => 'capped_list', filter => 'cmd LIKE ''t%''', ttl => '60 seconds');
SELECT anomstream.keyed_create('evict', 'anomstream.process_events', 'cmd', 'sequence',
	builtin => 'capped_list', filter => 'cmd LIKE ''l%''', max_keys => 3);
SELECT anomstream.keyed_create('skip', 'anomstream.process_events', 'cmd', 'sequence',
	builtin => 'capped_list', filter => 'cmd LIKE ''l%''', max_keys => 3, on_limit => 'skip_new');
});

$node->poll_query_until('postgres',
	"SELECT idle FROM anomstream.pipeline_partitions WHERE topic = 'memory' AND kafka_partition = 0")
  or die 'the silent memory partition did not become idle';

# TTL: W = max event_time - 20 s; a key goes when its last event_time < W - 60 s.
batch(0, [ 'ta', 1 ]);
batch(10, [ 'tb', 1 ]);
batch(85, [ 'tc', 1 ]);	# W = 65 s: cutoff 5 s, ta (0 s) is evicted, tb (10 s) stays
is(keys_of('ttl'), 'tb,tc', 'TTL evicts a key whose last event is older than W - ttl');
batch(89, [ 'tc', 2 ]);	# W = 69 s, cutoff 9 s: tb stays
is(keys_of('ttl'), 'tb,tc', 'a key at the cutoff stays');
batch(91, [ 'tc', 3 ]);	# cutoff 11 s: tb goes
is(keys_of('ttl'), 'tc', 'and goes once the watermark passes it');
is(sql("SELECT evicted_ttl, keys, watermark = to_timestamp($ts0 + 71), ttl_cutoff = to_timestamp($ts0 + 11)"
	  . " FROM anomstream.keyed_status WHERE operator = 'ttl'"),
	'2|1|t|t', 'status: evictions, keys, the pipeline watermark and the TTL cutoff');
batch(5, [ 'ta', 9 ]);	# an old event, behind the partition watermark: a late row
is(keys_of('ttl'), 'tc', 'a late row does not bring an evicted key back');

# Key limit, evict_oldest: the keys with the oldest last event_time (then key) go.
batch(100, [ 'l1', 1 ], [ 'l2', 1 ]);
batch(101, [ 'l3', 1 ]);
batch(102, [ 'l4', 1 ], [ 'l1', 2 ]);	# 4 keys: l2 has the oldest last event
is(keys_of('evict'), 'l1,l3,l4', 'evict_oldest drops the key with the oldest last event');
# skip_new: new keys beyond the limit are ignored (counted); known keys still update
is(keys_of('skip'), 'l1,l2,l3', 'skip_new keeps the first keys');
is(sql("SELECT state FROM anomstream.keyed_state WHERE operator = 'skip' AND key = 'l1'"),
	'[1, 2]', 'known keys still update at the limit');
is(sql("SELECT evicted_limit FROM anomstream.keyed_status WHERE operator = 'evict'") . '/'
	  . sql("SELECT skipped_new FROM anomstream.keyed_status WHERE operator = 'skip'"),
	'1/1', 'evictions and skipped keys are counted');
# within one micro-batch, new keys are admitted in order of their first event
sql("SELECT anomstream.keyed_alter('skip', reset_state => true)");
batch(103, [ 'l9', 1 ], [ 'l8', 1 ], [ 'l7', 1 ], [ 'l6', 1 ]);
is(keys_of('skip'), 'l7,l8,l9', 'skip_new admits new keys in order of first appearance');

# Soak: 30 micro-batches of 40 new keys each, 10 s apart in event time, TTL 30 s. The
# input grows to 1200 keys; state holds at most the keys of the last (20 + 30) / 10 + 1
# batches.
sql(q{SELECT anomstream.keyed_create('soak', 'anomstream.process_events', 'cmd', 'sequence',
	builtin => 'capped_list', filter => 'cmd LIKE ''s%''', ttl => '30 seconds')});
my @sizes;
for my $i (0 .. 29)
{
	batch(200 + 10 * $i, map { [ "s${i}_$_", $_ ] } 1 .. 40);
	push @sizes, sql("SELECT keys FROM anomstream.keyed_status WHERE operator = 'soak'");
}
note 'keys after each micro-batch: ' . join(' ', @sizes);
my $max = (sort { $b <=> $a } @sizes)[0];
cmp_ok($max, '<=', 6 * 40, 'state stays bounded while input grows');
is_deeply([ @sizes[ 10 .. 29 ] ], [ ($sizes[10]) x 20 ], 'state size flat in steady state');
is(sql("SELECT count(*) FROM anomstream.keyed_state WHERE operator = 'soak'"), $sizes[-1],
	'the status key count matches the state table');
is(sql("SELECT sum(evicted_ttl) + max(keys) FROM anomstream.keyed_status WHERE operator = 'soak'"),
	'1200', 'every key was held, then evicted or still held');

$node->stop;
stop_broker($broker);
done_testing();
