# Scale-out (DESIGN.md §11): two servers on this machine each consume half the partitions of
# both topics from one mock broker (anomstream.partitions); a third, reporting server attaches
# both through postgres_fdw (anomstream.scaleout_attach) and its union views equal, row for
# row, the results of one server that consumed everything, which equal the plain-SQL
# reference. Also: a server given a partition list refuses topics with different partition
# counts.
use strict;
use warnings;

use AnomstreamTest;
use PipelineTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my %sem = (lateness => '5s', window => '2min', new_attack_retention => '6min',
	join_bound => '30s', idle_timeout => '10s');
my $batches = qq{
anomstream.max_batch_rows = 300
anomstream.trigger_interval = '50ms'
};
my $broker = start_broker(partitions => 4);
my ($pcsv, $mcsv) = generated_csvs(rows => 3000, seed => 7);

# Two consuming servers, half the partitions each, streaming live.
my %half = (a => '0-1', b => '2-3');
my %node;
for my $s (sort keys %half)
{
	$node{$s} = new_node("server_$s", $broker->{bootstrap},
		pipeline_settings(%sem) . $batches . "anomstream.partitions = '$half{$s}'\n");
}
my $log = replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '50', '--cycles', '120', '--start-ts', '1604231589', '--seed', '3');

for my $s (sort keys %half)
{
	my $n = $node{$s};
	my ($lo, $hi) = split /-/, $half{$s};
	is( $n->safe_psql('postgres',
			"SELECT string_agg(DISTINCT kafka_partition::text, ',' ORDER BY kafka_partition::text) FROM anomstream.status"),
		join(',', $lo .. $hi), "server $s consumes partitions $half{$s} only");
	# its staging must equal the input of its partitions
	load_log($n, $log);
	$n->safe_psql('postgres', qq{
		DELETE FROM t_exp_process WHERE kafka_partition NOT BETWEEN $lo AND $hi;
		DELETE FROM t_exp_memory WHERE kafka_partition NOT BETWEEN $lo AND $hi;});
	ok(wait_ingested($n), "server $s consumed its partitions");
	my $cmp = compare_staging($n);
	is($cmp->{$_}, '0', "server $s: staging equals its partitions' input ($_)") for sort keys %$cmp;
}

# One server consuming everything (the backlog, in big batches).
my $one = new_node('one_server', $broker->{bootstrap}, pipeline_settings(%sem) . qq{
anomstream.max_batch_rows = 100000
anomstream.trigger_interval = '1s'
});
load_log($one, $log);
ok(wait_ingested($one), 'the single server consumed everything');
build_reference($one, lateness => '5s', window => '2min', retention => '6min', bound => '30s');
my $res = compare_results($one);
is($res->{$_}, '0', "single server equals the plain-SQL reference: $_") for sort keys %$res;

# A reporting server. First, as a consumer with a partition list, it refuses topics with
# different partition counts.
is(broker_cmd($broker, 'topic memory3 3'), 'ok', 'a topic with 3 partitions');
my $rep = new_node('report', $broker->{bootstrap},
	"anomstream.topics = 'process,memory3'\nanomstream.partitions = '0'\n");
ok( $rep->poll_query_until('postgres', q{
		SELECT state = 'error' AND last_error LIKE '%different partition counts (4 and 3)%'
		  FROM anomstream.status LIMIT 1}),
	'a server with a partition list refuses topics with different partition counts');
is($rep->safe_psql('postgres', 'SELECT count(*) FROM anomstream.positions'), '0',
	'and consumes nothing');
$rep->safe_psql('postgres', "ALTER SYSTEM SET anomstream.brokers = ''; SELECT pg_reload_conf()");

