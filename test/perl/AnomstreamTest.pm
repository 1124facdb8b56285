# AnomstreamTest.pm - shared pieces of anomstream's TAP tests.
#
# Real parts only: a real PostgreSQL server (PostgreSQL::Test::Cluster), the real Kafka
# protocol (our mock cluster program, librdkafka's mock broker), our replayer as the
# producer, and the replayer's delivery log as the record of what was produced. Expected
# results are computed in SQL from that log, never by calling anomstream's own code.
package AnomstreamTest;

use strict;
use warnings;

use Cwd qw(abs_path);
use Exporter qw(import);
use File::Basename qw(dirname);
use IO::Handle;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

our @EXPORT = qw(tool start_broker broker_cmd stop_broker new_node input_csvs replay
  replay_bg load_log expected_counts wait_ingested compare_staging worker_pid
  stop_bg wait_up kill_worker kill_backend staged_rows durable_positions);

my $root = abs_path(dirname(__FILE__) . '/../..');

# Path of one of our test tools.
sub tool
{
	my ($name) = @_;
	return "$root/test/tools/bin/anomstream-$name";
}

# Start a mock Kafka cluster; returns a handle with {bootstrap}. Commands go to its stdin
# through a pipe this process holds open (the broker stops at EOF), its answers come back on
# stdout; its stderr goes to a file, so nothing it logs can fill a pipe nobody reads.
sub start_broker
{
	my (%o) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my %b = (out => '', in => IO::Handle->new, errfile => "$dir/broker.err");
	$b{h} = IPC::Run::start(
		[
			tool('mockbroker'), '--partitions', $o{partitions} // 4,
			'--brokers', $o{brokers} // 1, '--bootstrap-file', "$dir/bootstrap"
		],
		'<pipe', $b{in}, '>', \$b{out}, '2>', $b{errfile});
	$b{in}->autoflush(1);
	for (1 .. 100)
	{
		last if -s "$dir/bootstrap";
		usleep(100_000);
	}
	die 'mock broker did not start: ' . (-e $b{errfile} ? PostgreSQL::Test::Utils::slurp_file($b{errfile}) : '')
	  unless -s "$dir/bootstrap";
	$b{bootstrap} = PostgreSQL::Test::Utils::slurp_file("$dir/bootstrap");
	chomp $b{bootstrap};
	return \%b;
}

# Send one command to the mock broker and wait for its answer line.
sub broker_cmd
{
	my ($b, $cmd) = @_;
	local $SIG{PIPE} = 'IGNORE';
	$b->{h}->pump_nb;
	my $before = () = $b->{out} =~ /\n/g;
	print { $b->{in} } "$cmd\n"
	  or die "mock broker gone (cannot send '$cmd'): $!\n" . broker_stderr($b);
	for (1 .. 100)
	{
		$b->{h}->pump_nb;
		my $now = () = $b->{out} =~ /\n/g;
		if ($now > $before)
		{
			my @lines = split /\n/, $b->{out};
			return $lines[-1];
		}
		usleep(50_000);
	}
	die "mock broker did not answer '$cmd'\n" . broker_stderr($b);
}

# What the mock broker wrote on stderr (it says there which signal ended it, and from whom).
sub broker_stderr
{
	my ($b) = @_;
	return -e $b->{errfile} ? 'broker stderr: ' . PostgreSQL::Test::Utils::slurp_file($b->{errfile}) : '';
}

sub stop_broker
{
	my ($b) = @_;
	local $SIG{PIPE} = 'IGNORE';
	print { $b->{in} } "quit\n";
	close $b->{in};
	eval { $b->{h}->finish; 1 } or $b->{h}->kill_kill;
}

# Rows in both staging tables.
sub staged_rows
{
	my ($node) = @_;
	return $node->safe_psql('postgres', q{
		SELECT (SELECT count(*) FROM anomstream.process_events) + (SELECT count(*) FROM anomstream.memory_events)});
}

# Every partition's durable position, as one comparable string.
sub durable_positions
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		q{SELECT string_agg(topic || kafka_partition || ':' || durable_offset, ',' ORDER BY 1)
		  FROM anomstream.positions});
}

# A node with anomstream preloaded, pointed at the broker, the extension created.
sub new_node
{
	my ($name, $bootstrap, $extra) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'anomstream'
anomstream.database = 'postgres'
anomstream.brokers = '$bootstrap'
anomstream.poll_timeout = 50
max_worker_processes = 16
restart_after_crash = on
} . ($extra // ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION anomstream');
	return $node;
}

