# COPY ... (FORMAT parquet): every file written is read by three independent readers
# (hyparquet, parquet-wasm, DuckDB; test/parquet/check.mjs) and compared value by value with the
# source rows exported by psql, with metadata checked through DuckDB; COPY FROM reads our files
# and files DuckDB writes with each codec and both data page versions; privileges, RLS, errors
# and cancels leave no file behind.
use strict;
use warnings;
use File::Basename qw(basename);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $srcdir = '.';
my $checker = "$srcdir/test/parquet/check.mjs";
die "test/parquet/node_modules is missing: run npm ci --prefix test/parquet (scripts/lib.sh does)\n"
  unless -d "$srcdir/test/parquet/node_modules";

my $dir = PostgreSQL::Test::Utils::tempdir;
my $expected_sql = slurp_file("$srcdir/test/parquet/expected.sql");

my $node = PostgreSQL::Test::Cluster->new('parquet');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'anomstream'\nanomstream.brokers = ''\n");
$node->start;

# Run the node checker; returns (exit ok, output).
sub check_file
{
	my ($file, $json, @opts) = @_;
	my ($out, $err);
	IPC::Run::run([ 'node', $checker, $file, $json, @opts ], '>', \$out, '2>', \$err);
	return ($? == 0, ($out // '') . ($err // ''));
}

# Write the canonical rows of $query to a JSON file for the checker.
sub expected
{
	my ($query, $name) = @_;
	my $json = $node->safe_psql('postgres',
		$expected_sql . "\nSELECT pg_temp.pq_expected(\$q\$$query\$q\$);");
	my $path = "$dir/$name.json";
	open my $fh, '>', $path or die $!;
	print $fh $json;
	close $fh;
	return $path;
}

sub checked
{
	my ($file, $json, $what, @opts) = @_;
	my ($ok, $out) = check_file($file, $json, @opts);
	ok($ok, "$what: all three readers match the source") or diag($out);
}

# Files other than *.parquet in $dir (temporary files must never be left).
sub leftovers
{
	opendir my $dh, $dir or die $!;
	my @f = grep { /\.tmp$/ } readdir $dh;
	closedir $dh;
	return join(',', @f);
}

$node->safe_psql('postgres', q{
CREATE TABLE alltypes (
	id int, b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8,
	n numeric, n5 numeric(5,2), n18 numeric(18,6), n38 numeric(38,10),
	t text, v varchar(20), c char(4), by bytea, d date, ts timestamp, tz timestamptz,
	iv interval, u uuid, j jsonb,
	ai int4[], at text[], af float8[], ad date[], atz timestamptz[], an numeric(10,2)[], ab bool[]);
INSERT INTO alltypes VALUES
 (1, true, 1, 2, 3, 1.5, 2.5, 123.456, 1.25, 123456789012.123456, 1234567890123456789012345678.0123456789,
  'héllo wörld ✓ 🎉', 'varchar', 'ab', '\x00ff10', '2024-02-29', '2024-01-02 03:04:05.123456',
  '2024-01-02 03:04:05.654321+05:30', '1 year 2 mons 3 days 04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{"a": [1, 2, {"b": null}], "ü": "✓"}', '{1,NULL,3}', '{"x",NULL,"ÿ"}', '{1.5,NaN,-Infinity}',
  '{2020-01-01,NULL}', '{"2020-01-01 00:00:00+00"}', '{1.25,-3.50}', '{true,false,NULL}'),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (3, false, -32768, -2147483648, -9223372036854775808, 'NaN', '-Infinity', 'NaN', -999.99,
  -999999999999.999999, -9999999999999999999999999999.9999999999, '', '', '', '\x', '1000-01-01',
  '1000-01-01 00:00:00', '9999-12-31 23:59:59.999999+00', '-1 mons -2 days -00:00:00.000001',
  '00000000-0000-0000-0000-000000000000', '[]', '{}', '{}', '{}', '{}', '{}', '{}', '{}'),
 (4, true, 32767, 2147483647, 9223372036854775807, '-0', 'Infinity', '-0.000001', 0, 0, 0,
  repeat('long ✓ ', 20000), 'x', 'abcd', decode(repeat('ab', 40000), 'hex'), '9999-12-31',
  '1970-01-01 00:00:00', '1969-12-31 23:59:59.999999+00', '0', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
  '"just a string"', (SELECT array_agg(g) FROM generate_series(1, 10000) g), '{""}', '{-0}',
  '{9999-12-31}', '{NULL}', '{NULL}', '{true}');
INSERT INTO alltypes
SELECT g, g % 3 = 0, (g % 100)::int2, g * 7, g::int8 * 1000003, g / 7.0, g / 3.0,
	   (g * 1.5)::numeric, (g % 1000) / 100.0, g * 1.000001, g * 12345.6789,
	   CASE WHEN g % 5 = 0 THEN NULL ELSE 'cat ' || (g % 17) END, 'v' || g, (g % 10)::text,
	   CASE WHEN g % 6 = 0 THEN NULL ELSE int4send(g) END, DATE '2000-01-01' + g,
	   TIMESTAMP '2020-01-01' + g * INTERVAL '1.5 seconds', TIMESTAMPTZ '2020-01-01 00:00+00' + g * INTERVAL '1 minute',
	   g * INTERVAL '1 hour 1 microsecond', md5(g::text)::uuid, jsonb_build_object('g', g),
	   CASE WHEN g % 4 = 0 THEN NULL WHEN g % 4 = 1 THEN '{}' ELSE ARRAY[g, NULL, g + 1] END,
	   ARRAY['a' || g], ARRAY[g / 2.0], ARRAY[DATE '2000-01-01' + g], NULL, ARRAY[(g % 100) / 10.0], ARRAY[g % 2 = 0]
FROM generate_series(5, 5004) g;
CREATE TABLE empty_t (a int, b text, c int[]);
});
my $nrows = 5004;

# ---- COPY TO: every codec, many row groups, checked by three readers ----
my $all_json = expected('SELECT * FROM alltypes ORDER BY id', 'alltypes');
for my $codec (qw(uncompressed snappy gzip zstd))
{
	my $f = "$dir/all_$codec.parquet";
	my $res = $node->safe_psql('postgres',
		"COPY (SELECT * FROM alltypes ORDER BY id) TO '$f' WITH (FORMAT parquet, COMPRESSION $codec, ROW_GROUP_SIZE 1000)");
	checked($f, $all_json, "codec $codec, 6 row groups", '--rows', $nrows, '--row-groups', 6,
		'--codec', $codec, '--stats');
}
$node->safe_psql('postgres',
	"COPY (SELECT * FROM alltypes ORDER BY id) TO '$dir/all_zstd9.parquet' WITH (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 9)");
checked("$dir/all_zstd9.parquet", $all_json, 'zstd level 9, one row group', '--rows', $nrows,
	'--row-groups', 1, '--codec', 'zstd', '--stats');

# COPY n tag, table form chosen by the .parquet suffix (default snappy), one row per row group
my ($ret, $stdout, $stderr) = $node->psql('postgres',
	"COPY alltypes TO '$dir/table_form.parquet'", extra_params => [ '-A', '-t', '-c', '\echo' ]);
like($stderr . $stdout, qr/^$/, 'table form: no error');
checked("$dir/table_form.parquet", expected('SELECT * FROM alltypes', 'table_form'),
	'table form, suffix chooses parquet', '--rows', $nrows, '--row-groups', 1, '--codec', 'snappy');
my $tag = `psql -X -h @{[$node->host]} -p @{[$node->port]} -d postgres -c "COPY (SELECT * FROM alltypes WHERE id < 4) TO '$dir/tag.parquet' (FORMAT parquet, ROW_GROUP_SIZE 1)" 2>&1`;
like($tag, qr/^COPY 3$/m, 'command tag is COPY n');
checked("$dir/tag.parquet", expected('SELECT * FROM alltypes WHERE id < 4', 'tag'),
	'one row per row group', '--rows', 3, '--row-groups', 3);

# column list and empty table
$node->safe_psql('postgres', "COPY alltypes (id, t, ai) TO '$dir/cols.parquet' (FORMAT parquet)");
checked("$dir/cols.parquet", expected('SELECT id, t, ai FROM alltypes', 'cols'), 'column list');
$node->safe_psql('postgres', "COPY empty_t TO '$dir/empty.parquet' (FORMAT parquet)");
checked("$dir/empty.parquet", expected('SELECT * FROM empty_t', 'empty'), 'empty table',
	'--rows', 0, '--row-groups', 0);

# TO STDOUT through psql's \copy
my $stdout_file = "$dir/stdout.parquet";
$node->safe_psql('postgres',
	"\\copy (SELECT * FROM alltypes ORDER BY id) TO '$stdout_file' WITH (FORMAT parquet, COMPRESSION zstd)");
checked($stdout_file, $all_json, 'TO STDOUT via \\copy', '--rows', $nrows, '--codec', 'zstd');

# ---- COPY FROM our own files ----
for my $f (map { "$dir/$_.parquet" } qw(all_uncompressed all_snappy all_gzip all_zstd stdout))
{
	my $r = $node->safe_psql('postgres', qq{
		CREATE TABLE rt (LIKE alltypes);
		COPY rt FROM '$f' (FORMAT parquet);
		SELECT (SELECT count(*) FROM rt) || ' ' ||
			   (SELECT count(*) FROM (SELECT * FROM rt EXCEPT ALL SELECT * FROM alltypes) a) || ' ' ||
			   (SELECT count(*) FROM (SELECT * FROM alltypes EXCEPT ALL SELECT * FROM rt) b);
		DROP TABLE rt;});
	is($r, "$nrows 0 0", 'COPY FROM ' . basename($f) . ' gives back every row');
}
is($node->safe_psql('postgres', qq{
	CREATE TABLE e2 (LIKE empty_t); COPY e2 FROM '$dir/empty.parquet'; SELECT count(*) FROM e2; DROP TABLE e2;}),
	'0', 'COPY FROM an empty file');

# ---- COPY FROM files written by DuckDB (each codec, data pages v1 and v2) ----
{
	my ($out, $err);
	IPC::Run::run([ 'node', "$srcdir/test/parquet/duckdb_write.mjs", $dir ], '>', \$out, '2>', \$err)
	  or die "duckdb_write.mjs failed: $err";
	chomp $out;
	$node->safe_psql('postgres', "CREATE TABLE duck_expected ($out); COPY duck_expected FROM '$dir/duck.csv' (FORMAT csv, HEADER)");
	for my $codec (qw(uncompressed snappy gzip zstd))
	{
		for my $v (qw(v1 v2))
		{
			my $r = $node->safe_psql('postgres', qq{
				CREATE TABLE dgot (LIKE duck_expected INCLUDING ALL);
				COPY dgot FROM '$dir/duck_${codec}_$v.parquet' (FORMAT parquet);
				SELECT (SELECT count(*) FROM dgot) || ' ' ||
					   (SELECT count(*) FROM (SELECT * FROM dgot EXCEPT ALL SELECT * FROM duck_expected) a) || ' ' ||
					   (SELECT count(*) FROM (SELECT * FROM duck_expected EXCEPT ALL SELECT * FROM dgot) b);
				DROP TABLE dgot;});
			is($r, '3000 0 0', "COPY FROM DuckDB file, $codec, data pages $v");
		}
	}
	# by name, into reordered columns; a column missing from the file gets its default
	my $r = $node->safe_psql('postgres', qq{
		CREATE TABLE byname (extra text DEFAULT 'dflt', req int NOT NULL, id int, t text, l int[], tz timestamptz,
			dec numeric(12,3), bl bytea, uid uuid, flag bool, f float4, d float8, s smallint, b bigint, u text, dt date, ts timestamp);
		COPY byname FROM '$dir/duck_zstd_v2.parquet' (FORMAT parquet, MATCH_BY name);
		SELECT count(*) FILTER (WHERE extra = 'dflt') || ' ' ||
			(SELECT count(*) FROM (SELECT id, b, s, d, f, t, u, flag, dt, ts, tz, dec, l, uid, bl, req FROM byname
								   EXCEPT ALL SELECT * FROM duck_expected) x)
		FROM byname;});
	is($r, '3000 0', 'MATCH_BY name: reordered columns, defaults for the rest');
	my ($rc, $o, $e) = $node->psql('postgres', "CREATE TABLE pos (a int); COPY pos FROM '$dir/duck_zstd_v1.parquet' (FORMAT parquet)");
	like($e, qr/has 16 fields, but COPY expects 1 columns/, 'MATCH_BY position: field count must agree');
}

# ---- COPY FROM applies constraints, defaults and triggers like core COPY ----
$node->safe_psql('postgres', q{
	CREATE TABLE small (a int CHECK (a < 100), b text DEFAULT 'd', c int);
	CREATE FUNCTION small_trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.c := NEW.a * 10; RETURN NEW; END $$;
	CREATE TRIGGER small_trg BEFORE INSERT ON small FOR EACH ROW EXECUTE FUNCTION small_trg();
});
$node->safe_psql('postgres', "COPY (SELECT g AS a FROM generate_series(1, 5) g) TO '$dir/small.parquet' (FORMAT parquet)");
is($node->safe_psql('postgres', "COPY small (a) FROM '$dir/small.parquet'; SELECT string_agg(a || b || c, ',' ORDER BY a) FROM small"),
	'1d10,2d20,3d30,4d40,5d50', 'COPY FROM: defaults and BEFORE triggers apply');
$node->safe_psql('postgres', "COPY (SELECT g AS a FROM generate_series(98, 102) g) TO '$dir/big.parquet' (FORMAT parquet)");
($ret, $stdout, $stderr) = $node->psql('postgres', "COPY small (a) FROM '$dir/big.parquet'");
like($stderr, qr/violates check constraint "small_a_check"/, 'COPY FROM: CHECK constraints apply');
is($node->safe_psql('postgres', 'SELECT count(*) FROM small'), '5', 'COPY FROM: a failed COPY inserts nothing');
is($node->safe_psql('postgres', "COPY small (a) FROM '$dir/small.parquet' WHERE a > 3; SELECT count(*) FROM small"),
	'7', 'COPY FROM ... WHERE');

# ---- privileges, RLS ----
$node->safe_psql('postgres', q{
	CREATE ROLE plain LOGIN;
	CREATE ROLE writer LOGIN IN ROLE pg_write_server_files;
	CREATE ROLE reader LOGIN IN ROLE pg_read_server_files;
	CREATE TABLE secret (a int, owner text);
	INSERT INTO secret SELECT g, CASE WHEN g % 2 = 0 THEN 'writer' ELSE 'other' END FROM generate_series(1, 10) g;
	CREATE TABLE rls (a int, owner text);
	INSERT INTO rls SELECT a, owner FROM secret;
	ALTER TABLE rls ENABLE ROW LEVEL SECURITY;
	CREATE POLICY mine ON rls USING (owner = current_user);
	GRANT SELECT ON rls TO writer, plain;
	GRANT SELECT, INSERT ON small TO reader;
});
($ret, $stdout, $stderr) = $node->psql('postgres', "SET ROLE plain; COPY rls TO '$dir/plain.parquet' (FORMAT parquet)");
like($stderr, qr/must be superuser or have privileges of the pg_write_server_files role to COPY to a file/,
	'COPY TO file needs pg_write_server_files');
ok(!-e "$dir/plain.parquet", 'no file after a privilege error');
($ret, $stdout, $stderr) = $node->psql('postgres', "SET ROLE writer; COPY secret TO '$dir/secret.parquet' (FORMAT parquet)");
like($stderr, qr/permission denied for table secret/, 'COPY TO needs SELECT on the table');
ok(!-e "$dir/secret.parquet", 'no file after a table privilege error');
$node->safe_psql('postgres', "SET ROLE writer; COPY rls TO '$dir/rls.parquet' (FORMAT parquet)");
checked("$dir/rls.parquet", expected("SELECT a, owner FROM rls WHERE owner = 'writer'", 'rls'),
	'row-level security filters COPY TO', '--rows', 5);
($ret, $stdout, $stderr) = $node->psql('postgres', "SET ROLE plain; COPY small FROM '$dir/small.parquet' (FORMAT parquet)");
like($stderr, qr/pg_read_server_files role to COPY from a file/, 'COPY FROM file needs pg_read_server_files');
is($node->safe_psql('postgres', "SET ROLE reader; COPY small (a) FROM '$dir/small.parquet'; SELECT count(*) FROM small"),
	'12', 'pg_read_server_files may COPY FROM');
$node->safe_psql('postgres', 'GRANT INSERT ON rls TO reader');
($ret, $stdout, $stderr) = $node->psql('postgres', "SET ROLE reader; COPY rls FROM '$dir/rls.parquet' (FORMAT parquet)");
like($stderr, qr/COPY FROM not supported with row-level security/, 'COPY FROM a table with RLS is refused');
$node->safe_psql('postgres', "SET ROLE plain; \\copy rls TO '$dir/plain_stdout.parquet' (FORMAT parquet)");
checked("$dir/plain_stdout.parquet", expected("SELECT a, owner FROM rls WHERE owner = 'plain'", 'plain_stdout'),
	'anyone may COPY TO STDOUT (\\copy), with RLS', '--rows', 0);

# ---- errors and cancels leave no file; the old file stays intact ----
($ret, $stdout, $stderr) = $node->psql('postgres', "COPY (SELECT point(1,2) AS p) TO '$dir/point.parquet' (FORMAT parquet)");
like($stderr, qr/column "p" has type point, which cannot be written to Parquet/, 'unsupported type names the column');
ok(!-e "$dir/point.parquet", 'no file after an unsupported type');
($ret, $stdout, $stderr) = $node->psql('postgres',
	"COPY (SELECT 1 / (500 - g) AS x FROM generate_series(1, 1000) g) TO '$dir/tag.parquet' (FORMAT parquet, ROW_GROUP_SIZE 10)");
like($stderr, qr/division by zero/, 'an error in the middle of the query');
checked("$dir/tag.parquet", expected('SELECT * FROM alltypes WHERE id < 4', 'tag2'),
	'a failed COPY leaves the existing file untouched', '--rows', 3);
($ret, $stdout, $stderr) = $node->psql('postgres',
	"SET statement_timeout = '300ms'; COPY (SELECT g, pg_sleep(0.01)::text AS s FROM generate_series(1, 1000) g) TO '$dir/cancel.parquet' (FORMAT parquet, ROW_GROUP_SIZE 5)");
like($stderr, qr/canceling statement due to statement timeout/, 'a cancelled COPY');
ok(!-e "$dir/cancel.parquet", 'no file after a cancel');
($ret, $stdout, $stderr) = $node->psql('postgres', "COPY (SELECT 1 AS a, 2 AS a) TO '$dir/dup.parquet' (FORMAT parquet)");
like($stderr, qr/column name "a" appears more than once/, 'duplicate column names are refused');
($ret, $stdout, $stderr) = $node->psql('postgres', "COPY (SELECT '{{1,2},{3,4}}'::int[] AS m) TO '$dir/md.parquet' (FORMAT parquet)");
like($stderr, qr/column "m": multi-dimensional arrays cannot be written/, 'multi-dimensional arrays are refused');
($ret, $stdout, $stderr) = $node->psql('postgres', "COPY (SELECT 'infinity'::timestamptz AS t) TO '$dir/inf.parquet' (FORMAT parquet)");
like($stderr, qr/column "t": infinite/, 'infinite timestamps are refused');
is(leftovers(), '', 'no temporary files left behind');

# ---- options and what we do not serve get our own errors ----
my %bad = (
	"COPY alltypes TO PROGRAM 'cat' (FORMAT parquet)" => qr/COPY TO PROGRAM is not supported with FORMAT parquet/,
	"COPY small FROM STDIN (FORMAT parquet)" => qr/COPY FROM STDIN is not supported with FORMAT parquet/,
	"COPY alltypes TO '$dir/x.parquet' (FORMAT parquet, DELIMITER ',')" => qr/option "delimiter" is not supported by COPY TO with FORMAT parquet/,
	"COPY alltypes TO '$dir/x.parquet' (FORMAT parquet, COMPRESSION lz4)" => qr/unsupported Parquet compression "lz4"/,
	"COPY alltypes TO '$dir/x.parquet' (FORMAT parquet, COMPRESSION snappy, COMPRESSION_LEVEL 3)" => qr/COMPRESSION_LEVEL is not supported with compression snappy/,
	"COPY alltypes TO '$dir/x.parquet' (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 30)" => qr/COMPRESSION_LEVEL 30 is out of range for zstd/,
	"COPY alltypes TO '$dir/x.parquet' (FORMAT parquet, ROW_GROUP_SIZE 0)" => qr/ROW_GROUP_SIZE must be between/,
	"COPY alltypes TO 'relative.parquet' (FORMAT parquet)" => qr/relative path not allowed for COPY to file/,
	"COPY small FROM '$dir/small.parquet' (FORMAT parquet, MATCH_BY colour)" => qr/MATCH_BY must be "name" or "position"/,
);
for my $sql (sort keys %bad)
{
	($ret, $stdout, $stderr) = $node->psql('postgres', $sql);
	like($stderr, $bad{$sql}, "refused: $sql");
	unlike($stderr, qr/not recognized/, "not core's error: $sql");
}

# other COPYs pass through untouched, also to a .parquet name with an explicit other format
$node->safe_psql('postgres', "COPY (SELECT 1 AS a) TO '$dir/plain.csv' (FORMAT csv); COPY (SELECT 1 AS a) TO '$dir/csv.parquet' (FORMAT csv)");
is(slurp_file("$dir/csv.parquet"), "1\n", 'FORMAT csv to a .parquet name writes CSV');
is(slurp_file("$dir/plain.csv"), "1\n", 'COPY csv passes through');

# ---- malformed files are errors, not crashes ----
{
	my $good = slurp_file("$dir/all_snappy.parquet");
	my %files = (
		garbage => 'not a parquet file at all, just some text........',
		truncated => substr($good, 0, length($good) / 2),
		bad_footer_len => substr($good, 0, length($good) - 8) . pack('V', 0x7fffffff) . 'PAR1',
		corrupt_page_header => substr($good, 0, 4) . ("\xff" x 40) . substr($good, 44),
		zero_page_header => substr($good, 0, 4) . ("\x00" x 40) . substr($good, 44),
		corrupt_footer => substr($good, 0, length($good) - 300) . ("\x19" x 292) . substr($good, -8),
	);
	for my $name (sort keys %files)
	{
		open my $fh, '>:raw', "$dir/bad_$name.parquet" or die $!;
		print $fh $files{$name};
		close $fh;
		($ret, $stdout, $stderr) = $node->psql('postgres',
			"CREATE TABLE IF NOT EXISTS badt (LIKE alltypes); COPY badt FROM '$dir/bad_$name.parquet'");
		like($stderr, qr/invalid Parquet file|Parquet field|out of range|invalid|could not/, "malformed file ($name) is an error");
	}
	is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server survived the malformed files');
}

# ---- without preloading, the hook exists after LOAD ----
$node->append_conf('postgresql.conf', "shared_preload_libraries = ''\n");
$node->restart;
($ret, $stdout, $stderr) = $node->psql('postgres', "COPY empty_t TO '$dir/noload.parquet' (FORMAT parquet)");
like($stderr, qr/COPY format "parquet" not recognized/, 'without the library loaded, core COPY answers');
$node->safe_psql('postgres', "LOAD 'anomstream'; COPY empty_t TO '$dir/load.parquet' (FORMAT parquet)");
ok(-e "$dir/load.parquet", "after LOAD 'anomstream' the hook serves COPY");

$node->stop;
done_testing();