# Then the union of both servers' results through postgres_fdw.
my $attach = "CREATE EXTENSION postgres_fdw;\n";
for my $s (sort keys %half)
{
	my $n = $node{$s};
	$attach .= sprintf(qq{
CREATE SERVER %s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '%s', port '%s', dbname 'postgres');
CREATE USER MAPPING FOR CURRENT_USER SERVER %s;
SELECT anomstream.scaleout_attach('%s');
}, $s, $n->host, $n->port, $s, $s);
}
$attach .= sprintf(qq{
CREATE SERVER one FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '%s', port '%s', dbname 'postgres');
CREATE USER MAPPING FOR CURRENT_USER SERVER one;
CREATE SCHEMA one;
IMPORT FOREIGN SCHEMA anomstream LIMIT TO (potential_attacks, detected_attacks) FROM SERVER one INTO one;
}, $one->host, $one->port);
$rep->safe_psql('postgres', $attach);

my $pcols = 'window_start, window_end, machine, attacks, new_attacks';
my $dcols = q{p_event_time, p_machine, p_sequence, p_pid, trun, tslpi, tslpu, poli, nice,
	pri, rtpr, cpunr, status, exc, state, cpu, p_cmd, p_cmd_pid, p_prediction, m_event_time,
	m_machine, m_sequence, m_pid, minflt, majflt, vstext, vsize, rsize, vgrow, rgrow, mem,
	m_cmd, m_cmd_pid, m_prediction, p_kafka_partition, p_kafka_offset, p_row_index,
	m_kafka_partition, m_kafka_offset, m_row_index, p_probability, m_probability,
	p_model_version, m_model_version};
my %diff = (
	potential_missing => "SELECT $pcols FROM one.potential_attacks EXCEPT ALL SELECT $pcols FROM anomstream_scaleout.potential_attacks",
	potential_extra => "SELECT $pcols FROM anomstream_scaleout.potential_attacks EXCEPT ALL SELECT $pcols FROM one.potential_attacks",
	detected_missing => "SELECT $dcols FROM one.detected_attacks EXCEPT ALL SELECT $dcols FROM anomstream_scaleout.detected_attacks",
	detected_extra => "SELECT $dcols FROM anomstream_scaleout.detected_attacks EXCEPT ALL SELECT $dcols FROM one.detected_attacks");
for my $k (sort keys %diff)
{
	is($rep->safe_psql('postgres', "SELECT count(*) FROM ($diff{$k}) d"), '0',
		"union of two servers equals one server: $k");
}
my $sizes = $rep->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM anomstream_scaleout.potential_attacks) || ' ' ||
		   (SELECT count(*) FROM anomstream_scaleout.detected_attacks)});
note "union: $sizes (window rows, pairs)";
my ($upot, $udet) = split / /, $sizes;
cmp_ok($upot, '>', 10, 'the union has windows with attacks');
cmp_ok($udet, '>', 10, 'the union has pairs');
is( $rep->safe_psql('postgres', q{
		SELECT count(DISTINCT server) FILTER (WHERE server IN ('a', 'b')) || ' ' ||
			   (SELECT count(*) FROM (SELECT machine FROM anomstream_scaleout.potential_attacks
									  GROUP BY machine HAVING count(DISTINCT server) > 1) m)
		  FROM anomstream_scaleout.potential_attacks}),
	'2 0', 'both servers contribute, and no machine is on both');

# Readers see the union through the views (the view owner's user mapping is used).
$rep->safe_psql('postgres', 'CREATE ROLE dash LOGIN IN ROLE anomstream_reader');
is( $rep->safe_psql('postgres', 'SELECT count(*) FROM anomstream_scaleout.detected_attacks',
		extra_params => [ '-U', 'dash' ]),
	$udet, 'anomstream_reader reads the union view');

# Detaching a server removes its rows from the union.
$rep->safe_psql('postgres', "SELECT anomstream.scaleout_detach('b')");
is( $rep->safe_psql('postgres', q{
		SELECT count(*) = (SELECT count(*) FROM anomstream_scaleout.a_potential_attacks)
		  FROM anomstream_scaleout.potential_attacks}),
	't', 'after detach the union holds the remaining server only');

$rep->stop;
$one->stop;
$node{$_}->stop for sort keys %half;
stop_broker($broker);
done_testing();
