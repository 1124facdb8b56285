# Determinism (DESIGN.md §6): replay rows with the real producer's cadence (late memory rows
# included) and check that potential_attacks, detected_attacks and late_rows equal a
# reference computed by plain batch SQL over all input rows (PipelineTest.pm), for several
# micro-batch sizes and trigger intervals: one node consumes live while the replayer runs,
# others consume the same topics afterwards in batches of very different sizes. Done for
# generated rows (many attacks) and the real rows (when present).
use strict;
use warnings;

use AnomstreamTest;
use PipelineTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# lateness 5 s: the producer's memory rows sent one cycle (10 s) late are then late rows
my %sem = (lateness => '5s', window => '2min', new_attack_retention => '6min',
	join_bound => '30s');
my %ref = (lateness => '5s', window => '2min', retention => '6min', bound => '30s');

sub check_node
{
	my ($node, $label, $min_attacks) = @_;
	ok(wait_ingested($node), "$label: all rows arrived");
	my $cmp = compare_staging($node);
	is($cmp->{$_}, '0', "$label: staging equals input ($_)") for sort keys %$cmp;
	build_reference($node, %ref);
	my $res = compare_results($node);
	is($res->{$_}, '0', "$label: $_") for sort keys %$res;
	my ($pot, $det, $late, $behind) = result_counts($node);
	note "$label: $pot window rows, $det pairs, $late late rows";
	cmp_ok($pot, '>=', $min_attacks, "$label: windows with attacks exist");
	cmp_ok($det, '>=', $min_attacks, "$label: pairs exist");
	is($behind, '0', "$label: no row was behind the pipeline watermark");
	is(check_state_counters($node), 't', "$label: held counters equal state row counts");
	return results_digest($node);
}

sub run_input
{
	my ($label, $pcsv, $mcsv, $min_attacks, $min_late) = @_;
	my $broker = start_broker(partitions => 4);
	my $settings = pipeline_settings(%sem, idle_timeout => '3s');

	# Node A consumes live, small batches, while the replayer streams.
	my $a = new_node("live_$label", $broker->{bootstrap}, $settings . qq{
anomstream.max_batch_rows = 300
anomstream.trigger_interval = '50ms'
});
	my $log = replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
		'--speedup', '25', '--cycles', '150', '--start-ts', '1604231589', '--seed', '3');
	load_log($a, $log);
	my %digest;
	$digest{live} = check_node($a, "$label live", $min_attacks);
	cmp_ok($a->safe_psql('postgres', "SELECT count(*) FROM anomstream.late_rows"),
		'>=', $min_late, "$label: the producer's late memory rows are late rows");
	$a->stop;

	# Nodes B and C consume the backlog: tiny batches, then one huge batch per trigger.
	for my $cfg ([ 'tiny', 17, '10ms' ], [ 'huge', 100000, '2s' ])
	{
		my $n = new_node("$cfg->[0]_$label", $broker->{bootstrap}, $settings . qq{
anomstream.max_batch_rows = $cfg->[1]
anomstream.trigger_interval = '$cfg->[2]'
});
		load_log($n, $log);
		$digest{ $cfg->[0] } = check_node($n, "$label $cfg->[0] batches", $min_attacks);
		$n->stop;
	}
	is($digest{tiny}, $digest{live}, "$label: tiny batches give the same tables as live");
	is($digest{huge}, $digest{live}, "$label: huge batches give the same tables as live");
	stop_broker($broker);
}

my ($gp, $gm) = generated_csvs(rows => 3000, seed => 7);
run_input('generated', $gp, $gm, 10, 1);

my ($rp, $rm) = input_csvs();
if ($rp =~ /reconstructed/)
{
	run_input('real', $rp, $rm, 0, 1);
}
else
{
	note 'no real data: skipping the real-rows run';
}

done_testing();
