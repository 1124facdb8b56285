# Scoring oracle: anomstream's predictions (SQL predict and the pipeline's scoring path) equal
# those of Debian's python3-xgboost for the same model bytes and rows (|difference| < 1e-6),
# for a model trained by anomstream.train, the shipped default model, and models written by
# Python (JSON and UBJSON) and imported.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MIME::Base64;
use File::Basename;

my $python = '/usr/bin/python3';
if (system("$python -c 'import xgboost' >/dev/null 2>&1") != 0)
{
	plan skip_all => 'python3-xgboost is not installed';
}
my $oracle = dirname(__FILE__) . '/../score_oracle.py';

my $node = PostgreSQL::Test::Cluster->new('oracle');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'anomstream'\nanomstream.brokers = ''");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION anomstream');

# Labelled process rows with NULLs and values no model has seen (cmd 'zz_unseen', state 'D').
$node->safe_psql('postgres', q{
INSERT INTO anomstream.process_events (sequence, machine, pid, trun, tslpi, tslpu, poli, nice,
	pri, rtpr, cpunr, status, exc, state, cpu, cmd, cmd_pid, event_time, batch_id,
	kafka_partition, kafka_offset, row_index)
SELECT g, 4 + g % 5, 1000 + g,
	CASE WHEN g % 37 = 0 THEN NULL ELSE ((hashint4(g) & 2147483647) % 3) END,
	((hashint4(g + 100000) & 2147483647) % 20),
	0, (ARRAY['norm', '0', NULL])[1 + (hashint4(g + 200000) & 2147483647) % 3],
	0, 120, 0, ((hashint4(g + 300000) & 2147483647) % 4),
	(ARRAY['0', '-', 'N', 'NE'])[1 + (hashint4(g + 400000) & 2147483647) % 4],
	0, (ARRAY['S', 'R', 'E', 'D'])[1 + (hashint4(g + 500000) & 2147483647) % 4],
	((hashint4(g + 600000) & 2147483647) % 1000) / 1000.0,
	(ARRAY['atop', 'apache2', 'sshd', 'nmap', 'hydra', 'cron', 'zz_unseen', NULL, 'sqlmap', 'bash'])
		[1 + (hashint4(g + 700000) & 2147483647) % 10],
	NULL, now(), 1, 0, g, 0
FROM generate_series(1, 3000) g;
CREATE TABLE labelled AS
SELECT e.*, (COALESCE(cmd IN ('nmap', 'hydra', 'sqlmap'), false)
	OR COALESCE(state = 'R' AND cpu >= 0.9 AND tslpi >= 8, false))::int AS attack
FROM anomstream.process_events e;
});

my $trained = $node->safe_psql('postgres', q{
SELECT version FROM anomstream.train('oracle_proc',
	'SELECT * FROM labelled WHERE cmd IS DISTINCT FROM ''zz_unseen'' AND state <> ''D'' ORDER BY sequence',
	'attack', ARRAY['trun', 'tslpi', 'cpu', 'cpunr', 'state', 'status', 'cmd', 'poli'],
	'{"num_boost_round": 30, "max_depth": 5}', 'process',
	'{"state": "onehot", "status": "onehot", "cmd": "dictionary", "poli": "dictionary"}')});
ok($trained > 0, 'trained a model with one-hot and dictionary features');

my $dir = PostgreSQL::Test::Utils::tempdir;

sub write_file
{
	my ($path, $data) = @_;
	open(my $fh, '>', $path) or die "$path: $!";
	binmode $fh;
	print $fh $data;
	close $fh;
}

sub read_lines
{
	my ($path) = @_;
	open(my $fh, '<', $path) or die "$path: $!";
	my @l = map { chomp; $_ } <$fh>;
	close $fh;
	return @l;
}

# Rows in staging order, as CSV with \N for NULL.
my $csv = $node->safe_psql('postgres',
	q{COPY (SELECT * FROM labelled ORDER BY kafka_offset) TO STDOUT WITH (FORMAT csv, HEADER, NULL '\N')});
write_file("$dir/rows.csv", "$csv\n");

