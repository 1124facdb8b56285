# Isolation: a reader never sees half of a micro-batch. While the worker streams (the
# writer session), reader sessions check, each in one REPEATABLE READ snapshot, invariants
# that hold only between micro-batches:
#  - every batch's pair count in pipeline_batches equals its detected_attacks rows;
#  - every batch with staging rows has its pipeline_batches row, and vice versa for the
#    batches still staged (staging and pipeline commit together);
#  - pipeline_state's held counters equal the rows of the state tables;
#  - every open window's attacks equal its keys in window_keys.
use strict;
use warnings;

use AnomstreamTest;
use PipelineTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $broker = start_broker(partitions => 4);
my ($pcsv, $mcsv) = generated_csvs(rows => 3000, seed => 7);
my $node = new_node('iso', $broker->{bootstrap},
	pipeline_settings(lateness => '5s', window => '2min', new_attack_retention => '4min',
		join_bound => '30s', idle_timeout => '2s') . qq{
anomstream.max_batch_rows = 400
anomstream.trigger_interval = '20ms'
});

my ($replayer, $log, $r) = replay_bg($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '20', '--cycles', '100', '--start-ts', '1604231589', '--seed', '5');

my $check = q{
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT
  (SELECT count(*) FROM anomstream.pipeline_batches b
	 LEFT JOIN (SELECT batch_id, count(*) AS c FROM anomstream.detected_attacks GROUP BY 1) d
	   USING (batch_id)
	WHERE b.pairs <> coalesce(d.c, 0)
	  AND b.processed_at > pg_catalog.now() - interval '1 hour')
  || ' ' ||
  (SELECT count(*) FROM (SELECT DISTINCT batch_id FROM anomstream.process_events
						 UNION SELECT DISTINCT batch_id FROM anomstream.memory_events) s
	WHERE NOT EXISTS (SELECT 1 FROM anomstream.pipeline_batches b WHERE b.batch_id = s.batch_id))
  || ' ' ||
  (SELECT (held_process <> (SELECT count(*) FROM anomstream.join_process))::int
		+ (held_memory <> (SELECT count(*) FROM anomstream.join_memory))::int
		+ (held_keys <> (SELECT count(*) FROM anomstream.window_keys))::int
	 FROM anomstream.pipeline_state)
  || ' ' ||
  (SELECT count(*) FROM anomstream.potential_attacks pa
	WHERE NOT pa.closed
	  AND pa.attacks <> (SELECT count(*) FROM anomstream.window_keys k
						 WHERE k.window_start = pa.window_start AND k.machine = pa.machine))
  || ' ' ||
  (SELECT count(*) FROM anomstream.pipeline_batches WHERE pairs > 0);
COMMIT;
};

my ($checks, $bad, $with_pairs) = (0, 0, 0);
# the replay lasts 100 cycles x 5 s / speedup 20 = 25 s
my $deadline = time() + 25;
while (time() < $deadline)
{
	my $out = $node->safe_psql('postgres', $check);
	my @v = split / /, $out;
	$checks++;
	if ("@v[0..3]" ne '0 0 0 0')
	{
		$bad++;
		diag "snapshot saw half a batch: $out";
	}
	$with_pairs = $v[4];
}
stop_bg($replayer) or die "replayer failed: $r->{err}";
note "$checks snapshots checked";
cmp_ok($checks, '>=', 20, 'many snapshots were taken while the worker committed batches');
cmp_ok($with_pairs, '>', 5, 'batches with pairs were committed meanwhile');
is($bad, 0, 'no snapshot saw part of a micro-batch');

# Config pending (DESIGN.md §7): a changed semantic setting stops the pipeline, and with it
# consumption, until the stored value is back (or anomstream.rebuild()).
load_log($node, $log);
ok(wait_ingested($node), 'all rows arrived');
my $staged = $node->safe_psql('postgres', 'SELECT count(*) FROM anomstream.process_events');
$node->safe_psql('postgres', q{ALTER SYSTEM SET anomstream."window" = '1min'; SELECT pg_reload_conf()});
$node->poll_query_until('postgres', 'SELECT bool_and(config_pending) FROM anomstream.pipeline_status')
  or die 'config_pending not shown';
my $more = replay($broker->{bootstrap}, '--process', $pcsv, '--cycles', '2', '--speedup', '0',
	'--start-ts', '1604232200', '--seed', '6');
$node->poll_query_until('postgres',
	"SELECT last_error LIKE '%config pending%' FROM anomstream.worker_status() LIMIT 1")
  or die 'worker did not report config pending';
is($node->safe_psql('postgres', 'SELECT count(*) FROM anomstream.process_events'), $staged,
	'nothing is consumed while the config is pending');
$node->safe_psql('postgres', q{ALTER SYSTEM RESET anomstream."window"; SELECT pg_reload_conf()});
$node->poll_query_until('postgres',
	"SELECT count(*) > $staged FROM anomstream.process_events")
  or die 'consumption did not resume';
is($node->safe_psql('postgres', 'SELECT bool_or(config_pending) FROM anomstream.pipeline_status'),
	'f', 'config no longer pending once the stored value is back');
like(slurp_file($node->logfile), qr/config pending: the pipeline's semantic settings changed/,
	'the log says why the pipeline waits');

$node->stop;
stop_broker($broker);
done_testing();
