# Restored copies (DESIGN.md §7): a database restored into another cluster (pg_dump carries
# anomstream.control with the first cluster's system identifier) consumes nothing and shows
# 'claim required' until anomstream.claim().
use strict;
use warnings;

use AnomstreamTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $broker = start_broker(partitions => 2);
my ($pcsv, $mcsv) = input_csvs();

my $prod = new_node('ops_prod', $broker->{bootstrap});
$prod->poll_query_until('postgres',
	"SELECT bool_and(state = 'running') AND count(*) = 4 FROM anomstream.status")
  or die 'production worker not running';
is( $prod->safe_psql('postgres', q{
		SELECT c.system_identifier = s.system_identifier
		  FROM anomstream.control c, pg_control_system() s}),
	't', 'first start records the system identifier');

my $log1 = replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '0', '--cycles', '3', '--start-ts', '1604231589', '--seed', '1');
load_log($prod, $log1);
ok(wait_ingested($prod), 'production consumed the first replay');

# Dump production and restore it into a fresh cluster (new initdb: new system identifier)
# whose worker is pointed at the same topics. The restore is one transaction, so the worker
# never sees the extension without its control row.
my $dump = PostgreSQL::Test::Utils::tempdir() . '/prod.dump';
$prod->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $prod->connstr('postgres') ],
	'pg_dump of production');
my $positions_prod = durable_positions($prod);

# The new cluster ran anomstream before (its worker recorded its own identifier); the
# restore replaces the extension and its control row.
my $copy = new_node('ops_copy', $broker->{bootstrap});
$copy->poll_query_until('postgres', 'SELECT count(*) = 1 FROM anomstream.control')
  or die 'copy worker did not start';
# The copy's worker is idled first (as an operator would before replacing the extension).
$copy->safe_psql('postgres', "ALTER SYSTEM SET anomstream.brokers = ''; SELECT pg_reload_conf()");
$copy->poll_query_until('postgres',
	"SELECT state = 'idle (no brokers)' FROM anomstream.status LIMIT 1")
  or die 'copy worker did not go idle';
$copy->safe_psql('postgres', 'DROP EXTENSION anomstream; DROP SCHEMA IF EXISTS anomstream');
$copy->command_ok([ 'pg_restore', '--single-transaction', '-d', $copy->connstr('postgres'), $dump ],
	'pg_restore into a new cluster');
$copy->safe_psql('postgres', 'ALTER SYSTEM RESET anomstream.brokers; SELECT pg_reload_conf()');
isnt( $copy->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()'),
	$prod->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()'),
	'the copy is another cluster');

# More data arrives; the copy's worker, which was running when the dump was restored under
# it, notices in its next micro-batch and takes none of it.
my $log2 = replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '0', '--cycles', '3', '--start-ts', '1604232000', '--seed', '2');
ok( $copy->poll_query_until('postgres',
		"SELECT state = 'claim required' FROM anomstream.status LIMIT 1"),
	"the copy's worker waits in state 'claim required'");
load_log($prod, $log2);
ok(wait_ingested($prod), 'production consumed the second replay');
ok( $copy->poll_query_until('postgres', q{
		SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'anomstream worker'
		   AND wait_event = 'Extension'}),
	'the copy worker is waiting');
is( $copy->safe_psql('postgres', q{
		SELECT (SELECT count(*) FROM anomstream.process_events) + (SELECT count(*) FROM anomstream.memory_events)}),
	'0', 'the copy staged nothing');
is( durable_positions($copy),
	$positions_prod, "the copy's positions are still the dumped ones");
like(slurp_file($copy->logfile), qr/restored from another cluster; consuming nothing/,
	'the log says why');

# Claim: the copy consumes everything from the dumped positions on.
$copy->safe_psql('postgres', 'CREATE ROLE ops LOGIN IN ROLE anomstream_admin');
is( $copy->safe_psql('postgres', 'SELECT anomstream.claim() = system_identifier FROM pg_control_system()',
		extra_params => [ '-U', 'ops' ]),
	't', 'claim() records and returns the new identifier');
ok( $copy->poll_query_until('postgres',
		"SELECT bool_and(state = 'running') AND count(*) = 4 FROM anomstream.status"),
	'after claim() the copy runs');
load_log($copy, $log2);
ok(wait_ingested($copy), 'after claim() the copy consumes');
is($copy->safe_psql('postgres', 'SELECT claimed_by FROM anomstream.control'), 'ops',
	'the control row says who claimed');
is( $prod->safe_psql('postgres', q{
		SELECT c.system_identifier = s.system_identifier FROM anomstream.control c, pg_control_system() s}),
	't', 'production is unaffected');

# A running worker re-checks the claim in every micro-batch: production's control row is
# changed under it (as a restore into a running database would), and its next batch aborts
# before writing anything.
my $prod_positions = durable_positions($prod);
$prod->safe_psql('postgres', 'UPDATE anomstream.control SET system_identifier = 42');
my $log3 = replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '0', '--cycles', '2', '--start-ts', '1604233000', '--seed', '3');
ok( $prod->poll_query_until('postgres',
		"SELECT state = 'claim required' FROM anomstream.status LIMIT 1"),
	"a running worker whose control row names another cluster goes to 'claim required'");
like(slurp_file($prod->logfile), qr/anomstream was restored or re-created under the running worker/,
	'its micro-batch noticed');
is(durable_positions($prod), $prod_positions,
	'the aborted micro-batch moved no position');
$prod->safe_psql('postgres', 'SELECT anomstream.claim()');
load_log($prod, $log3);
ok(wait_ingested($prod), 'after claim() it consumes the rest');

$copy->stop;
$prod->stop;
stop_broker($broker);
done_testing();
