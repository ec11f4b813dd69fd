# t/028_delivered_ring.pl: delivery_queue's delivered_last_hour comes from
# a ring of per-minute counts in shared memory (src/recent.c) and stays
# equal to counting the table: the worker's deliveries, sync creates (not
# those rolled back, whole or to a savepoint), after a restart (seeded from
# the table, with deliveries bumped before the seed counted once), after a
# DELETE (in doubt, seeded again); without preloading, the table is counted.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../test";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FakeGraph;
use EdusyncTest;

my $graph = FakeGraph->start(tokens => ['ring-token']);
my $node = edusync_node('ring', $graph, qq{
edusync.bearer_token = 'ring-token'
});

my $TABLE = q{SELECT count(*) FROM edusync.deliveries
	WHERE status = 'delivered' AND delivered_at > now() - interval '1 hour'};
sub view { return $node->safe_psql('postgres', 'SELECT delivered_last_hour FROM edusync.delivery_queue') }
sub table { return $node->safe_psql('postgres', $TABLE) }

# --- the worker delivers N: the view says N (the first read seeds)
queue_errors($node, 30, 'first');
ok(settle($node, 'first', 60), 'worker: 30 delivered');
is(view(), '30', 'worker: the view says 30');

# the ring answers, not the table: a row written by hand (not through
# edusync, so not counted in the ring) is not seen until the ring is reseeded
$node->safe_psql('postgres', q{
	INSERT INTO edusync.sync_errors (profile_id, id, entry_type, error_code, error_message, recorded_date_time)
	VALUES ('p1', '00000000-0000-4000-8000-000000000001', 'Student', 'X', 'hand 1', now());
	INSERT INTO edusync.deliveries (profile_id, error_id, status, delivered_at)
	VALUES ('p1', '00000000-0000-4000-8000-000000000001', 'delivered', now())});
is(table(), '31', 'by hand: the table holds 31');
is(view(), '30', 'by hand: the ring answers (30), the table is not counted');

# a DELETE puts the ring in doubt: the next read seeds it again
$node->safe_psql('postgres', q{DELETE FROM edusync.sync_errors WHERE error_message = 'first 1'});
is(view(), '30', 'after a DELETE: reseeded, 30 (29 delivered + 1 by hand)');

# --- sync mode counts at commit; a rollback, whole or to a savepoint, does not
my $sync = q{SET edusync.forward = 'sync';
	SELECT count(edusync.create_sync_error('p1', 'Student', 'X', 'sync ' || g)) FROM generate_series(1, 5) g};
$node->safe_psql('postgres', $sync);
is(view(), '35', 'sync: 5 more');
$node->safe_psql('postgres', "BEGIN; $sync; ROLLBACK");
$node->safe_psql('postgres', qq{BEGIN; SELECT 1; SAVEPOINT a; $sync; ROLLBACK TO a;
	SET edusync.forward = 'sync';
	SELECT edusync.create_sync_error('p1', 'Student', 'X', 'kept 1'); COMMIT});
is(view(), '36', 'sync: rolled back ones are not counted, the kept one is');
is(table(), '36', 'sync: and the table agrees');

# --- rows near the edge of the hour, written by hand, then a restart
$node->safe_psql('postgres', q{
	INSERT INTO edusync.sync_errors (profile_id, id, entry_type, error_code, error_message, recorded_date_time)
	SELECT 'p1', ('00000000-0000-4000-8000-0000000001' || g)::uuid, 'Student', 'X', 'edge ' || g, now()
	FROM generate_series(10, 13) g;
	INSERT INTO edusync.deliveries (profile_id, error_id, status, delivered_at)
	SELECT 'p1', ('00000000-0000-4000-8000-0000000001' || g)::uuid, 'delivered',
		now() - CASE g WHEN 10 THEN interval '57 minutes 30 seconds'
					  WHEN 11 THEN interval '55 minutes'
					  WHEN 12 THEN interval '61 minutes'
					  ELSE interval '3 hours' END
	FROM generate_series(10, 13) g});
$node->restart;
ok(worker_pid($node), 'restart: the worker is back');
# deliveries bumped before the first read (before seeding) are counted once
queue_errors($node, 10, 'after');
ok(settle($node, 'after', 60), 'restart: 10 more delivered before any read');
my $t = table();
is($t, '48', 'restart: the table holds 48 in the last hour');
is(view(), $t, 'restart: the view agrees (seeded; the 10 not counted twice)');
queue_errors($node, 4, 'later');
ok(settle($node, 'later', 60), 'restart: 4 more');
is(view(), table(), 'restart: seeded ring plus bumps agree with the table');
is(view(), '52', 'restart: 52');

# seeding while the worker commits deliveries: a DELETE puts the ring in
# doubt while a backlog drains, reads reseed it meanwhile; once drained,
# no delivery is counted twice or missed
queue_errors($node, 3000, 'busy');
$node->safe_psql('postgres', q{DELETE FROM edusync.sync_errors WHERE error_message = 'later 1'});
my @seen = map { view() } 1 .. 20;
ok(settle($node, 'busy', 120), 'busy: 3000 delivered');
is(view(), table(), 'busy: the ring seeded during the drain agrees with the table');
is(view(), '3051', 'busy: 3051');

# TRUNCATE puts the ring in doubt too
$node->safe_psql('postgres', 'TRUNCATE edusync.sync_errors CASCADE');
is(view(), '0', 'TRUNCATE: 0');

# --- without preloading: the table is counted
my $plain = PostgreSQL::Test::Cluster->new('ring_plain');
$plain->init;
$plain->start;
$plain->safe_psql('postgres', q{
	CREATE EXTENSION edusync;
	INSERT INTO edusync.sync_profiles VALUES ('p1', 'p1');
	INSERT INTO edusync.sync_errors (profile_id, id, entry_type, error_code, error_message, recorded_date_time)
	SELECT 'p1', gen_random_uuid(), 'Student', 'X', 'plain ' || g, now() FROM generate_series(1, 7) g;
	INSERT INTO edusync.deliveries (profile_id, error_id, status, delivered_at)
	SELECT profile_id, id, 'delivered', now() - interval '10 minutes' FROM edusync.sync_errors});
is($plain->safe_psql('postgres', 'SELECT delivered_last_hour FROM edusync.delivery_queue'), '7',
	'not preloaded: the table is counted');
$plain->stop;

$node->stop;
$graph->stop;
done_testing();
