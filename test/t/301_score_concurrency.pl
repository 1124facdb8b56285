# Several backends scoring at once: no hang, the same answers in every backend, and a model
# replaced while they score is picked up by each backend's next transaction (no restart).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('concurrency');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'anomstream'\nanomstream.brokers = ''");
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION anomstream;
INSERT INTO anomstream.process_events (sequence, machine, pid, trun, tslpi, tslpu, poli, nice,
	pri, rtpr, cpunr, status, exc, state, cpu, cmd, cmd_pid, event_time, batch_id,
	kafka_partition, kafka_offset, row_index)
SELECT g, 4 + g % 5, 1000 + g, g % 3, (hashint4(g) & 2147483647) % 20, 0,
	CASE WHEN g % 2 = 0 THEN 'norm' ELSE '0' END, 0, 120, 0, g % 4, '0', 0,
	(ARRAY['S', 'R', 'E'])[1 + g % 3], ((hashint4(g + 1) & 2147483647) % 100) / 100.0,
	(ARRAY['atop', 'apache2', 'nmap', 'sshd', 'hydra'])[1 + (hashint4(g + 2) & 2147483647) % 5],
	NULL, now(), 1, 0, g, 0
FROM generate_series(1, 10000) g;
CREATE TABLE results (pid int, iter int, versions bigint, slots_version int, n bigint, preds bigint,
	probsum float8, swap_version int, swap_preds bigint);
CREATE TABLE phase (changed bool);
INSERT INTO phase VALUES (false);
-- A second process model, and a model name whose newest version changes during the run.
SELECT anomstream.train('other', 'SELECT *, (cmd = ''nmap'')::int AS label FROM anomstream.process_events',
	'label', ARRAY['tslpi', 'cpu'], '{"num_boost_round": 5}', 'process');
SELECT anomstream.import_model('swap', anomstream.export_model('process_default'));
});

my $iteration_sql = q{
INSERT INTO results
SELECT pg_backend_pid(), i, s.versions, s.v, s.n, s.preds, s.probsum, w.v, w.preds
FROM (SELECT min(model_version) AS v, count(*) AS n, sum(prediction) AS preds,
			 sum(probability) AS probsum, count(DISTINCT model_version) AS versions
	  FROM anomstream.score_rows('process', 'SELECT * FROM anomstream.process_events', 2500)) s,
	 (SELECT min((p).model_version) AS v, sum((p).prediction) AS preds
	  FROM (SELECT anomstream.predict('swap', e) AS p FROM anomstream.process_events e
			WHERE sequence <= 2000) q) w};

# What each version answers, computed once here.
sub expected
{
	my $slots = $node->safe_psql('postgres', q{
SELECT min(model_version), count(*), sum(prediction), sum(probability)
FROM anomstream.score_rows('process', 'SELECT * FROM anomstream.process_events', 2500)});
	my $swap = $node->safe_psql('postgres', q{
SELECT min((p).model_version), sum((p).prediction)
FROM (SELECT anomstream.predict('swap', e) AS p FROM anomstream.process_events e WHERE sequence <= 2000) q});
	return ($slots, $swap);
}
my ($slots_a, $swap_a) = expected();

my @sessions;
for my $k (1 .. 3)
{
	my $s = $node->background_psql('postgres', on_error_stop => 1);
	# Score in a loop of transactions until 5 transactions after the models changed (at most
	# 400); query_until returns once the loop has started.
	$s->query_until(qr/started/, qq{\\echo started
DO \$\$ DECLARE after int := 0; BEGIN FOR i IN 1..400 LOOP
$iteration_sql;
COMMIT;
IF (SELECT changed FROM phase) THEN after := after + 1; END IF;
EXIT WHEN after >= 5;
END LOOP; END \$\$;
});
	push @sessions, $s;
}

# Once every backend has scored a few batches, replace the models while they run.
$node->poll_query_until('postgres',
	'SELECT count(DISTINCT pid) = 3 AND min(c) >= 3 FROM (SELECT pid, count(*) AS c FROM results GROUP BY pid) s')
  or die 'backends did not start scoring';
$node->safe_psql('postgres', q{
BEGIN;
SELECT anomstream.activate('other');
SELECT anomstream.import_model('swap', anomstream.export_model('process_default'), threshold => 0.9);
UPDATE phase SET changed = true;
COMMIT;});
my ($slots_b, $swap_b) = expected();
isnt($slots_b, $slots_a, 'the replacement model answers differently');
isnt($swap_b, $swap_a, 'the new version of "swap" answers differently');

# Wait for every loop to finish (BackgroundPsql times out instead of hanging forever).
for my $s (@sessions)
{
	is($s->query_safe('SELECT 1'), '1', 'a scoring backend finished its loop');
	$s->quit;
}

is($node->safe_psql('postgres', 'SELECT count(*) FROM results WHERE versions <> 1'), '0',
	'every transaction scored with exactly one model version');

# Every answer is what that version answers when scored alone.
my %known = (
	$slots_a => 1, $slots_b => 1);
my $bad = 0;
for my $row (split /\n/, $node->safe_psql('postgres',
		'SELECT slots_version, n, preds, probsum FROM results'))
{
	$bad++ unless $known{$row};
}
is($bad, 0, 'scoring path: every batch equals the single-backend answer of its version');
my %known_swap = ($swap_a => 1, $swap_b => 1);
$bad = 0;
for my $row (split /\n/, $node->safe_psql('postgres', 'SELECT swap_version, swap_preds FROM results'))
{
	$bad++ unless $known_swap{$row};
}
is($bad, 0, 'SQL predict: every call equals the single-backend answer of its version');

# Each backend switched once, from the old to the new version, and ended on the new one.
my ($va) = split /\|/, $slots_a;
my ($vb) = split /\|/, $slots_b;
is($node->safe_psql('postgres', qq{
SELECT count(*) FROM (
	SELECT pid, iter, slots_version,
		   lag(slots_version) OVER (PARTITION BY pid ORDER BY iter) AS prev
	FROM results) s
WHERE prev = $vb AND slots_version = $va}), '0', 'no backend went back to the old version');
is($node->safe_psql('postgres', qq{
SELECT count(*) FROM (SELECT DISTINCT ON (pid) pid, slots_version FROM results
	ORDER BY pid, iter DESC) s WHERE slots_version = $vb}), '3',
	'every backend picked up the new active model without a restart');
is($node->safe_psql('postgres', qq{
SELECT count(DISTINCT pid) FROM results WHERE slots_version = $va}), '3',
	'every backend had scored with the old model before the change');

$node->stop;
done_testing();
