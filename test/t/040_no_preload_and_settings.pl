# Without shared_preload_libraries the SQL functions work and worker-dependent objects raise
# a clear error with a hint; broker secrets in anomstream.kafka_options are hidden from
# non-superusers; a bad librdkafka option puts the worker in state 'error' with the reason.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init;
$plain->start;
$plain->safe_psql('postgres', 'CREATE EXTENSION anomstream');
is($plain->safe_psql('postgres', "SELECT anomstream.reformat('1.5K')"),
	'1500', 'functions work without preload');
is( $plain->safe_psql('postgres',
		q{SELECT cmd_pid FROM anomstream.decode('process', '{"ts": 1, "data": [{"pid": 1, "cmd": "x"}]}')}),
	'x_1', 'decode works without preload');
my ($rc, $out, $err) = $plain->psql('postgres', 'SELECT * FROM anomstream.status');
isnt($rc, 0, 'status needs the worker');
like($err, qr/anomstream must be loaded via shared_preload_libraries/, 'clear error');
like($err, qr/HINT:  Add anomstream to shared_preload_libraries/, 'with a hint');
$plain->stop;

my $node = PostgreSQL::Test::Cluster->new('settings');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'anomstream'
anomstream.database = 'postgres'
anomstream.brokers = '127.0.0.1:1'
anomstream.kafka_options = 'sasl.password=s3cret; no.such.option=1'
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION anomstream; CREATE ROLE joe LOGIN');
is($node->safe_psql('postgres', 'SHOW anomstream.kafka_options'),
	'sasl.password=s3cret; no.such.option=1', 'superuser sees the options');
($rc, $out, $err) = $node->psql('postgres', 'SHOW anomstream.kafka_options',
	extra_params => [ '-U', 'joe' ]);
isnt($rc, 0, 'a non-superuser cannot SHOW the broker secrets');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_settings WHERE name = 'anomstream.kafka_options'",
		extra_params => [ '-U', 'joe' ]),
	'0', 'nor read them in pg_settings');
ok( $node->poll_query_until('postgres',
		"SELECT state = 'error' AND last_error LIKE '%Kafka consumer%' FROM anomstream.status LIMIT 1"),
	'a bad librdkafka option puts the worker in state error');
like(slurp_file($node->logfile), qr/No such configuration property: "no.such.option"/,
	"librdkafka's reason is in the log");

# Fix the option with a reload: the worker leaves the error state (the broker is unreachable,
# so it waits for it).
$node->safe_psql('postgres',
	"ALTER SYSTEM SET anomstream.kafka_options = 'socket.timeout.ms=2000'; SELECT pg_reload_conf()");
ok( $node->poll_query_until('postgres',
		"SELECT state = 'waiting for broker' FROM anomstream.status LIMIT 1"),
	'after a reload with valid options the worker waits for the broker');
is($node->safe_psql('postgres', 'SELECT count(*) FROM anomstream.positions'),
	'0', 'nothing consumed');
$node->stop;
done_testing();
