# Late data and bounded state (DESIGN.md §5, §6).
#  - Rows behind their partition's watermark, and a row behind the pipeline watermark in a
#    partition that had been idle, are listed in anomstream.late_rows with their reason,
#    counted in pipeline_status, and change nothing else (results byte for byte the same),
#    although they are attack rows that would pair with each other.
#  - Streaming 10x more data leaves every state table under a bound set by window,
#    lateness, join bound and retention (and the data rate), not by the amount of data;
#    nothing unreachable is left behind.
use strict;
use warnings;

use AnomstreamTest;
use IPC::Run;
use PipelineTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $start_ts = 1604231589;
my $broker = start_broker(partitions => 4);
my ($pcsv, $mcsv) = generated_csvs(rows => 3000, seed => 7);
my $node = new_node('late', $broker->{bootstrap},
	pipeline_settings(lateness => '20s', window => '2min', new_attack_retention => '4min',
		join_bound => '30s', idle_timeout => '2s') . qq{
anomstream.max_batch_rows = 5000
anomstream.trigger_interval = '100ms'
});

my @logs;
push @logs, replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '50', '--cycles', '60', '--start-ts', $start_ts, '--seed', '3');
load_log($node, @logs);
ok(wait_ingested($node), 'first part ingested');
$node->poll_query_until('postgres',
	"SELECT bool_and(watermark > '-infinity') AND bool_or(idle) FROM anomstream.pipeline_status")
  or die 'watermark did not advance';
my $phase1 = $node->safe_psql('postgres', 'SELECT max(batch_id) FROM anomstream.pipeline_batches');

# --- late rows
my $before = results_digest($node, without_late => 1);
my ($ppart, $pjson, $mpart, $mjson, $w, $pmax) = split /\|/, $node->safe_psql('postgres', q{
	WITH p AS (SELECT * FROM anomstream.process_events e WHERE prediction = 1
			   AND EXISTS (SELECT 1 FROM anomstream.memory_events m WHERE m.prediction = 1
						   AND m.machine = e.machine AND m.cmd_pid = e.cmd_pid)
			   ORDER BY event_time DESC, kafka_offset, row_index LIMIT 1),
		 m AS (SELECT m.* FROM anomstream.memory_events m, p WHERE m.prediction = 1
			   AND m.machine = p.machine AND m.cmd_pid = p.cmd_pid
			   ORDER BY m.event_time DESC LIMIT 1)
	SELECT p.kafka_partition,
		   json_build_object('sequence', p.sequence, 'machine', p.machine, 'PID', p.pid,
			 'TRUN', p.trun, 'TSLPI', p.tslpi, 'TSLPU', p.tslpu, 'POLI', p.poli, 'NICE', p.nice,
			 'PRI', p.pri, 'RTPR', p.rtpr, 'CPUNR', p.cpunr, 'Status', p.status, 'EXC', p.exc,
			 'State', p.state, 'CPU', p.cpu, 'CMD', p.cmd),
		   m.kafka_partition,
		   json_build_object('sequence', m.sequence, 'machine', m.machine, 'PID', m.pid,
			 'MINFLT', m.minflt, 'MAJFLT', m.majflt, 'VSTEXT', m.vstext, 'VSIZE', m.vsize,
			 'RSIZE', m.rsize, 'VGROW', m.vgrow, 'RGROW', m.rgrow, 'MEM', m.mem, 'CMD', m.cmd),
		   (SELECT floor(extract(epoch FROM watermark)) FROM anomstream.pipeline_state),
		   (SELECT floor(extract(epoch FROM max(event_time))) FROM anomstream.process_events e
			WHERE e.kafka_partition = p.kafka_partition)
	FROM p, m});
ok($pjson && $mjson, 'found a process and a memory attack row of the same process');
my $empty = $node->safe_psql('postgres', q{
	SELECT kafka_partition FROM anomstream.pipeline_partitions
	WHERE topic = 'process' AND max_event_time IS NULL AND idle LIMIT 1});
isnt($empty, '', "process partition $empty never had data and is idle");

sub produce
{
	my ($topic, $part, $ts, $row) = @_;
	my $msg = qq({"ts": $ts, "data": [$row]});
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'kcat', '-b', $broker->{bootstrap}, '-P', '-t', $topic, '-p', $part ],
		'<', \$msg, '>', \$out, '2>', \$err)
	  or die "kcat failed: $err";
}
my $late_ts = $pmax - 60;
# the pair's two rows, each a minute behind its partition; together they would be a pair
produce('process', $ppart, $late_ts, $pjson);
produce('memory', $mpart, $late_ts + 1, $mjson);
# a row behind W in a partition that never had data (so not behind its own watermark)
produce('process', $empty, $w - 30, $pjson);
$node->poll_query_until('postgres', 'SELECT count(*) = 3 FROM anomstream.late_rows')
  or die 'late rows not listed';
is( $node->safe_psql('postgres', q{
		SELECT string_agg(topic || ':' || reason || ':' || prediction, ',' ORDER BY topic, reason)
		FROM anomstream.late_rows}),
	'memory:partition_watermark:1,process:behind_pipeline_watermark:1,process:partition_watermark:1',
	'late attack rows are listed with their reasons');
is( $node->safe_psql('postgres', q{
		SELECT bool_and(event_time < watermark) FROM anomstream.late_rows}),
	't', 'each late row is behind the watermark it is listed with');
is( $node->safe_psql('postgres', q{
		SELECT sum(late_partition_watermark) || ' ' || sum(late_behind_pipeline_watermark)
		FROM anomstream.pipeline_status}),
	'2 1', 'pipeline_status counts them per reason');
