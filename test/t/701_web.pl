# anomstream-web: the page (in headless Chromium), the JSON and SVG it fetches, /metrics in strict
# Prometheus text format, malformed requests and 200 concurrent clients, bounded connections,
# the superuser refusal, and a server without the preloaded library.
use strict;
use warnings;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $web = 'src/web/anomstream-web';
system('make', '-s', '-C', 'src/web') == 0 or BAIL_OUT('cannot build anomstream-web');

my $node = PostgreSQL::Test::Cluster->new('web');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'anomstream'\nanomstream.brokers = ''\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION anomstream;
	CREATE ROLE web_reader LOGIN IN ROLE anomstream_reader;
	-- Five machines over the last ten minutes, machine 6 with a missing window.
	INSERT INTO anomstream.potential_attacks
	SELECT ws, ws + interval '2 min', m, m + i, 1, i > 0
	  FROM generate_series(0, 4) i,
		   LATERAL (SELECT date_bin('2 min', now(), 'epoch') - i * interval '2 min' AS ws) w,
		   generate_series(4, 8) m
	 WHERE NOT (m = 6 AND i = 2);
	INSERT INTO anomstream.detected_attacks (p_event_time, p_machine, p_cmd, p_cmd_pid, m_event_time,
		m_machine, m_cmd_pid, p_probability, m_probability, cpu, mem, p_kafka_partition,
		p_kafka_offset, p_row_index, m_kafka_partition, m_kafka_offset, m_row_index)
	VALUES (now() - interval '1 min', 5, 'x"</td><script>alert(1)</script>', 'evil<b>_77', now(),
			5, 'evil<b>_77', 0.93, 0.81, 45.5, 12.25, 0, 10, 0, 1, 20, 3),
		   (now() - interval '2 min', 7, 'sshd', 'sshd_1234', now(), 7, 'sshd_1234', 0.7, 0.6,
			1, 2, 0, 11, 0, 1, 21, 0);
	INSERT INTO anomstream.dead_letters (topic, error) VALUES ('process', 'invalid ts');
});
my $conninfo = 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres';

