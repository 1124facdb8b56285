# Alerts (DESIGN.md §6): a LISTENing session receives NOTIFY anomstream_detected after each
# micro-batch that added pairs and NOTIFY anomstream_window_closed after each batch (or idle
# tick) that closed windows, and nothing for the other batches. The payloads are checked
# against what the batches did (pipeline_batches, detected_attacks, potential_attacks), which
# is itself checked against the plain-SQL reference, so a wrong count cannot hide.
use strict;
use warnings;

use AnomstreamTest;
use PipelineTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep time);

my %sem = (lateness => '5s', window => '2min', new_attack_retention => '6min',
	join_bound => '30s', idle_timeout => '6s');
my $broker = start_broker(partitions => 4);
my ($pcsv, $mcsv) = generated_csvs(rows => 3000, seed => 7);
my $node = new_node('notify', $broker->{bootstrap}, pipeline_settings(%sem) . qq{
anomstream.max_batch_rows = 300
anomstream.trigger_interval = '50ms'
});

my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN anomstream_detected; LISTEN anomstream_window_closed;');

my $log = replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '50', '--cycles', '100', '--start-ts', '1604231589', '--seed', '3');
load_log($node, $log);
ok(wait_ingested($node), 'all rows arrived');

# Then process rows 1000 s later, at once: the memory partitions now hold W back until
# they are idle (idle_timeout after their last data, no message arrives), and the idle tick
# that notices it moves W and closes the windows of the first replay (batch_id 0). The
# 2 s pause puts the memory partitions' idle moment (6 s after their last data) well before
# the process partitions' (6 s after these rows), and these rows well inside the 6 s.
sleep 2;
my $log2 = replay($broker->{bootstrap}, '--process', $pcsv, '--speedup', '0', '--cycles', '2',
	'--start-ts', '1604232589', '--seed', '4');
load_log($node, $log2);
ok(wait_ingested($node), 'the late process rows arrived');

my @notes;
my $deadline = time() + 30;
while (time() < $deadline)
{
	# psql prints the notifications that arrived when it runs its next command
	my $out = $listener->query_safe('SELECT 1');
	while ($out =~ /Asynchronous notification "(\w+)" with payload "(.*?)" received/g)
	{
		push @notes, [ $1, $2 ];
	}
	my %total = (detected => 0, closed => 0, ticks => 0);
	for my $n (@notes)
	{
		$total{detected} += $1 if $n->[1] =~ /"pairs": (\d+)/;
		$total{closed} += $1 if $n->[1] =~ /"closed": (\d+)/;
		$total{ticks}++ if $n->[1] =~ /"batch_id": 0,/;
	}
	my $want = $node->safe_psql('postgres', q{
		SELECT (SELECT count(*) FROM anomstream.detected_attacks) || ' ' ||
			   (SELECT count(*) FROM anomstream.potential_attacks WHERE closed)});
	last if "$total{detected} $total{closed}" eq $want && $total{ticks} > 0;
	sleep 0.5;
}
$listener->quit;
note scalar(@notes) . " notifications";

# Every payload parses; nothing else was received.
my ($bad, $sql_rows) = (0, '');
for my $n (@notes)
{
	if ($n->[0] eq 'anomstream_detected' && $n->[1] =~ /^\{"batch_id": (\d+), "pairs": (\d+)\}$/)
	{
		$sql_rows .= "('detected', $1, $2, NULL),";
	}
	elsif ($n->[0] eq 'anomstream_window_closed'
		&& $n->[1] =~ /^\{"batch_id": (\d+), "closed": (\d+), "watermark": "([^"]+)"\}$/)
	{
		$sql_rows .= "('closed', $1, $2, '$3'),";
	}
	else
	{
		$bad++;
		diag "unexpected notification: $n->[0] $n->[1]";
	}
}
is($bad, 0, 'every payload has the documented form');
chop $sql_rows;
$node->safe_psql('postgres', qq{
	CREATE TABLE t_notes (ord serial, kind text, batch_id bigint, n bigint, watermark text);
	INSERT INTO t_notes (kind, batch_id, n, watermark) VALUES $sql_rows;});