# The CSVs to replay: the real rows from ../shared/data, or generated ones.
sub input_csvs
{
	my (%o) = @_;
	my $data = $ENV{ANOMSTREAM_DATA_DIR} // "$root/../shared/data";
	my $p = "$data/Streaming_Linux_process.reconstructed.csv";
	my $m = "$data/Streaming_Linux_memory.reconstructed.csv";
	if (-r $p && -r $m && !$o{generated})
	{
		note "replaying the real rows from $data";
		return ($p, $m);
	}
	my $dir = PostgreSQL::Test::Utils::tempdir();
	note "no real data at $data: generating rows";
	for my $s ('process', 'memory')
	{
		system(tool('generate'), '--stream', $s, '--rows', $o{rows} // 3000,
			# one seed for both streams: one simulated world, so process and memory
			# rows of the same processes meet in the join
			'--seed', 11, '-o', "$dir/$s.csv") == 0
		  or die "generate failed";
	}
	return ("$dir/process.csv", "$dir/memory.csv");
}

# Run the replayer to completion; returns the path of its delivery log.
sub replay
{
	my ($bootstrap, @args) = @_;
	my $log = PostgreSQL::Test::Utils::tempdir() . '/replay.log';
	my ($out, $err) = ('', '');
	IPC::Run::run([ tool('replay'), '--brokers', $bootstrap, '--log', $log, '-q', @args ],
		'>', \$out, '2>', \$err)
	  or die "replay failed: $err";
	return $log;
}

# Start the replayer in the background; returns ($handle, $logpath).
sub replay_bg
{
	my ($bootstrap, @args) = @_;
	my $log = PostgreSQL::Test::Utils::tempdir() . '/replay.log';
	my %r = (out => '', err => '');
	my $h = IPC::Run::start(
		[ tool('replay'), '--brokers', $bootstrap, '--log', $log, '-q', @args ],
		'>', \$r{out}, '2>', \$r{err});
	return ($h, $log, \%r);
}

sub stop_bg
{
	my ($h) = @_;
	return $h->finish;
}

