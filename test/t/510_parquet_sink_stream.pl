# Continuous Parquet sinks (DESIGN.md §8) under crashes: the process, memory and detected
# sinks stream into part files with small roll settings while the worker is killed (kill -9),
# an ordinary backend is killed and the server is stopped in immediate mode at random points.
# Afterwards:
#  - every input row (from the replayer's delivery log) is in exactly one process or memory
#    part file, and every detected_attacks row in exactly one detected part (the union of the
#    files, read by DuckDB, EXCEPT ALL both ways);
#  - each part's ranges tile the offsets (batch ids) without gap or overlap;
#  - every file is read by hyparquet, parquet-wasm and DuckDB and equals, value by value, the
#    rows of its range (staging, itself equal to the input; detected_attacks);
#  - no in-progress file is left, the directory holds exactly the manifest's files, with the
#    manifest's sizes and SHA-256 checksums;
#  - at start the worker completes a committed part left under its in-progress name and
#    deletes an in-progress file that has no manifest row;
#  - a role without pg_write_server_files cannot choose a sink directory.
use strict;
use warnings;

use AnomstreamTest;
use Digest::SHA;
use IPC::Run;
use PipelineTest;
use SinkTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my $srcdir = '.';
my $expected_sql = slurp_file("$srcdir/test/parquet/expected.sql");

my $seed = $ENV{ANOMSTREAM_CRASH_SEED} // time();
srand($seed);
note "random seed $seed (ANOMSTREAM_CRASH_SEED reproduces the crash points)";

my $broker = start_broker(partitions => 2);
my ($pcsv, $mcsv) = generated_csvs(rows => 3000, seed => 7);
my $node = new_node('sinks', $broker->{bootstrap},
	pipeline_settings(lateness => '5s', window => '2min', new_attack_retention => '6min',
		join_bound => '30s', idle_timeout => '10s') . qq{
anomstream.max_batch_rows = 250
anomstream.trigger_interval = '50ms'
anomstream.sink_roll_rows = 2500
anomstream.sink_roll_interval = '4s'
});
my $dir = PostgreSQL::Test::Utils::tempdir();
my $work = PostgreSQL::Test::Utils::tempdir();

# Privileges (DESIGN.md §10): anomstream_admin and (superuser or pg_write_server_files).
$node->safe_psql('postgres', q{
CREATE ROLE sink_nobody LOGIN IN ROLE anomstream_admin;
CREATE ROLE sink_writer LOGIN IN ROLE anomstream_admin, pg_write_server_files;});
my ($rc, $out, $err) = $node->psql('postgres',
	"SET ROLE sink_nobody; SELECT anomstream.set_sink('process', '$dir')",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/42501: permission denied to set the directory of a Parquet sink/,
	'an anomstream_admin without pg_write_server_files cannot set a sink directory');
is($node->safe_psql('postgres', 'SELECT count(*) FROM anomstream.sinks'), '0',
	'and nothing was recorded');
$node->safe_psql('postgres',
	"SET ROLE sink_writer; SELECT anomstream.set_sink('process', '$dir')");
is($node->safe_psql('postgres', 'SELECT set_by FROM anomstream.sinks'), 'sink_writer',
	'a member of pg_write_server_files can, and is recorded as the one who did');
$node->safe_psql('postgres', qq{
SELECT anomstream.set_sink('memory', '$dir');
SELECT anomstream.set_sink('detected', '$dir');});

my ($replayer, $log, $r) = replay_bg($broker->{bootstrap}, '--process', $pcsv, '--memory', $mcsv,
	'--speedup', '20', '--cycles', '80', '--start-ts', '1604231589', '--seed', '3');

my $n = 0;
for my $c (\&kill_worker, \&immediate_restart, \&kill_backend, \&kill_worker)
{
	$node->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM anomstream.sink_manifest WHERE committed_at > now() - interval '1 min'")
	  or die 'no parts';
	sleep(rand(2.0));
	$c->($node);
	$n++;
}
stop_bg($replayer) or die "replayer failed: $r->{err}";

load_log($node, $log);
ok(wait_ingested($node), "all rows arrived after $n crashes");
my $cmp = compare_staging($node);
is($cmp->{$_}, '0', "staging equals input: $_") for sort keys %$cmp;

# The last open parts roll by age (the worker checks every 10 s when no data arrives).
ok( $node->poll_query_until('postgres', q{
	SELECT coalesce(sum(open_rows), 0) = 0 AND count(*) > 0 FROM anomstream.sink_positions}),
	'every open part was written');
my $parts = $node->safe_psql('postgres', q{
	SELECT sink || ' ' || count(*) || ' parts, ' || sum(rows) || ' rows'
	FROM anomstream.sink_manifest GROUP BY sink ORDER BY sink});
note "parts: $parts";
cmp_ok($node->safe_psql('postgres',
		"SELECT count(*) FROM anomstream.sink_manifest WHERE sink = 'process'"),
	'>', 4, 'the process sink rolled several parts');

