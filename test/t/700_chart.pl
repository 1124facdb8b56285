# anomstream.attack_chart: parse the SVG and compare every drawn point with potential_attacks.
#
# The expected series are computed here from the table's raw rows (not through the chart's own
# zero-filling function): each machine with a row in the range gets one line, a window without
# its row is 0. The values are read back from the drawing's geometry (y-axis ticks, path
# vertices) by test/web/svg_points.py.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('chart');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'anomstream'\nanomstream.brokers = ''\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION anomstream');

my $svg_points = 'test/web/svg_points.py';

# Draw [until - since, until) and compare with the table.
sub check_chart
{
	my ($name, $since, $until, $tz) = @_;
	my $svg = $node->safe_psql('postgres',
		"SET timezone = '$tz'; SELECT anomstream.attack_chart('$since', '$until')");

	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run([ 'python3', $svg_points ], '<', \$svg, '>', \$out, '2>', \$err);
	ok($ok, "$name: SVG well-formed and consistent") or diag($err);

	my %drawn;
	my %machines_drawn;
	for my $line (split /\n/, $out)
	{
		my ($m, $ws, $v) = split /\t/, $line;
		$drawn{"$m|$ws"} = $v;
		$machines_drawn{$m} = 1;
	}

	# Expected: windows of the grid overlapping the range, machines with a row there.
	my $rows = $node->safe_psql('postgres', qq{
		SET timezone = 'UTC';
		WITH r AS (SELECT * FROM anomstream.potential_attacks
				   WHERE window_start < '$until'::timestamptz
					 AND window_end > '$until'::timestamptz - '$since'::interval)
		SELECT m.machine, to_char(g, 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
			   coalesce((SELECT attacks FROM r WHERE r.machine = m.machine AND r.window_start = g), 0)
		  FROM (SELECT DISTINCT machine FROM r) m,
			   generate_series(date_bin('2 min', '$until'::timestamptz - '$since'::interval, 'epoch'),
							   '$until'::timestamptz - interval '1 microsecond', '2 min') g
		 ORDER BY 1, 2});
	my %expected;
	my %machines_expected;
	for my $line (split /\n/, $rows)
	{
		my ($m, $ws, $v) = split /\|/, $line;
		$expected{"$m|$ws"} = $v;
		$machines_expected{$m} = 1;
	}
	is_deeply([ sort keys %machines_drawn ], [ sort keys %machines_expected ],
		"$name: one line per machine with rows in the range");
	is_deeply(\%drawn, \%expected, "$name: every point matches potential_attacks (zeros where no row)");
	return $svg;
}

# Machines 4-8 over an hour of 2-minute windows with gaps; machine 9 only far outside the range.
$node->safe_psql('postgres', q{
	INSERT INTO anomstream.potential_attacks
	SELECT ws, ws + interval '2 min', m, (m * 7 + i * 3) % 11, (m + i) % 3, true
	  FROM generate_series(0, 29) i,
		   LATERAL (SELECT '2024-05-01 10:00+00'::timestamptz + i * interval '2 min' AS ws) w,
		   generate_series(4, 8) m
	 WHERE (m * 7 + i * 3) % 11 <> 0 AND NOT (m = 6 AND i BETWEEN 10 AND 14);
	INSERT INTO anomstream.potential_attacks VALUES
		('2024-04-01 00:00+00', '2024-04-01 00:02+00', 9, 4, 4, true);
});

check_chart('10 minutes', '10 minutes', '2024-05-01 10:30:00+00', 'UTC');
check_chart('misaligned', '9 minutes', '2024-05-01 10:31:30+00', 'Asia/Kolkata');
check_chart('whole hour', '1 hour', '2024-05-01 11:00:00+00', 'UTC');
my $svg = check_chart('gap of machine 6', '12 minutes', '2024-05-01 10:30:00+00', 'UTC');
like($svg, qr/data-machine="6"/, 'machine 6 is drawn even where its rows are missing');
$svg = check_chart('machine 6 absent', '8 minutes', '2024-05-01 10:30:00+00', 'UTC');
unlike($svg, qr/data-machine="6"/, 'a machine without rows in the range has no line');

# A window gains attacks: the chart follows.
$node->safe_psql('postgres', q{
	UPDATE anomstream.potential_attacks SET attacks = attacks + 40
	 WHERE machine = 5 AND window_start = '2024-05-01 10:24+00'});
$svg = check_chart('after update', '10 minutes', '2024-05-01 10:30:00+00', 'UTC');
like($svg, qr/<text class="y-tick" data-value="50"/, 'y axis grows with the data');

# Nothing in range: a valid, empty chart.
my ($out, $err) = ('', '');
$svg = $node->safe_psql('postgres', "SELECT anomstream.attack_chart('10 minutes', '2030-01-01')");
ok(IPC::Run::run([ 'python3', $svg_points ], '<', \$svg, '>', \$out, '2>', \$err), 'empty chart parses')
	or diag($err);
is($out, '', 'empty chart has no points');

# More machines than colours: line styles stay distinct (svg_points checks it).
$node->safe_psql('postgres', q{
	INSERT INTO anomstream.potential_attacks
	SELECT '2025-01-01 00:00+00', '2025-01-01 00:02+00', m, m, m, true FROM generate_series(1, 23) m});
check_chart('23 machines', '2 minutes', '2025-01-01 00:02+00', 'UTC');

# The Grafana dashboard's queries run as a reader (macros expanded as Grafana does) and give
# time series in the (time, metric, value) shape.
{
	use JSON::PP;
	open my $fh, '<', 'grafana/anomstream.json' or die "grafana/anomstream.json: $!";
	my $dash = decode_json(do { local $/; <$fh> });
	close $fh;
	$node->safe_psql('postgres', 'CREATE ROLE grafana_reader LOGIN IN ROLE anomstream_reader');
	my $n = 0;
	for my $panel (@{ $dash->{panels} })
	{
		for my $t (@{ $panel->{targets} })
		{
			my $sql = $t->{rawSql};
			$sql =~ s/\$__timeFrom\(\)/'2024-05-01T10:00:00Z'/g;
			$sql =~ s/\$__timeTo\(\)/'2024-05-01T10:10:00Z'/g;
			$sql =~ s/\$__timeFilter\(("?time"?)\)/$1 BETWEEN '2024-05-01T10:00:00Z' AND '2024-05-01T10:10:00Z'/g;
			unlike($sql, qr/\$__/, "panel '$panel->{title}': all macros expanded");
			my ($ret, $out, $err) = $node->psql('postgres', "SET ROLE grafana_reader; $sql",
				extra_params => [ '-A', '-F', '|', '-P', 'footer=off', '-P', 'tuples_only=off' ]);
			is($ret, 0, "panel '$panel->{title}': query runs as anomstream_reader") or diag($err);
			if ($t->{format} eq 'time_series')
			{
				my ($header) = split /\n/, $out;
				is($header, 'time|metric|value', "panel '$panel->{title}': time, metric, value");
			}
			$n++;
		}
	}
	cmp_ok($n, '>=', 4, 'dashboard has its panels');
	my $series = $node->safe_psql('postgres', q{SET ROLE grafana_reader;
		SELECT count(DISTINCT metric) FROM (SELECT window_start AS "time", 'machine ' || machine AS metric
		FROM anomstream.attacks_between('2024-05-01T10:00:00Z', '2024-05-01T10:10:00Z')) s});
	is($series, 5, 'attacks panel: one series per machine');
}

$node->stop;
done_testing();
