# A model change takes effect at the next micro-batch without a restart: rows staged before
# keep their predictions and model_version, rows after carry the new version. A version that
# staged rows reference cannot be deleted.
use strict;
use warnings;

use AnomstreamTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $broker = start_broker(partitions => 2);
my ($pcsv, $mcsv) = input_csvs(generated => 1);
my $node = new_node('switch', $broker->{bootstrap});

my $log1 = replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '0', '--cycles', '8', '--start-ts', '1604231589', '--seed', '1');
load_log($node, $log1);
ok(wait_ingested($node), 'first part staged');
my $before = $node->safe_psql('postgres', q{
	SELECT min(model_version) || ',' || max(model_version) || ',' || count(*) || ',' ||
		   count(*) FILTER (WHERE prediction = 1) || ',' || round(sum(probability)::numeric, 6)
	FROM anomstream.process_events});
my ($v_old, $v_old2, $n1, $flagged1) = split /,/, $before;
is($v_old, $v_old2, 'one model version scored the first part');
cmp_ok($flagged1, '<', $n1, 'the default model does not flag everything');

# A new version for the process stream that flags every row, activated while streaming.
my $v_new = $node->safe_psql('postgres', q{
	SELECT anomstream.import_model('flag_all', anomstream.export_model('process_default'),
								   stream => 'process', threshold => 0.0, activate => true)});
isnt($v_new, $v_old, "new version $v_new");

my $log2 = replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '0', '--cycles', '8', '--start-ts', '1604232589', '--seed', '2');
load_log($node, $log2);
ok(wait_ingested($node), 'second part staged');

is( $node->safe_psql('postgres', q{
		SELECT min(model_version) || ',' || max(model_version) || ',' || count(*) || ',' ||
			   count(*) FILTER (WHERE prediction = 1) || ',' || round(sum(probability)::numeric, 6)
		FROM anomstream.process_events
		WHERE event_time < to_timestamp(1604232589)}),
	$before, 'rows staged before the change keep their version and predictions');
is( $node->safe_psql('postgres', qq{
		SELECT count(*) FILTER (WHERE model_version = $v_new) = count(*)
		   AND count(*) FILTER (WHERE prediction = 1) = count(*) AND count(*) > 0
		FROM anomstream.process_events WHERE event_time >= to_timestamp(1604232589)}),
	't', 'rows staged after the change carry the new version, flagged by its threshold');
is( $node->safe_psql('postgres', q{
		SELECT count(DISTINCT model_version) FROM anomstream.memory_events}),
	'1', 'the memory stream kept its model');

my ($rc, $out, $err) = $node->psql('postgres',
	"DELETE FROM anomstream.models WHERE version = $v_old");
isnt($rc, 0, 'a version referenced by staged rows cannot be deleted');
note $err;

$node->stop;
stop_broker($broker);
done_testing();
