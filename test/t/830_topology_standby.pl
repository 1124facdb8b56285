# A physical standby promoted mid-stream (DESIGN.md §7, "Replicas and restored copies"): the
# primary streams through its worker; a streaming standby made from a base backup runs a
# worker that waits (status 'waiting for recovery', consumes nothing, no errors); the primary
# then fails (immediate stop, so the standby may miss its last commits) and the standby is
# promoted. The promoted standby keeps the primary's system identifier, so it needs no
# claim; its UNLOGGED staging is empty, so its worker refills it from Kafka and resumes at
# the durable position it replicated. At the end staging equals the input exactly once and
# potential_attacks, detected_attacks and late_rows equal the plain-SQL reference and a
# run of a fresh server that consumed the same topics without any failover.
use strict;
use warnings;

use AnomstreamTest;
use PipelineTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my %sem = (lateness => '5s', window => '2min', new_attack_retention => '6min',
	join_bound => '30s', idle_timeout => '10s');
my $settings = pipeline_settings(%sem) . qq{
anomstream.max_batch_rows = 250
anomstream.trigger_interval = '50ms'
};

my $broker = start_broker(partitions => 4);
my ($pcsv, $mcsv) = generated_csvs(rows => 3000, seed => 7);
my $primary = new_node('primary', $broker->{bootstrap}, $settings . q{
wal_level = replica
max_wal_senders = 4
hot_standby = on
});

my ($replayer, $log, $r) = replay_bg($broker->{bootstrap}, '--process', $pcsv,
	'--memory', $mcsv, '--speedup', '20', '--cycles', '120', '--start-ts', '1604231589',
	'--seed', '3');

# A base backup of the streaming primary, and a streaming standby from it.
$primary->poll_query_until('postgres', 'SELECT batches > 2 FROM anomstream.pipeline_state')
  or die 'the primary does not stream';
$primary->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b1', has_streaming => 1);
$standby->start;

# The standby's worker waits and consumes nothing while the primary keeps streaming.
ok( $standby->poll_query_until('postgres',
		"SELECT state = 'waiting for recovery' FROM anomstream.status LIMIT 1"),
	"the standby's worker waits in state 'waiting for recovery'");
is( $standby->safe_psql('postgres', q{
		SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'anomstream worker'}),
	'1', 'the worker runs on the standby (visible in pg_stat_activity)');
sleep 2;
is( $standby->safe_psql('postgres',
		q{SELECT count(topic) || '/' || max(batches) FROM anomstream.worker_status()}),
	'0/0', 'the standby assigned no partition and committed no batch');
like(slurp_file($standby->logfile), qr/in recovery; waiting for promotion/,
	'the log says the worker waits for promotion');
$primary->wait_for_catchup($standby);
my $seen = $standby->safe_psql('postgres', 'SELECT batches FROM anomstream.pipeline_state');
cmp_ok($seen, '>', 0, "the standby replicated $seen of the primary's micro-batches");
cmp_ok($standby->safe_psql('postgres', 'SELECT sum(durable_offset) FROM anomstream.positions'),
	'>', 0, 'the standby holds durable positions to resume from');

# Failover in mid-stream: the primary dies, the standby is promoted.
sleep 1;
$primary->stop('immediate');
$standby->promote;
ok( $standby->poll_query_until('postgres',
		"SELECT bool_and(state = 'running') AND count(*) = 8 FROM anomstream.status"),
	'after promotion the worker runs all partitions');
is( $standby->safe_psql('postgres', q{
		SELECT c.system_identifier = s.system_identifier
		  FROM anomstream.control c, pg_control_system() s}),
	't', 'the promoted standby has the recorded system identifier (no claim needed)');
stop_bg($replayer) or die "replayer failed: $r->{err}";

load_log($standby, $log);
my ($rows) = expected_counts($standby);
note "replayed $rows rows";
ok(wait_ingested($standby, 120), 'the promoted standby consumed all rows');
sleep 1;
my $cmp = compare_staging($standby);
is($cmp->{$_}, '0', "staging equals input exactly once: $_") for sort keys %$cmp;
my $slog = slurp_file($standby->logfile);
like($slog, qr/staging is empty after a crash or first start; refilling it from Kafka/,
	'after promotion the worker refilled staging');
unlike($slog, qr/restored from another cluster|claim required/, 'no claim was asked for');
unlike($slog, qr/ERROR:.*anomstream/, 'no anomstream error on the standby');

build_reference($standby, lateness => '5s', window => '2min', retention => '6min',
	bound => '30s');
my $res = compare_results($standby);
is($res->{$_}, '0', "after failover: $_") for sort keys %$res;
my ($pot, $det, $late, $behind) = result_counts($standby);
note "$pot window rows, $det pairs, $late late rows";
cmp_ok($det, '>', 50, 'pairs were detected');
is($behind, '0', 'no row was behind the pipeline watermark');
is(check_state_counters($standby), 't', 'held counters equal the state tables');

# The same topics consumed by a fresh server, no failover, big batches.
my $plain = new_node('plain', $broker->{bootstrap}, pipeline_settings(%sem) . qq{
anomstream.max_batch_rows = 100000
anomstream.trigger_interval = '1s'
});
load_log($plain, $log);
ok(wait_ingested($plain, 120), 'the plain run consumed all rows');
is(results_digest($plain), results_digest($standby),
	'results after failover equal a run without failover');

$plain->stop;
$standby->stop;
stop_broker($broker);
done_testing();
