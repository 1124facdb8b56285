# A library of another schema version consumes nothing (DESIGN.md §10: ALTER EXTENSION UPDATE
# with a schema-version mismatch pauses the worker). The mismatch is produced the way a
# library upgrade without ALTER EXTENSION UPDATE presents itself to the worker: the catalog's
# extversion differs from the version the library was built for. While they differ the worker
# shows 'paused (schema version mismatch)', stages nothing and moves no position, and says
# why in the log with a hint; once they agree it resumes and every row arrives exactly once.
use strict;
use warnings;

use AnomstreamTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $broker = start_broker(partitions => 2);
my ($pcsv, $mcsv) = input_csvs();
my $node = new_node('ops_schema', $broker->{bootstrap});
$node->poll_query_until('postgres',
	"SELECT bool_and(state = 'running') AND count(*) = 4 FROM anomstream.status")
  or die 'worker not running';
my $version = $node->safe_psql('postgres',
	"SELECT extversion FROM pg_extension WHERE extname = 'anomstream'");


my $log1 = replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '0', '--cycles', '3', '--start-ts', '1604231589', '--seed', '1');
load_log($node, $log1);
ok(wait_ingested($node), 'first replay consumed');
my $n1 = staged_rows($node);

# The catalog now says another schema version than the library's.
my $offset = -s $node->logfile;
$node->safe_psql('postgres',
	"UPDATE pg_extension SET extversion = '0.0-test' WHERE extname = 'anomstream'");
ok( $node->poll_query_until('postgres',
		"SELECT worker_state = 'paused (schema version mismatch)' FROM anomstream.worker_status()"),
	'the worker pauses on a schema version mismatch');
ok( $node->wait_for_log(qr/schema version "0\.0-test" does not match library version "\Q$version\E"/,
		$offset),
	'the log says which versions differ');
like(slurp_file($node->logfile, $offset), qr/HINT:\s+Run ALTER EXTENSION anomstream UPDATE/,
	'with a hint');
my $pos1 = durable_positions($node);

my $log2 = replay($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '0', '--cycles', '3', '--start-ts', '1604232000', '--seed', '2');
ok( $node->poll_query_until('postgres', q{
		SELECT worker_state_since < now() - interval '6 seconds' FROM anomstream.worker_status()}),
	'mismatched for a while with new data in Kafka');
is(staged_rows($node), $n1, 'nothing is staged while the versions differ');
is(durable_positions($node), $pos1, 'and no position moves');

# The versions agree again (what ALTER EXTENSION UPDATE does): consumption resumes.
$node->safe_psql('postgres',
	"UPDATE pg_extension SET extversion = '$version' WHERE extname = 'anomstream'");
load_log($node, $log2);
ok(wait_ingested($node), 'after the versions agree the backlog is consumed');
ok($node->poll_query_until('postgres', "SELECT bool_and(state = 'running') FROM anomstream.status"),
	"state 'running' again");
my $cmp = compare_staging($node);
is($cmp->{$_}, '0', "staging vs input after the mismatch: $_") for sort keys %$cmp;

$node->stop;
stop_broker($broker);
done_testing();
