# PipelineTest.pm - the pipeline's TAP helpers: an independent reference for
# potential_attacks, detected_attacks and late rows, computed by plain batch SQL over all
# input rows (DESIGN.md §5, §6), and comparisons of the pipeline's tables against it.
#
# The input rows are the staging rows (the ingest tests prove staging equals the replayed
# input row for row; predictions are deterministic). Late classification, windows,
# new_attacks and the join are computed here from scratch, never by the pipeline's code:
# late rows message by message with a correlated subquery, windows and new_attacks by the
# reference query of DESIGN.md §6, pairs by a plain join over all attack rows.
package PipelineTest;

use strict;
use warnings;

use AnomstreamTest qw(tool);
use Exporter qw(import);
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(build_reference compare_results results_digest check_state_counters
  pipeline_settings generated_csvs result_counts);

# Generated process and memory rows of one simulated world (the same seed for both
# streams, so attacking processes appear in both and the join finds pairs).
sub generated_csvs
{
	my (%o) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	for my $s ('process', 'memory')
	{
		system(tool('generate'), '--stream', $s, '--rows', $o{rows} // 3000,
			'--seed', $o{seed} // 7, '-o', "$dir/$s.csv") == 0
		  or die "generate failed";
	}
	return ("$dir/process.csv", "$dir/memory.csv");
}

# The postgresql.conf lines of the semantic settings.
sub pipeline_settings
{
	my (%o) = @_;
	return join('', map { "anomstream.$_ = '$o{$_}'\n" } sort keys %o);
}

# Build ref_* tables in the node's postgres database. Options: lateness, window,
# retention, bound (interval text). Rows listed in late_rows with reason
# behind_pipeline_watermark (timing dependent by definition) are excluded like the spec says.
sub build_reference
{
	my ($node, %o) = @_;
	my $lateness = $o{lateness} // '20s';
	my $window = $o{window} // '2min';
	my $retention = $o{retention} // '24h';
	my $bound = $o{bound} // '30s';
	$node->safe_psql('postgres', qq{
DROP TABLE IF EXISTS ref_msgs, ref_late, ref_attacks, ref_potential, ref_detected;
-- one row per message: its (stream, partition, offset) and event time
CREATE TABLE ref_msgs AS
SELECT DISTINCT 'process' AS s, kafka_partition, kafka_offset, event_time FROM anomstream.process_events
UNION
SELECT DISTINCT 'memory', kafka_partition, kafka_offset, event_time FROM anomstream.memory_events;
CREATE INDEX ON ref_msgs (s, kafka_partition, kafka_offset);
ANALYZE ref_msgs;
-- a message is late if its ts is below (largest ts of earlier messages of its partition) - lateness
CREATE TABLE ref_late AS
SELECT m.s, m.kafka_partition, m.kafka_offset
FROM ref_msgs m
WHERE m.event_time < (SELECT max(x.event_time) FROM ref_msgs x
					  WHERE x.s = m.s AND x.kafka_partition = m.kafka_partition
						AND x.kafka_offset < m.kafka_offset) - interval '$lateness';
CREATE TABLE ref_attacks AS
SELECT 'process' AS s, e.kafka_partition, e.kafka_offset, e.row_index, e.machine, e.cmd_pid, e.event_time
FROM anomstream.process_events e
WHERE e.prediction = 1 AND e.machine IS NOT NULL AND e.cmd_pid IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM ref_late l WHERE l.s = 'process' AND l.kafka_partition = e.kafka_partition AND l.kafka_offset = e.kafka_offset)
  AND NOT EXISTS (SELECT 1 FROM anomstream.late_rows b WHERE b.reason = 'behind_pipeline_watermark'
				  AND b.topic = 'process' AND b.kafka_partition = e.kafka_partition
				  AND b.kafka_offset = e.kafka_offset AND b.row_index = e.row_index)
UNION ALL
SELECT 'memory', e.kafka_partition, e.kafka_offset, e.row_index, e.machine, e.cmd_pid, e.event_time
FROM anomstream.memory_events e
WHERE e.prediction = 1 AND e.machine IS NOT NULL AND e.cmd_pid IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM ref_late l WHERE l.s = 'memory' AND l.kafka_partition = e.kafka_partition AND l.kafka_offset = e.kafka_offset)
  AND NOT EXISTS (SELECT 1 FROM anomstream.late_rows b WHERE b.reason = 'behind_pipeline_watermark'
				  AND b.topic = 'memory' AND b.kafka_partition = e.kafka_partition
				  AND b.kafka_offset = e.kafka_offset AND b.row_index = e.row_index);
-- DESIGN.md §6 reference query
CREATE TABLE ref_potential AS
WITH k AS (SELECT DISTINCT machine, cmd_pid,
			 date_bin(interval '$window', event_time, '1970-01-01 00:00:00+00') AS ws
		   FROM ref_attacks)
SELECT ws AS window_start, ws + interval '$window' AS window_end, machine, count(*) AS attacks,
	   count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM k j WHERE j.machine = k.machine
		   AND j.cmd_pid = k.cmd_pid AND j.ws >= k.ws - interval '$retention' AND j.ws < k.ws)) AS new_attacks