my $q = sub { $node->safe_psql('postgres', $_[0]) };

# anomstream_detected: exactly the batches that added pairs, with their pair counts.
is( $q->(q{SELECT count(*) FROM (
		(SELECT batch_id, n FROM t_notes WHERE kind = 'detected'
		 EXCEPT ALL SELECT batch_id, pairs FROM anomstream.pipeline_batches WHERE pairs > 0)
		UNION ALL
		(SELECT batch_id, pairs FROM anomstream.pipeline_batches WHERE pairs > 0
		 EXCEPT ALL SELECT batch_id, n FROM t_notes WHERE kind = 'detected')) d}),
	'0', 'anomstream_detected once per batch that added pairs, none otherwise');
is( $q->(q{SELECT count(*) FROM t_notes t
		WHERE kind = 'detected' AND n <> (SELECT count(*) FROM anomstream.detected_attacks d
										 WHERE d.batch_id = t.batch_id)}),
	'0', "each anomstream_detected payload counts that batch's rows of detected_attacks");
is( $q->(q{SELECT sum(n) = (SELECT count(*) FROM anomstream.detected_attacks)
		FROM t_notes WHERE kind = 'detected'}),
	't', 'the pairs of all payloads add up to detected_attacks');

# anomstream_window_closed: exactly the batches that closed windows (batch_id 0: an idle
# tick), with their counts and W.
is( $q->(q{SELECT count(*) FROM (
		(SELECT batch_id, n, watermark::timestamptz FROM t_notes WHERE kind = 'closed' AND batch_id > 0
		 EXCEPT ALL SELECT batch_id, windows_closed, watermark FROM anomstream.pipeline_batches WHERE windows_closed > 0)
		UNION ALL
		(SELECT batch_id, windows_closed, watermark FROM anomstream.pipeline_batches WHERE windows_closed > 0
		 EXCEPT ALL SELECT batch_id, n, watermark::timestamptz FROM t_notes WHERE kind = 'closed' AND batch_id > 0)) d}),
	'0', 'anomstream_window_closed once per batch that closed windows, none otherwise');
is( $q->(q{SELECT sum(n) = (SELECT count(*) FROM anomstream.potential_attacks WHERE closed)
		   AND sum(n) = (SELECT windows_closed FROM anomstream.pipeline_state)
		FROM t_notes WHERE kind = 'closed'}),
	't', 'the closed counts of all payloads (batches and ticks) add up to the closed windows');
cmp_ok($q->(q{SELECT count(*) FROM t_notes WHERE kind = 'closed' AND batch_id = 0}), '>', 0,
	'idle ticks that closed windows notified too');
is( $q->(q{SELECT count(*) FROM t_notes a JOIN t_notes b ON b.ord > a.ord
		WHERE a.kind = 'closed' AND b.kind = 'closed'
		  AND b.watermark::timestamptz <= a.watermark::timestamptz}),
	'0', 'window_closed notifications arrive in commit order (W strictly increases)');
is( $q->(q{SELECT count(*) FROM t_notes a JOIN t_notes b ON b.ord > a.ord
		WHERE a.kind = 'detected' AND b.kind = 'detected' AND b.batch_id <= a.batch_id}),
	'0', 'detected notifications arrive in commit order');
cmp_ok($q->(q{SELECT count(*) FROM anomstream.pipeline_batches WHERE pairs = 0 AND windows_closed = 0}),
	'>', 0, 'there were batches without pairs or closed windows (and they sent nothing)');

# The counts the payloads were checked against are the right ones.
build_reference($node, lateness => '5s', window => '2min', retention => '6min', bound => '30s');
my $res = compare_results($node);
is($res->{$_}, '0', "results equal the reference: $_") for sort keys %$res;

$node->stop;
stop_broker($broker);
done_testing();
