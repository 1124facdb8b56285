# The worker survives DROP EXTENSION; CREATE EXTENSION (and a pg_restore of a dump holding
# the extension) under it while it streams. It used to crash with SIGSEGV here: its error
# recovery (sigsetjmp) did not reset error_context_stack, so after an ERROR raised inside
# SPI (the dropped tables) the next ereport, even a LOG such as "the extension was created
# again", called the error-context callback of a stack frame long gone.
use strict;
use warnings;

use AnomstreamTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

# The mock broker without a stdin pipe, its output in a file (for a post-mortem if it
# goes away).
my $bdir = PostgreSQL::Test::Utils::tempdir();
my $bh = IPC::Run::start(
	[ tool('mockbroker'), '--partitions', 1, '--bootstrap-file', "$bdir/bootstrap", '--no-stdin' ],
	'<', \undef, '>', "$bdir/broker.log", '2>&1');
for (1 .. 100)
{
	last if -s "$bdir/bootstrap";
	usleep(100_000);
}
my $broker = { bootstrap => slurp_file("$bdir/bootstrap") };
chomp $broker->{bootstrap};
my $node = new_node('error_context', $broker->{bootstrap}, qq{
anomstream.trigger_interval = '50ms'
});
my $ts0 = 1604231589;
my $sent = 0;

sub sql { return $node->safe_psql('postgres', $_[0]); }

# A few messages on topic process.
sub produce
{
	my $msgs = '';
	for (1 .. 5)
	{
		$msgs .= '{"ts": ' . ($ts0 + $sent++) . qq(, "data": [{"CMD": "c", "sequence": $sent, "PID": 1}]}\n);
	}
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'kcat', '-P', '-b', $broker->{bootstrap}, '-t', 'process', '-p', '0' ],
		'<', \$msgs, '>', \$out, '2>', \$err)
	  or die "kcat failed: $err\nbroker: " . slurp_file("$bdir/broker.log");
}

# Wait until the server log (from $offset on) matches $re.
sub wait_log
{
	my ($offset, $re) = @_;
	for (1 .. 300)
	{
		return 1 if slurp_file($node->logfile, $offset) =~ $re;
		usleep(100_000);
	}
	return 0;
}

# DROP EXTENSION under a running micro-batch may lose a deadlock against it: try again.
sub drop_extension
{
	for (1 .. 10)
	{
		my ($ret, $out, $err) =
		  $node->psql('postgres', 'DROP EXTENSION anomstream; DROP SCHEMA IF EXISTS anomstream');
		return if $ret == 0;
		die "DROP EXTENSION failed: $err" unless $err =~ /deadlock detected/;
	}
	die 'DROP EXTENSION kept losing deadlocks';
}

my $dump = PostgreSQL::Test::Utils::tempdir() . '/db.dump';
produce();
$node->poll_query_until('postgres',
	"SELECT durable_offset >= $sent FROM anomstream.positions WHERE topic = 'process'")
  or die 'not streaming';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres') ], 'pg_dump');

for my $round (1 .. 3)
{
	my $offset = -s $node->logfile;
	my $pid = worker_pid($node);
	produce();
	drop_extension();
	# the worker runs into the dropped tables (an ERROR inside SPI) before it is re-created
	ok(wait_log($offset, qr/anomstream worker.*ERROR|ERROR:.*anomstream/),
		"round $round: the worker hit an error on the dropped extension");
	if ($round == 2)
	{
		$node->command_ok([ 'pg_restore', '--single-transaction', '-d', $node->connstr('postgres'), $dump ],
			"round $round: pg_restore --single-transaction");
	}
	else
	{
		sql('CREATE EXTENSION anomstream');
	}
	ok(wait_log($offset, qr/the extension was created again; restarting the worker/),
		"round $round: the worker noticed the new extension");
	$node->poll_query_until('postgres', qq{
		SELECT count(*) = 1 FROM pg_stat_activity
		WHERE backend_type = 'anomstream worker' AND pid <> $pid})
	  or die 'no new worker';
	my $log = slurp_file($node->logfile, $offset);
	unlike($log, qr/terminated by signal/, "round $round: no worker crash");
	# the LOG line carries no CONTEXT of an earlier, long-gone error
	unlike($log, qr/restarting the worker\n[^\n]*CONTEXT:/,
		"round $round: no stale error context on the next message");
}
produce();
ok( $node->poll_query_until('postgres',
		"SELECT durable_offset >= $sent FROM anomstream.positions WHERE topic = 'process'"),
	'the new worker streams on');

$node->stop;
$bh->signal('TERM');
$bh->finish;
done_testing();