# Start anomstream-web; returns (harness, base URL).
sub start_web
{
	my @args = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start([ $web, '--port', '0', @args ], '>', \$out, '2>', \$err,
		IPC::Run::timeout(30));
	$h->pump until $out =~ m{listening on (http://\S+/)\n} || !$h->pumpable;
	my $url = $1 or die "anomstream-web did not start: $err";
	return ($h, $url, \$err);
}

sub stop_web
{
	my ($h) = @_;
	$h->signal('TERM');
	$h->finish;
	return $h->result(0);
}

my $http = HTTP::Tiny->new(timeout => 20);
my ($h, $url) = start_web('--conninfo', "$conninfo user=web_reader");
like($url, qr{^http://127\.0\.0\.1:\d+/$}, 'binds 127.0.0.1 by default and prints its address');

# The page and its parts.
my $r = $http->get($url);
is($r->{status}, 200, 'page served');
like($r->{headers}{'content-type'}, qr{^text/html}, 'page is HTML');
like($r->{headers}{'content-security-policy'}, qr{script-src 'self'}, 'page has a CSP');
like($r->{content}, qr{<script src="app.js"}, 'page loads its script');
$r = $http->get($url . 'app.js');
like($r->{content}, qr/setTimeout\(refresh/, 'script redraws periodically');

$r = $http->get($url . 'chart.svg');
is($r->{status}, 200, 'chart served');
like($r->{headers}{'content-type'}, qr{^image/svg\+xml}, 'chart is SVG');
my ($pts, $perr) = ('', '');
ok(IPC::Run::run([ 'python3', 'test/web/svg_points.py' ], '<', \$r->{content}, '>', \$pts, '2>', \$perr),
	'chart parses') or diag($perr);
my %series = map { (split /\t/)[0] => 1 } split /\n/, $pts;
is_deeply([ sort keys %series ], [ 4 .. 8 ], 'one line per machine');

$r = $http->get($url . 'attacks.json');
my $rows = decode_json($r->{content});
is(scalar @$rows, 2, 'two detected attacks listed');
is($rows->[0]{cmd_pid}, 'evil<b>_77', 'newest first, text passed through as data');
is($rows->[0]{cmd}, 'x"</td><script>alert(1)</script>', 'JSON keeps hostile text intact');

# /metrics: strict format, and the values match the tables.
sub metrics
{
	my $m = $http->get($url . 'metrics');
	is($m->{status}, 200, 'metrics served');
	like($m->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4}, 'Prometheus content type');
	my ($norm, $err) = ('', '');
	ok(IPC::Run::run([ 'python3', 'test/web/check_metrics.py' ], '<', \$m->{content}, '>', \$norm,
			'2>', \$err), 'metrics parse as Prometheus text') or diag($err, $m->{content});
	return { map { /^(.+) (\S+)$/ ? ($1 => $2) : () } split /\n/, $norm };
}
my $m = metrics();
is($m->{anomstream_web_database_up}, 1, 'database up');
is($m->{anomstream_status_up}, 1, 'status readable');
is($m->{anomstream_dead_letters}, 1, 'dead letters counted for the reader');
my $latest = $node->safe_psql('postgres', q{
	SELECT string_agg(machine || '=' || attacks, ',' ORDER BY machine) FROM anomstream.potential_attacks
	 WHERE window_start = (SELECT max(window_start) FROM anomstream.potential_attacks)});
is(join(',', map { "$_=" . $m->{"anomstream_window_attacks{machine=\"$_\"}"} } 4 .. 8), $latest,
	'attacks per machine of the newest window');
is($m->{'anomstream_detected_attacks_24h{machine="5"}'}, 1, 'detected attacks per machine');
is(scalar(grep { /^anomstream_worker_state\{state=".+"\}$/ && $m->{$_} == 1 } keys %$m), 1, 'worker state');

# Requests choose among fixed answers; nothing else is accepted.
is($http->get($url . 'nope')->{status}, 404, 'unknown path: 404');
is($http->request('POST', $url . 'metrics', { content => 'x' })->{status}, 405, 'POST: 405');
is($http->get($url . 'metrics?query=DROP%20TABLE%20anomstream.potential_attacks')->{status}, 200,
	'query strings are ignored');
is($node->safe_psql('postgres', 'SELECT count(*) > 0 FROM anomstream.potential_attacks'), 't', 'tables intact');

# 200 concurrent clients, half of them malformed (bounded script, loopback only).
my ($port) = $url =~ /:(\d+)\/$/;
my ($lout, $lerr) = ('', '');
IPC::Run::run([ 'python3', 'test/web/load.py', '127.0.0.1', $port, '200' ], '>', \$lout, '2>', \$lerr,
	IPC::Run::timeout(120));
note($lout);
my %load = map { /^(\w+)=(\S+)$/ ? ($1 => $2) : () } split /\n/, $lout;
is($load{valid_ok}, 100, 'every valid client of 200 concurrent ones got 200');
is($load{unfinished}, 0, 'no client left hanging');
is($http->get($url . 'healthz')->{status}, 200, 'still serving after the load');
metrics();

# The page in headless Chromium.
SKIP:
{
	skip 'chromium not installed', 14 if system('sh', '-c', 'command -v chromium >/dev/null') != 0;
	my $dir = tempdir(CLEANUP => 1);
	my @flags = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
		'--disable-component-update', '--disable-sync', '--no-first-run');
	my ($dom, $cerr) = ('', '');
	IPC::Run::run([ 'chromium', @flags, "--user-data-dir=$dir/p1", '--virtual-time-budget=6000',
			'--dump-dom', $url ], '>', \$dom, '2>', \$cerr, IPC::Run::timeout(90));
	like($dom, qr/data-refreshes="\d+"/, 'page script ran (dump-dom)');
	my $paths = () = $dom =~ /<path class="line"/g;
	is($paths, 5, 'DOM has one chart line per machine');
	my $trs = () = $dom =~ /<tr class="attack">/g;
	is($trs, 2, 'DOM table has the detected attacks');
	like($dom, qr{<td>evil&lt;b&gt;_77</td>}, 'hostile text shown as text');
	unlike($dom, qr{<script>alert}, 'no injected element');

	IPC::Run::run([ 'chromium', @flags, "--user-data-dir=$dir/p2", '--virtual-time-budget=6000',
			'--window-size=1200,1000', "--screenshot=$dir/page.png", $url ],
		'>', \my $o, '2>', \my $e, IPC::Run::timeout(90));
	ok(-s "$dir/page.png", 'screenshot taken');
	my $png = '';
	IPC::Run::run([ 'python3', 'test/web/png_check.py', "$dir/page.png", '#1f77b4', '#2ca02c',
			'#d62728', '#17becf', '#e377c2' ], '>', \$png);
	note($png);
	my %p = map { /^(\w+)=(\S+)$/ ? ($1 => $2) : () } split /\n/, $png;
	cmp_ok($p{nonwhite}, '>', 0.01, 'screenshot is not blank');
	cmp_ok($p{colours}, '>', 50, 'screenshot has many colours');
	is(scalar(grep { $p{$_} > 20 } map { "count_$_" } qw(1f77b4 2ca02c d62728 17becf e377c2)), 5,
		'every machine\'s line colour is visible');

	# New data while the page is open: the values it shows change.
	my $psql = $node->installed_command('psql') // 'psql';
	my ($wout, $werr) = ('', '');
	my $ok = IPC::Run::run([ 'python3', 'test/web/browser_watch.py', $url, "$dir/w", '8',
			'psql', '-X', '-q', '-d', "$conninfo",
			'-c', q{UPDATE anomstream.potential_attacks SET attacks = attacks + 100 WHERE machine = 8;
				INSERT INTO anomstream.detected_attacks (p_event_time, p_machine, p_cmd_pid,
				p_kafka_partition, p_kafka_offset, p_row_index, m_kafka_partition, m_kafka_offset,
				m_row_index) VALUES (now(), 8, 'new_999', 0, 99, 0, 1, 99, 0)} ],
		'>', \$wout, '2>', \$werr, IPC::Run::timeout(150));
	ok($ok, 'page changed after new data') or diag($werr);
	my ($before, $after) = map { decode_json($_) } grep { /^\{/ } split /\n/, $wout;
	ok($before && $after, 'before and after states');
	my $want = $node->safe_psql('postgres', q{
		SELECT string_agg(attacks::text, ',' ORDER BY window_start) FROM anomstream.attacks_between(
			now() - interval '10 minutes', now()) WHERE machine = 8});
	is(join(',', map { $_->[1] } @{ $after->{points} }), $want, 'machine 8 now shows the new values');
	is($after->{rows}[0][2], 'new_999', 'table shows the new attack first');
}
is(stop_web($h), 0, 'anomstream-web stops cleanly on SIGTERM');

# Bounded connections: with --max-clients 20, 40 idle sockets cannot all stay; after the idle
# timeout the server serves again.
($h, $url) = start_web('--conninfo', "$conninfo user=web_reader", '--max-clients', '20', '--timeout', '2');
($port) = $url =~ /:(\d+)\/$/;
($lout, $lerr) = ('', '');
IPC::Run::run([ 'python3', 'test/web/load.py', '--idle', '127.0.0.1', $port, '40', '2', $h->{KIDS}[0]{PID} ],
	'>', \$lout, '2>', \$lerr, IPC::Run::timeout(120));
note($lout);
my ($held) = $lout =~ /server_sockets=(\d+)/;
# 20 clients, the listening socket and the database connection.
ok(defined $held && $held <= 22, 'the server holds no more connections than --max-clients');
like($lout, qr/served_after_idle=1/, 'idle connections time out and the server serves again');
stop_web($h);

# A superuser connection is refused.
my ($sout, $serr) = ('', '');
IPC::Run::run([ $web, '--port', '0', '--conninfo', $conninfo ], '>', \$sout, '2>', \$serr,
	IPC::Run::timeout(30));
like($serr, qr/refusing to serve as a superuser/, 'superuser refused');

# Without the preloaded library anomstream.status errors: metrics say so and still parse.
$node->adjust_conf('postgresql.conf', 'shared_preload_libraries', "''");
$node->restart;
($h, $url) = start_web('--conninfo', "$conninfo user=web_reader");
$m = metrics();
is($m->{anomstream_status_up}, 0, 'status unavailable without preload');
is($m->{anomstream_web_database_up}, 1, 'database still up');
is($m->{anomstream_dead_letters}, 1, 'other figures still reported');
is($http->get($url . 'chart.svg')->{status}, 200, 'chart still served');
stop_web($h);

$node->stop;
done_testing();