# Ranges: no two parts of a partition overlap; the detected parts tile the batch ids, the
# process and memory parts tile the offsets except ranges without any input row.
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (
		SELECT sink, kafka_partition, coalesce(first_offset, first_batch) AS f,
			   lag(coalesce(last_offset, last_batch)) OVER w AS prev_last
		FROM anomstream.sink_manifest
		WINDOW w AS (PARTITION BY sink, kafka_partition ORDER BY coalesce(first_offset, first_batch))) t
	WHERE prev_last IS NOT NULL AND (f <= prev_last OR (sink = 'detected' AND f <> prev_last + 1))}),
	'0', 'part ranges never overlap, detected parts leave no gap');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM anomstream.sink_positions sp
	WHERE sp.next_position < (SELECT max(coalesce(m.last_offset, m.last_batch)) + 1
	                           FROM anomstream.sink_manifest m
	                           WHERE m.sink = sp.sink AND coalesce(m.kafka_partition, -1) = sp.kafka_partition)
}), '0', 'the committed positions are at or past the last parts\' ends');

# The directory against the manifest; every input row exactly once across the part files.
my @files = sink_files($dir);
my %manifest = %{ check_directory($node, $dir) };
check_exactly_once($node, $dir);
my $dkey = 'p_kafka_partition, p_kafka_offset, p_row_index, m_kafka_partition, m_kafka_offset, m_row_index';
load_union($node, $dir, 'detected-*.parquet', $dkey, 'anomstream.detected_attacks', 'f_detected');
my $pairs = $node->safe_psql('postgres', 'SELECT count(*) FROM anomstream.detected_attacks');
cmp_ok($pairs, '>', 10, "pairs were detected ($pairs)");
is($node->safe_psql('postgres', "SELECT count(*) FROM ((SELECT $dkey FROM anomstream.detected_attacks EXCEPT ALL SELECT * FROM f_detected) UNION ALL (SELECT * FROM f_detected EXCEPT ALL SELECT $dkey FROM anomstream.detected_attacks)) d"),
	'0', 'detected parts hold every pair exactly once');

# Every file, value by value, in three readers.
my $list = '';
my @parts = split /\n/, $node->safe_psql('postgres', q{
	SELECT file, sink, coalesce(kafka_partition, -1), coalesce(first_offset, first_batch),
		   coalesce(last_offset, last_batch), rows
	FROM anomstream.sink_manifest ORDER BY id});
my %cols;
for my $t ('process_events', 'memory_events')
{
	$cols{$t} = $node->safe_psql('postgres', qq{
		SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
		WHERE attrelid = 'anomstream.$t'::regclass AND attnum > 0 AND NOT attisdropped
		  AND attname <> 'batch_id'});
}
for my $p (@parts)
{
	my ($file, $sink, $part, $first, $last, $rows) = split /\|/, $p;
	my $q = $sink eq 'detected'
	  ? "SELECT * FROM anomstream.detected_attacks WHERE batch_id BETWEEN $first AND $last ORDER BY batch_id, $dkey"
	  : "SELECT $cols{\"${sink}_events\"} FROM anomstream.${sink}_events WHERE kafka_partition = $part AND kafka_offset BETWEEN $first AND $last ORDER BY kafka_offset, row_index";
	my $json = $node->safe_psql('postgres', $expected_sql . "\nSELECT pg_temp.pq_expected(\$q\$$q\$q\$);");
	open my $fh, '>', "$work/$file.json" or die $!;
	print $fh $json;
	close $fh;
	$list .= "$dir/$file\t$work/$file.json\t--rows\t$rows\n";
}
open my $lh, '>', "$work/list" or die $!;
print $lh $list;
close $lh;
my ($co, $ce) = ('', '');
IPC::Run::run([ 'node', "$srcdir/test/parquet/check.mjs", '--list', "$work/list" ], '>', \$co, '2>', \$ce);
ok($? == 0, scalar(@parts) . ' part files: all three readers match the rows of their ranges')
  or diag($co . $ce);

# Start-up recovery: a committed part still under its in-progress name is renamed, an
# in-progress file without a manifest row is deleted.
$node->stop('immediate');
my ($victim) = grep { /^memory-/ } @files;
(my $hidden = $victim) =~ s/\.parquet$/.inprogress/;
rename("$dir/$victim", "$dir/.$hidden") or die $!;
my $orphan = '.process-p0-00000000009999999000-00000000009999999999.inprogress';
open my $oh, '>', "$dir/$orphan" or die $!;
print $oh 'partial';
close $oh;
$node->start;
ok( $node->poll_query_until('postgres', "SELECT state = 'running' FROM anomstream.status LIMIT 1"),
	'the worker runs again');
ok(-e "$dir/$victim" && !-e "$dir/.$hidden", 'a committed part left in progress was completed at start');
ok(!-e "$dir/$orphan", 'an in-progress file without a manifest row was removed at start');
is(Digest::SHA->new(256)->addfile("$dir/$victim")->hexdigest, $manifest{$victim}{sha},
	'the completed part is the committed one');

# Off: positions go, committed parts and manifest rows stay.
$node->safe_psql('postgres', "SELECT anomstream.set_sink('process', NULL)");
is($node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM anomstream.sinks WHERE name = 'process') +
		   (SELECT count(*) FROM anomstream.sink_positions WHERE sink = 'process')}), '0',
	'set_sink(name, NULL) turns a sink off');

$node->stop;
stop_broker($broker);
done_testing();
