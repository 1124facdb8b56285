# Keyed state is exactly once across crashes: node A consumes a stream while its worker is
# killed with SIGKILL and the server is stopped in immediate mode (each empties staging,
# which the worker refills from Kafka without feeding keyed state again); node B consumes the
# same topics without any crash. Final states must be equal, and the capped lists must equal
# the input computed here from what was produced.
use strict;
use warnings;

use AnomstreamTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my $broker = start_broker(partitions => 2);
my $conf = qq{
anomstream.max_batch_rows = 40
anomstream.trigger_interval = '100ms'
};
my $ts0 = 1604231589;
my %expected;	# key -> [values in order]
my %next = (0 => 0, 1 => 0);
my $per_chunk = 60;

# $n messages per partition; keys live in one partition (as machines do), ts grows with
# the offset, so each key's values have one order whatever the micro-batches.
sub produce_chunk
{
	for my $p (0, 1)
	{
		my $msgs = '';
		for (1 .. $per_chunk)
		{
			my $i = $next{$p}++;
			my @rows;
			for my $r (0 .. 4)
			{
				my $seq = $i * 5 + $r;
				my $key = "p${p}_k" . (($i * 5 + $r) % 7);
				my $pid = int(rand(1000));
				push @rows, qq({"CMD": "$key", "sequence": $seq, "PID": $pid, "machine": 4});
				push @{ $expected{$key} }, $seq;
			}
			$msgs .= '{"ts": ' . ($ts0 + $i) . ', "data": [' . join(', ', @rows) . "]}\n";
		}
		my ($out, $err) = ('', '');
		IPC::Run::run([ 'kcat', '-P', '-b', $broker->{bootstrap}, '-t', 'process', '-p', $p ],
			'<', \$msgs, '>', \$out, '2>', \$err)
		  or die "kcat failed: $err";
	}
}

sub setup_operators
{
	my ($node) = @_;
	$node->safe_psql('postgres', q{
CREATE FUNCTION append(vs jsonb, s jsonb) RETURNS jsonb LANGUAGE sql
	AS $$ SELECT coalesce(s, '[]'::jsonb) || vs $$;
SELECT anomstream.keyed_create('list_sql', 'anomstream.process_events', key => 'cmd',
	value => 'sequence', updater => 'append(jsonb,jsonb)');
SELECT anomstream.keyed_create('list_c', 'anomstream.process_events', key => 'cmd',
	value => 'sequence', builtin => 'capped_list', builtin_arg => 100000);
SELECT anomstream.keyed_create('deriv_c', 'anomstream.process_events', key => 'cmd',
	value => 'jsonb_build_object(''x'', sequence, ''y'', pid)', builtin => 'derivative',
	builtin_arg => 5);
});
}

sub all_committed
{
	my ($node) = @_;
	my $total = $next{0} + $next{1};
	local $PostgreSQL::Test::Utils::timeout_default = 120;
	return $node->poll_query_until('postgres', qq{
		SELECT coalesce(sum(durable_offset), 0) >= $total FROM anomstream.positions
		WHERE topic = 'process'});
}

sub states
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT operator, key, state FROM anomstream.keyed_state WHERE operator <> 'minflt_growth' ORDER BY 1, 2");
}

my $a = new_node('keyed_crash_a', $broker->{bootstrap}, $conf);
setup_operators($a);

my $crashes = 0;
produce_chunk();
sleep 0.5;
kill_worker($a);
$crashes++;
produce_chunk();
sleep 0.3;
$a->stop('immediate');
$a->start;
$crashes++;
produce_chunk();
sleep 0.4;
kill_worker($a);
$crashes++;
produce_chunk();
ok(all_committed($a), "node A took all input through $crashes crashes");
my $refills = () = slurp_file($a->logfile) =~ /refilling it from Kafka/g;
cmp_ok($refills, '>=', $crashes, 'staging was refilled after every crash');
my $sa = states($a);
$a->stop;

# B's worker stays idle until its operators exist (the input is already in Kafka).
my $b = new_node('keyed_crash_b', '', $conf);
setup_operators($b);
$b->safe_psql('postgres', qq{ALTER SYSTEM SET anomstream.brokers = '$broker->{bootstrap}'});
$b->reload;
ok(all_committed($b), 'node B took all input');
my $sb = states($b);
$b->stop;

is($sa, $sb, 'same final keyed state with and without crashes');
my $nkeys = keys %expected;
is(scalar(() = $sa =~ /^list_c\|/mg), $nkeys, "all $nkeys keys present");
my $mismatch = 0;
for my $key (sort keys %expected)
{
	my $want = '[' . join(', ', @{ $expected{$key} }) . ']';
	for my $op ('list_c', 'list_sql')
	{
		my ($got) = $sa =~ /^$op\|$key\|(.*)$/m;
		if (!defined $got || $got ne $want)
		{
			$mismatch++;
			diag("$op $key: got " . ($got // 'nothing') . ", want $want");
		}
	}
}
is($mismatch, 0, 'every value exactly once, in order, in the capped list and the SQL list');
like($sa, qr/^deriv_c\|p0_k0\|\{"d": \[[^\]]*\], "lv": \{"x": \d+, "y": \d+\}\}$/m,
	'derivative state present');

stop_broker($broker);
done_testing();
