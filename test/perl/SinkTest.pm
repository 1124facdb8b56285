# SinkTest.pm - shared pieces of the continuous Parquet sinks' TAP tests (510, 511).
#
# The part files are read by programs that share no code with anomstream: DuckDB reads the
# union of a sink's files (test/parquet/union_keys.mjs), Digest::SHA checksums them; the
# results are compared in SQL with the replayer's delivery log and the manifest.
package SinkTest;

use strict;
use warnings;

use Digest::SHA;
use Exporter qw(import);
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(sink_files load_union check_exactly_once check_directory immediate_restart);

my $srcdir = '.';
die "test/parquet/node_modules is missing: run npm ci --prefix test/parquet (scripts/lib.sh does)\n"
  unless -d "$srcdir/test/parquet/node_modules";

# Stop the server in immediate mode (a crash for the unlogged tables) and start it again.
sub immediate_restart
{
	my ($node) = @_;
	$node->stop('immediate');
	$node->start;
	note 'immediate stop and start';
}

# The names in a sink directory, sorted.
sub sink_files
{
	my ($dir) = @_;
	opendir my $dh, $dir or die "$dir: $!";
	my @f = sort grep { !/^\.\.?$/ } readdir $dh;
	closedir $dh;
	return @f;
}

# Load the columns $cols of every file matching $glob in $dir (DuckDB reads them together)
# into a new table $table shaped like those columns of $like.
sub load_union
{
	my ($node, $dir, $glob, $cols, $like, $table) = @_;
	my $work = PostgreSQL::Test::Utils::tempdir();
	my $tsv = "$work/$table.tsv";
	my ($o, $e) = ('', '');
	IPC::Run::run([ 'node', "$srcdir/test/parquet/union_keys.mjs", "$dir/$glob", $cols, $tsv ],
		'>', \$o, '2>', \$e)
	  or die "union_keys failed: $e";
	chmod 0755, $work;
	chmod 0644, $tsv;
	$node->safe_psql('postgres', qq{
		CREATE TABLE $table AS SELECT $cols FROM $like WITH NO DATA;
		COPY $table FROM '$tsv' (FORMAT csv, DELIMITER E'\\t');});
}

# Every input row of the replayer's log (t_exp_process, t_exp_memory) is in exactly one part
# file of its sink: the union of the files EXCEPT ALL the input is empty, both ways.
sub check_exactly_once
{
	my ($node, $dir) = @_;
	my $key = 'kafka_partition, kafka_offset, row_index';
	for my $s ('process', 'memory')
	{
		load_union($node, $dir, "$s-*.parquet", $key, "anomstream.${s}_events", "f_$s");
		for my $case ([ 'missing', "SELECT $key FROM t_exp_$s", "SELECT * FROM f_$s" ],
			[ 'extra or twice', "SELECT * FROM f_$s", "SELECT $key FROM t_exp_$s" ])
		{
			is($node->safe_psql('postgres',
					"SELECT count(*) FROM ($case->[1] EXCEPT ALL $case->[2]) d"),
				'0', "$s rows in the part files: none $case->[0]");
		}
	}
}

# No in-progress file; the directory holds exactly the manifest's files with the manifest's
# sizes and SHA-256 checksums. Returns the manifest as { file => { bytes, sha } }.
sub check_directory
{
	my ($node, $dir) = @_;
	my @files = sink_files($dir);
	is(join(',', grep { /inprogress/ } @files), '', 'no in-progress file is left');
	my %manifest = map { my @f = split /\|/; ($f[0] => { bytes => $f[1], sha => $f[2] }) }
	  split /\n/, $node->safe_psql('postgres',
		"SELECT file, bytes, checksum FROM anomstream.sink_manifest WHERE directory = '$dir'");
	is(join(',', @files), join(',', sort keys %manifest),
		'the directory holds exactly the manifest\'s files');
	my $bad = 0;
	for my $f (@files)
	{
		next unless $manifest{$f};
		my $sha = Digest::SHA->new(256)->addfile("$dir/$f")->hexdigest;
		$bad++ if $sha ne $manifest{$f}{sha} || -s "$dir/$f" != $manifest{$f}{bytes};
	}
	is($bad, 0, 'sizes and SHA-256 checksums match the manifest');
	return \%manifest;
}

1;