# Load replay logs into tables t_exp_process, t_exp_memory and t_bad (created on first use).
sub load_log
{
	my ($node, @logs) = @_;
	my %cols;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my %fh;
	for my $log (@logs)
	{
		open my $in, '<', $log or die "$log: $!";
		while (my $line = <$in>)
		{
			my @f = split /\t/, $line, -1;
			if ($f[0] eq '#')
			{
				chomp $line;
				my @c = split /\t/, $line, -1;
				$cols{ $c[1] } = [ map { lc } @c[ 7 .. $#c ] ];
				next;
			}
			my $kind = $f[0] eq 'BAD' ? 'bad' : $f[0];
			if (!$fh{$kind})
			{
				open $fh{$kind}, '>', "$dir/$kind.tsv" or die;
			}
			print { $fh{$kind} } ($kind eq 'bad' ? join("\t", @f[ 1 .. $#f ]) : $line);
		}
		close $in;
	}
	close $_ for values %fh;
	my $sql = '';
	for my $t ('process', 'memory')
	{
		next unless $cols{$t};
		my $c = join(', ', map { "$_ text" } @{ $cols{$t} });
		$sql .= "CREATE TABLE IF NOT EXISTS t_exp_$t (topic text, kafka_partition int, kafka_offset bigint, row_index int, key text, ts bigint, $c);\n";
		$sql .= "COPY t_exp_$t FROM '$dir/$t.tsv';\n" if -e "$dir/$t.tsv";
	}
	$sql .= "CREATE TABLE IF NOT EXISTS t_bad (topic text, kafka_partition int, kafka_offset bigint, kind text, row_index int);\n";
	$sql .= "COPY t_bad FROM '$dir/bad.tsv';\n" if -e "$dir/bad.tsv";
	chmod 0755, $dir;
	$node->safe_psql('postgres', $sql);
}

# (rows expected in staging, dead letters expected)
sub expected_counts
{
	my ($node) = @_;
	my $r = $node->safe_psql('postgres', q{
		SELECT (SELECT count(*) FROM t_exp_process) + (SELECT count(*) FROM t_exp_memory),
			   (SELECT count(*) FROM t_bad)});
	return split /\|/, $r;
}

# Wait until staging and dead letters hold at least what the logs say.
sub wait_ingested
{
	my ($node, $timeout) = @_;
	my ($rows, $dead) = expected_counts($node);
	local $PostgreSQL::Test::Utils::timeout_default = $timeout // 180;
	return $node->poll_query_until('postgres', qq{
		SELECT (SELECT count(*) FROM anomstream.process_events) +
			   (SELECT count(*) FROM anomstream.memory_events) >= $rows
		   AND (SELECT count(*) FROM anomstream.dead_letters) >= $dead});
}

# Compare staging with the logs, both directions, with multiplicity (EXCEPT ALL), and the
# dead letters with the BAD lines. Returns a hash of mismatch counts (all 0 when equal).
sub compare_staging
{
	my ($node) = @_;
	my $pexp = q{
		SELECT kafka_partition, kafka_offset, row_index,
			   NULLIF(sequence, '')::int, NULLIF(machine, '')::int, NULLIF(pid, '')::int,
			   NULLIF(trun, '')::float8, NULLIF(tslpi, '')::float8, NULLIF(tslpu, '')::float8,
			   NULLIF(poli, ''), NULLIF(pri, '')::float8 - 120, NULLIF(pri, '')::float8,
			   NULLIF(rtpr, '')::float8, NULLIF(cpunr, '')::float8, NULLIF(status, ''),
			   NULLIF(exc, '')::float8, NULLIF(state, ''), NULLIF(cpu, '')::float8,
			   NULLIF(cmd, ''), NULLIF(cmd, '') || '_' || NULLIF(pid, ''), to_timestamp(ts)
		FROM t_exp_process};
	my $pgot = q{
		SELECT kafka_partition, kafka_offset, row_index, sequence, machine, pid, trun, tslpi,
			   tslpu, poli, nice, pri, rtpr, cpunr, status, exc, state, cpu, cmd, cmd_pid,
			   event_time
		FROM anomstream.process_events};
	my $mexp = q{
		SELECT kafka_partition, kafka_offset, row_index,
			   NULLIF(sequence, '')::int, NULLIF(machine, '')::int, NULLIF(pid, '')::int,
			   NULLIF(minflt, '')::float8, NULLIF(majflt, '')::float8, NULLIF(vstext, '')::float8,
			   NULLIF(vsize, '')::float8, NULLIF(rsize, '')::float8, NULLIF(vgrow, '')::float8,
			   NULLIF(rgrow, '')::float8, NULLIF(mem, '')::float8,
			   NULLIF(cmd, ''), NULLIF(cmd, '') || '_' || NULLIF(pid, ''), to_timestamp(ts)
		FROM t_exp_memory};
	my $mgot = q{
		SELECT kafka_partition, kafka_offset, row_index, sequence, machine, pid, minflt,
			   majflt, vstext, vsize, rsize, vgrow, rgrow, mem, cmd, cmd_pid, event_time
		FROM anomstream.memory_events};
	my $dexp = q{
		SELECT topic, kafka_partition, kafka_offset, NULLIF(row_index, -1) FROM t_bad};
	my $dgot = q{
		SELECT topic, kafka_partition, kafka_offset, row_index FROM anomstream.dead_letters};
	my %r;
	for my $case ([ 'process_missing', $pexp, $pgot ], [ 'process_extra', $pgot, $pexp ],
		[ 'memory_missing', $mexp, $mgot ], [ 'memory_extra', $mgot, $mexp ],
		[ 'dead_missing', $dexp, $dgot ], [ 'dead_extra', $dgot, $dexp ])
	{
		$r{ $case->[0] } = $node->safe_psql('postgres',
			"SELECT count(*) FROM ($case->[1] EXCEPT ALL $case->[2]) d");
	}
	return \%r;
}

# The worker's pid (waits for it to be there).
sub worker_pid
{
	my ($node) = @_;
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'anomstream worker'")
	  or die "no anomstream worker";
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'anomstream worker'");
}

# Wait until the server accepts queries again after a crash.
sub wait_up
{
	my ($node) = @_;
	$node->poll_query_until('postgres', 'SELECT true') or die 'server did not come back';
}

# kill -9 the worker (the postmaster then restarts everything); returns when the server is up.
sub kill_worker
{
	my ($node) = @_;
	my $pid = worker_pid($node);
	kill 'KILL', $pid;
	note "killed worker $pid";
	Time::HiRes::sleep(1);
	wait_up($node);
}

# kill -9 an ordinary backend: the postmaster restarts everything, staging included.
sub kill_backend
{
	my ($node) = @_;
	my $sleeper = IPC::Run::start(
		[ 'psql', '-X', '-d', $node->connstr('postgres'), '-c', 'SELECT pg_sleep(60)' ],
		'>', \my $so, '2>', \my $se);
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'")
	  or die 'sleeper not seen';
	my $bpid = $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'");
	kill 'KILL', $bpid;
	eval { $sleeper->finish };
	note "killed backend $bpid";
	Time::HiRes::sleep(1);
	wait_up($node);
}

1;
