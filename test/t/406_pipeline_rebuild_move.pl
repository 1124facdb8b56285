# Moving a partition between servers is anomstream.rebuild(from) (DESIGN.md §11). Servers A
# and B split the partitions of both topics; C consumes all of them (the one-server run).
# After the first half of the input, partition p moves from A to B at time `from`: on both,
# pause (and wait for status 'paused'), change anomstream.partitions, reload, rebuild(from),
# resume. After the second half,
# the union of A's and B's results equals C's row for row, and C's equal the plain batch SQL
# reference.
use strict;
use warnings;

use AnomstreamTest;
use PipelineTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $start_ts = 1604231589;
my $settings = pipeline_settings(lateness => '5s', window => '2min',
	new_attack_retention => '6min', join_bound => '30s', idle_timeout => '10min') . qq{
anomstream.max_batch_rows = 500
anomstream.trigger_interval = '50ms'
anomstream.max_future = '10s'
};
my $broker = start_broker(partitions => 4);
my ($pcsv, $mcsv) = generated_csvs(rows => 3000, seed => 7);

my $c = new_node('all', $broker->{bootstrap}, $settings);
my $log1 = replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '0', '--cycles', '100', '--start-ts', $start_ts, '--seed', '3',
	'--kafka-timestamp', 'event');

# every assigned partition taken over up to its end (with data past $ts, if given). No
# partition becomes idle here (idle_timeout 10min): an idle timeout makes rows behind the
# pipeline watermark, which depends on timing and would differ between the servers.
sub settled
{
	my ($node, $ts) = @_;
	my $past = defined $ts
	  ? "(SELECT max(max_event_time) FROM anomstream.pipeline_partitions) >= to_timestamp($ts)"
	  : 'true';
	return $node->poll_query_until('postgres', qq{
		SELECT bool_and(COALESCE(durable_offset, 0) >= high_watermark) AND $past
		  FROM anomstream.status});
}
ok(settled($c, $start_ts + 400), 'C read the first half');
my @with_data = split /\n/, $c->safe_psql('postgres',
	'SELECT DISTINCT kafka_partition FROM anomstream.process_events ORDER BY 1');
if (@with_data < 2)
{
	plan skip_all => 'the generated machines landed in fewer than two partitions';
}
my $moved = $with_data[0];
my $a_parts = "$with_data[0],$with_data[1]";
my $a_after = $with_data[1];
my $b_parts = join(',', grep { $_ != $with_data[0] && $_ != $with_data[1] } 0 .. 3);
my $b_after = "$b_parts,$moved";
note "A: $a_parts, B: $b_parts; partition $moved moves from A to B";

my $a = new_node('a', $broker->{bootstrap}, $settings . "anomstream.partitions = '$a_parts'\n");
my $b = new_node('b', $broker->{bootstrap}, $settings . "anomstream.partitions = '$b_parts'\n");
ok(settled($a, $start_ts + 400), 'A read the first half of its partitions');
ok(settled($b), 'B read the first half of its partitions');

my $from = $c->safe_psql('postgres', "SELECT to_timestamp($start_ts + 420)");
my %ids;
for my $m ([ $a, $a_after ], [ $b, $b_after ])
{
	my ($node, $list) = @$m;
	$node->safe_psql('postgres', 'SELECT anomstream.pause()');
	# the worker must hold before it sees the new partition list
	$node->poll_query_until('postgres', "SELECT state = 'paused' FROM anomstream.status LIMIT 1")
	  or die 'worker did not pause';
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET anomstream.partitions = '$list'; SELECT pg_reload_conf()");
	$ids{ $node->name } = $node->safe_psql('postgres', "SELECT anomstream.rebuild('$from')");
	$node->safe_psql('postgres', 'SELECT anomstream.resume()');
}
for my $node ($a, $b)
{
	is($node->safe_psql('postgres', "SELECT anomstream.rebuild_wait($ids{$node->name}, '3 min')"),
		'done', $node->name . ': the rebuild is done');
}
is($b->safe_psql('postgres',
	"SELECT min(kafka_offset) > 0 FROM anomstream.process_events WHERE kafka_partition = $moved"),
	't', "B started partition $moved at the seek position, not at its beginning");

my $log2 = replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '0', '--cycles', '60', '--start-ts', $start_ts + 500, '--seed', '4',
	'--kafka-timestamp', 'event');
ok(settled($_, $start_ts + 700), $_->name . ' read the second half') for ($c, $a);
ok(settled($b, $start_ts + 600), 'b read the second half');

for my $node ($a, $b, $c)
{
	is((result_counts($node))[3], '0', $node->name . ': no row was behind the pipeline watermark');
}

# C against the batch reference
load_log($c, $log1, $log2);
ok(wait_ingested($c), 'C staged every row');
build_reference($c, lateness => '5s', window => '2min', retention => '6min', bound => '30s');
my $res = compare_results($c);
is($res->{$_}, '0', "C: $_") for sort keys %$res;

my %q = (
	# closed is a progress column: each server's W covers its own partitions
	potential => 'SELECT (window_start, window_end, machine, attacks, new_attacks)::text FROM anomstream.potential_attacks',
	detected => q{SELECT (p_event_time, p_machine, p_sequence, p_pid, trun, tslpi, tslpu, poli,
		nice, pri, rtpr, cpunr, status, exc, state, cpu, p_cmd, p_cmd_pid, p_prediction,
		m_event_time, m_machine, m_sequence, m_pid, minflt, majflt, vstext, vsize, rsize,
		vgrow, rgrow, mem, m_cmd, m_cmd_pid, m_prediction, p_kafka_partition, p_kafka_offset,
		p_row_index, m_kafka_partition, m_kafka_offset, m_row_index, p_probability,
		m_probability, p_model_version, m_model_version)::text FROM anomstream.detected_attacks},
	late => q{SELECT (topic, kafka_partition, kafka_offset, row_index)::text FROM anomstream.late_rows
			 WHERE reason = 'partition_watermark'});
for my $t (sort keys %q)
{
	my @one = sort split /\n/, $c->safe_psql('postgres', $q{$t});
	my @two = sort((split /\n/, $a->safe_psql('postgres', $q{$t})),
		(split /\n/, $b->safe_psql('postgres', $q{$t})));
	cmp_ok(scalar(@one), '>', 0, "$t: the one-server run has rows");
	is(scalar(@two), scalar(@one), "$t: A and B together have as many rows as one server");
	is(join("\n", @two), join("\n", @one), "$t: A ∪ B equals one server row for row");
}

$_->stop for ($a, $b, $c);
stop_broker($broker);
done_testing();