# Compare a list of (probability, prediction) rows from SQL with the oracle's probabilities.
sub compare
{
	my ($what, $sql_out, $oracle_file, $threshold) = @_;
	my @mine = split /\n/, $sql_out;
	my @theirs = read_lines($oracle_file);
	is(scalar(@mine), scalar(@theirs), "$what: as many rows as the oracle");
	my ($far, $wrong) = (0, 0);
	my $maxdiff = 0;
	for my $i (0 .. $#theirs)
	{
		my ($p, $pred) = split /\|/, $mine[$i];
		my $d = abs($p - $theirs[$i]);
		$maxdiff = $d if $d > $maxdiff;
		$far++ if $d >= 1e-6;
		$wrong++ if $pred != ($p >= $threshold ? 1 : 0);
	}
	is($far, 0, "$what: every probability within 1e-6 of python3-xgboost (max difference $maxdiff)");
	is($wrong, 0, "$what: prediction = (probability >= $threshold) on every row");
}

for my $model ('oracle_proc', 'process_default')
{
	my $b64 = $node->safe_psql('postgres', "SELECT encode(anomstream.export_model('$model'), 'base64')");
	write_file("$dir/$model.json", decode_base64($b64));
	my $meta = $node->safe_psql('postgres',
		"SELECT json_build_object('features', features, 'encoding', encoding) FROM anomstream.models WHERE name = '$model'");
	write_file("$dir/$model.meta", $meta);
	my $threshold = $node->safe_psql('postgres', "SELECT threshold FROM anomstream.models WHERE name = '$model'");
	system($python, $oracle, 'predict', "$dir/$model.json", "$dir/$model.meta", "$dir/rows.csv", "$dir/$model.out") == 0
	  or die "oracle failed for $model";

	my $per_row = $node->safe_psql('postgres', qq{
SELECT p.probability, p.prediction FROM anomstream.process_events e,
	LATERAL anomstream.predict('$model', e) p ORDER BY e.kafka_offset});
	compare("$model, SQL predict per row", $per_row, "$dir/$model.out", $threshold);

	my $batch = $node->safe_psql('postgres', qq{
SELECT probability, prediction FROM anomstream.predict('$model',
	ARRAY(SELECT e FROM anomstream.process_events e ORDER BY kafka_offset))});
	compare("$model, SQL predict over an array of rows", $batch, "$dir/$model.out", $threshold);

	# The pipeline's path: anomstream_score_slots with the model active for the stream.
	$node->safe_psql('postgres', "SELECT anomstream.activate('$model')");
	my $slots = $node->safe_psql('postgres', q{
SELECT probability, prediction FROM anomstream.score_rows('process',
	'SELECT * FROM anomstream.process_events ORDER BY kafka_offset', 700) ORDER BY ord});
	compare("$model, anomstream_score_slots", $slots, "$dir/$model.out", $threshold);
}

# Models written by Python (JSON and UBJSON), imported with their feature list.
system($python, $oracle, 'train', "$dir/rows.csv", 'trun,tslpi,cpu,cpunr', 'attack', "$dir/py") == 0
  or die "python training failed";
for my $fmt ('json', 'ubj')
{
	my $hex = unpack('H*', slurp_file("$dir/py.$fmt"));
	my $v = $node->safe_psql('postgres', qq{
SELECT anomstream.import_model('python_$fmt', '\\x$hex'::bytea,
	features => ARRAY['trun', 'tslpi', 'cpu', 'cpunr'], stream => 'process')});
	ok($v > 0, "imported a model written by Python ($fmt)");
	is($node->safe_psql('postgres', "SELECT format FROM anomstream.models WHERE name = 'python_$fmt'"),
		$fmt, "stored as $fmt");
	is($node->safe_psql('postgres', "SELECT anomstream.export_model('python_$fmt') = '\\x$hex'::bytea"),
		't', "export_model returns the Python bytes unchanged ($fmt)");
	my $per_row = $node->safe_psql('postgres', qq{
SELECT p.probability, p.prediction FROM anomstream.process_events e,
	LATERAL anomstream.predict('python_$fmt', e) p ORDER BY e.kafka_offset});
	compare("Python model ($fmt), SQL predict", $per_row, "$dir/py.pred", 0.5);
}

$node->stop;
done_testing();