is(results_digest($node, without_late => 1), $before, 'late rows changed no result');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM anomstream.detected_attacks d JOIN anomstream.late_rows l
		  ON (l.topic = 'process' AND (l.kafka_partition, l.kafka_offset) = (d.p_kafka_partition, d.p_kafka_offset))
		  OR (l.topic = 'memory' AND (l.kafka_partition, l.kafka_offset) = (d.m_kafka_partition, d.m_kafka_offset))}),
	'0', 'late rows joined nothing');

# --- bounded state: 9x more data on top (10x in all)
# The partition that received the late row holds W until it is idle again (DESIGN.md §5);
# measure from then on.
$node->poll_query_until('postgres', qq{
	SELECT idle FROM anomstream.pipeline_partitions WHERE topic = 'process' AND kafka_partition = $empty})
  or die 'partition did not become idle again';
$phase1 = $node->safe_psql('postgres', 'SELECT max(batch_id) FROM anomstream.pipeline_batches');
push @logs, replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '60', '--cycles', '540', '--start-ts', $start_ts + 300, '--seed', '4');
load_log($node, $logs[1]);
ok(wait_ingested($node), 'ten times the data ingested');
my $cmp = compare_staging($node);
# the three rows produced with kcat are in staging but not in the replayer's logs
my %extra = (process_extra => 2, memory_extra => 1);
is($cmp->{$_}, $extra{$_} // '0', "staging equals input: $_") for grep { !/dead/ } sort keys %$cmp;

build_reference($node, lateness => '20s', window => '2min', retention => '4min', bound => '30s');
my $res = compare_results($node);
is($res->{$_}, '0', "results equal the reference: $_") for sort keys %$res;

# The bounds: join buffers hold at most the attack rows of a span of lateness + join_bound
# + 25 s (the producer's skew between topics, and micro-batches); window keys at most those
# of retention/window + 2 windows plus the windows that span lateness + 15 s.
my ($bp, $bm, $bk) = split /\|/, $node->safe_psql('postgres', q{
	WITH b AS (SELECT s, date_bin('5s', event_time, '1970-01-01') AS t, count(*) AS c
			   FROM ref_attacks GROUP BY 1, 2),
		 r AS (SELECT s, sum(c) OVER (PARTITION BY s ORDER BY t
				   RANGE BETWEEN interval '75s' PRECEDING AND CURRENT ROW) AS n FROM b),
		 w AS (SELECT window_start, sum(attacks) AS k FROM ref_potential GROUP BY 1),
		 kw AS (SELECT sum(k) OVER (ORDER BY window_start
				   RANGE BETWEEN interval '8min' PRECEDING AND CURRENT ROW) AS n FROM w)
	SELECT (SELECT max(n) FROM r WHERE s = 'process'), (SELECT max(n) FROM r WHERE s = 'memory'),
		   (SELECT max(n) FROM kw)});
my ($total_p, $total_m, $total_k) = split /\|/, $node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE s = 'process'), count(*) FILTER (WHERE s = 'memory'),
		   (SELECT sum(attacks) FROM ref_potential) FROM ref_attacks});
my ($mp, $mm, $mk, $nb) = split /\|/, $node->safe_psql('postgres', qq{
	SELECT max(held_process), max(held_memory), max(held_keys), count(*)
	FROM anomstream.pipeline_batches WHERE batch_id > $phase1});
note "held at most $mp/$mm/$mk rows over $nb batches; bounds $bp/$bm/$bk; totals $total_p/$total_m/$total_k";
note $node->safe_psql('postgres', qq{
	SELECT string_agg(format('batch %s: held %s/%s, W %s, newest %s', b.batch_id, b.held_process,
		b.held_memory, b.watermark, (SELECT max(event_time) FROM anomstream.process_events e WHERE e.batch_id <= b.batch_id)), E'\n')
	FROM (SELECT * FROM anomstream.pipeline_batches WHERE batch_id > $phase1
		  ORDER BY held_process DESC LIMIT 5) b});
cmp_ok($mp, '<=', $bp, 'process join buffer stays under its bound');
cmp_ok($mm, '<=', $bm, 'memory join buffer stays under its bound');
cmp_ok($mk, '<=', $bk, 'window keys stay under their bound');
cmp_ok($bp * 4, '<', $total_p, 'the bound is far below the amount of data (process)');
cmp_ok($bk * 2, '<', $total_k, 'the bound is far below the amount of data (keys)');
is(check_state_counters($node), 't', 'held counters equal the state tables');
is( $node->safe_psql('postgres', q{
		SELECT (SELECT count(*) FROM anomstream.join_process, anomstream.pipeline_state s
				WHERE event_time + interval '30s' <= s.watermark)
			 + (SELECT count(*) FROM anomstream.join_memory, anomstream.pipeline_state s
				WHERE event_time + interval '30s' <= s.watermark)
			 + (SELECT count(*) FROM anomstream.window_keys, anomstream.pipeline_state s
				WHERE window_start < date_bin('2min', s.watermark, '1970-01-01') - interval '4min')}),
	'0', 'nothing unreachable is left in state');
cmp_ok($node->safe_psql('postgres', q{
		SELECT extract(epoch FROM (SELECT max(event_time) FROM anomstream.process_events) - watermark)
		FROM anomstream.pipeline_state}), '<=', 40, 'W keeps up with the data');

$node->stop;
stop_broker($broker);
done_testing();