FROM k GROUP BY ws, machine;
CREATE TABLE ref_detected AS
SELECT p.event_time AS p_event_time, p.machine AS p_machine, p.sequence AS p_sequence, p.pid AS p_pid,
	   p.trun, p.tslpi, p.tslpu, p.poli, p.nice, p.pri, p.rtpr, p.cpunr, p.status, p.exc, p.state, p.cpu,
	   p.cmd AS p_cmd, p.cmd_pid AS p_cmd_pid, p.prediction AS p_prediction,
	   m.event_time AS m_event_time, m.machine AS m_machine, m.sequence AS m_sequence, m.pid AS m_pid,
	   m.minflt, m.majflt, m.vstext, m.vsize, m.rsize, m.vgrow, m.rgrow, m.mem,
	   m.cmd AS m_cmd, m.cmd_pid AS m_cmd_pid, m.prediction AS m_prediction,
	   p.kafka_partition AS p_kafka_partition, p.kafka_offset AS p_kafka_offset, p.row_index AS p_row_index,
	   m.kafka_partition AS m_kafka_partition, m.kafka_offset AS m_kafka_offset, m.row_index AS m_row_index,
	   p.probability AS p_probability, m.probability AS m_probability,
	   p.model_version AS p_model_version, m.model_version AS m_model_version
FROM anomstream.process_events p
JOIN ref_attacks pa ON pa.s = 'process' AND pa.kafka_partition = p.kafka_partition
	AND pa.kafka_offset = p.kafka_offset AND pa.row_index = p.row_index
JOIN anomstream.memory_events m ON m.machine = p.machine AND m.cmd_pid = p.cmd_pid
	AND abs(extract(epoch FROM m.event_time - p.event_time)) < extract(epoch FROM interval '$bound')
JOIN ref_attacks ma ON ma.s = 'memory' AND ma.kafka_partition = m.kafka_partition
	AND ma.kafka_offset = m.kafka_offset AND ma.row_index = m.row_index;
});
}

my $detected_cols = q{p_event_time, p_machine, p_sequence, p_pid, trun, tslpi, tslpu, poli,
	nice, pri, rtpr, cpunr, status, exc, state, cpu, p_cmd, p_cmd_pid, p_prediction,
	m_event_time, m_machine, m_sequence, m_pid, minflt, majflt, vstext, vsize, rsize, vgrow,
	rgrow, mem, m_cmd, m_cmd_pid, m_prediction, p_kafka_partition, p_kafka_offset,
	p_row_index, m_kafka_partition, m_kafka_offset, m_row_index, p_probability,
	m_probability, p_model_version, m_model_version};
my $potential_cols = 'window_start, window_end, machine, attacks, new_attacks';

# Mismatch counts in both directions (all 0 when equal), plus sizes.
sub compare_results
{
	my ($node) = @_;
	my %r;
	my %q = (
		potential_missing => "SELECT $potential_cols FROM ref_potential EXCEPT ALL SELECT $potential_cols FROM anomstream.potential_attacks",
		potential_extra => "SELECT $potential_cols FROM anomstream.potential_attacks EXCEPT ALL SELECT $potential_cols FROM ref_potential",
		detected_missing => "SELECT $detected_cols FROM ref_detected EXCEPT ALL SELECT $detected_cols FROM anomstream.detected_attacks",
		detected_extra => "SELECT $detected_cols FROM anomstream.detected_attacks EXCEPT ALL SELECT $detected_cols FROM ref_detected",
		late_missing => "SELECT l.s, l.kafka_partition, l.kafka_offset FROM ref_late l EXCEPT SELECT topic, kafka_partition, kafka_offset FROM anomstream.late_rows WHERE reason = 'partition_watermark'",
		late_extra => "SELECT topic, kafka_partition, kafka_offset FROM anomstream.late_rows WHERE reason = 'partition_watermark' EXCEPT SELECT l.s, l.kafka_partition, l.kafka_offset FROM ref_late l",
		closed_wrong => "SELECT 1 FROM anomstream.potential_attacks WHERE closed <> (window_end <= (SELECT watermark FROM anomstream.pipeline_state))",
	);
	for my $k (keys %q)
	{
		$r{$k} = $node->safe_psql('postgres', "SELECT count(*) FROM ($q{$k}) d");
	}
	return \%r;
}

# A digest of the deterministic columns of both result tables and the late rows.
sub results_digest
{
	my ($node, %o) = @_;
	my $late = $o{without_late} ? '' : q{
			UNION ALL SELECT (topic, kafka_partition, kafka_offset, row_index, reason)::text
					  FROM anomstream.late_rows};
	return $node->safe_psql('postgres', qq{
		SELECT md5(string_agg(t, E'\\n' ORDER BY t)) FROM (
			SELECT ($potential_cols)::text AS t FROM anomstream.potential_attacks
			UNION ALL SELECT ($detected_cols)::text FROM anomstream.detected_attacks
			$late) d});
}

# (window rows, pairs, partition-late rows, rows behind the pipeline watermark)
sub result_counts
{
	my ($node) = @_;
	return split /\|/, $node->safe_psql('postgres', q{
		SELECT (SELECT count(*) FROM anomstream.potential_attacks),
			   (SELECT count(*) FROM anomstream.detected_attacks),
			   (SELECT count(*) FROM anomstream.late_rows WHERE reason = 'partition_watermark'),
			   (SELECT count(*) FROM anomstream.late_rows WHERE reason = 'behind_pipeline_watermark')});
}

# The held_* counters of pipeline_state equal the state tables' row counts.
sub check_state_counters
{
	my ($node) = @_;
	return $node->safe_psql('postgres', q{
		SELECT held_process = (SELECT count(*) FROM anomstream.join_process)
		   AND held_memory = (SELECT count(*) FROM anomstream.join_memory)
		   AND held_keys = (SELECT count(*) FROM anomstream.window_keys)
		FROM anomstream.pipeline_state});
}

1;
