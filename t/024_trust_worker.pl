# t/024_trust_worker.pl: the delivery worker trusts nothing of its
# database: an owner's search_path cannot make it run their code; hostile
# answers cannot break a dump and restore of the outbox, or fail a
# delivery that succeeded; async creates in a database it does not serve
# are refused; COMMIT PREPARED wakes it; DROP DATABASE is not held up.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../test";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use FakeGraph;
use EdusyncTest;

my $graph = FakeGraph->start(tokens => ['trust-token']);

my $node = PostgreSQL::Test::Cluster->new('trust');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'edusync'
edusync.databases = 'tenant'
edusync.graph_url = '@{[ $graph->url ]}'
edusync.bearer_token = 'trust-token'
edusync.max_attempts = 3
max_prepared_transactions = 2
});
$node->start;

# A database owned by an ordinary role, who prepares a trap for the
# superuser worker: its own now() and = in front of pg_catalog.
$node->safe_psql('postgres', q{
	CREATE ROLE mallory LOGIN;
	CREATE DATABASE tenant OWNER mallory;
	CREATE DATABASE other;
});
$node->safe_psql('tenant', q{
	CREATE EXTENSION edusync;
	INSERT INTO edusync.sync_profiles VALUES ('p1', 'p1');
});
$node->safe_psql('tenant', q{
	CREATE SCHEMA pwn;
	CREATE FUNCTION pwn.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
	BEGIN
		EXECUTE 'ALTER ROLE mallory SUPERUSER';
		RETURN pg_catalog.now();
	END $$;
	CREATE FUNCTION pwn.texteq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN
		EXECUTE 'ALTER ROLE mallory SUPERUSER';
		RETURN pg_catalog.texteq($1, $2);
	END $$;
	CREATE OPERATOR pwn.= (LEFTARG = text, RIGHTARG = text, PROCEDURE = pwn.texteq);
	ALTER DATABASE tenant SET search_path = pwn, pg_catalog;
}, extra_params => [ '-U', 'mallory' ]);
# the worker reads the database's settings when it connects
$node->restart;

sub queue
{
	my ($db, $n, $tag) = @_;
	return $node->psql($db, qq{
		SET edusync.forward = 'async';
		SELECT edusync.create_sync_error('p1', 'Student', 'c', '$tag ' || g)
		FROM generate_series(1, $n) g});
}

sub settled
{
	my ($db, $tag) = @_;
	return $node->poll_query_until($db, qq{
		SELECT count(*) = 0 FROM edusync.deliveries d
		JOIN edusync.sync_errors e ON e.profile_id OPERATOR(pg_catalog.=) d.profile_id
		  AND e.id = d.error_id
		WHERE e.error_message LIKE '$tag %' AND d.status OPERATOR(pg_catalog.=) 'pending'});
}

# (the test's own superuser sessions in tenant qualify every text
# operator too: the trap would catch them as well)

# --- the trap is not sprung
my ($ret) = queue('tenant', 3, 'trap');
is($ret, 0, 'async create in the served database');
ok(settled('tenant', 'trap'), 'the worker delivered them');
is($node->safe_psql('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'"),
	'f', "the database owner's search_path did not make the worker run their code");

# --- async in a database no worker serves (edusync.databases leaves it
# out): refused, nothing queued
$node->safe_psql('other', q{CREATE EXTENSION edusync;
	INSERT INTO edusync.sync_profiles VALUES ('p1', 'p1')});
my ($r2, $o2, $e2) = queue('other', 1, 'nobody');
isnt($r2, 0, 'async create where no worker serves is refused');
like($e2, qr/no delivery worker serves database "other"/, 'and says why');
like($e2, qr/HINT:/, 'with a hint');
is($node->safe_psql('other', 'SELECT count(*) FROM edusync.deliveries'), '0', 'nothing queued');

# --- hostile answers: invalid UTF-8 and huge texts, a 201 with an odd
# number; then a dump and restore keeps the whole outbox
$graph->reset;
$graph->script('errors',
	{ status => 201, body_hex => unpack('H*', "{\"id\":\"r\xff\xfe" . ('i' x 70000) . '"}') },
	{ status => 201, body_hex => unpack('H*', '{"id":"r1","n":1e200000}') },
	{ status => 400, body_hex => unpack('H*',
		"{\"error\":{\"code\":\"Bad\xc3\",\"message\":\"m\xff" . ('m' x 70000) . '"}}') });
queue('tenant', 3, 'hostile');
ok(settled('tenant', 'hostile'), 'hostile answers settled');
is($node->safe_psql('tenant', q{SELECT pg_catalog.count(*) FROM edusync.deliveries d
	JOIN edusync.sync_errors e ON e.id = d.error_id
	WHERE e.error_message LIKE 'hostile %' AND d.status OPERATOR(pg_catalog.=) 'delivered'}), '2',
	'both 201s are deliveries');
is(scalar($graph->requests(kind => 'errors')), 3, 'each sent once');
my $longest = $node->safe_psql('tenant', q{SELECT pg_catalog.max(GREATEST(
	pg_catalog.length(remote_id), pg_catalog.length(last_error))) FROM edusync.deliveries});
cmp_ok($longest, '<=', 600, 'remote text is bounded');
my ($lret, $lout, $lerr) = $node->psql('tenant',
	"SET client_encoding = 'LATIN1'; SELECT remote_id, last_error FROM edusync.deliveries");
is($lret, 0, 'a LATIN1 client reads the outbox') or diag($lerr);

my $dump = $node->basedir . '/tenant.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr('tenant'), '-f', $dump ], 'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored'), $dump ], 'pg_restore');
is($node->safe_psql('restored', 'SELECT pg_catalog.count(*) FROM edusync.deliveries'),
	$node->safe_psql('tenant', 'SELECT pg_catalog.count(*) FROM edusync.deliveries'),
	'every delivery row survived the restore');

# --- COMMIT PREPARED wakes the worker (its commit runs no XactCallback of
# the preparing session); the worker has just gone to sleep for its idle
# time, so a delivery in under 5 s is the wake's doing
queue('tenant', 1, 'before');
ok(settled('tenant', 'before'), 'worker idle');
$node->safe_psql('tenant', q{
	BEGIN;
	SET LOCAL edusync.forward = 'async';
	SELECT edusync.create_sync_error('p1', 'Student', 'c', 'prepared 1');
	PREPARE TRANSACTION 'edusync';
});
$graph->reset;
my $t0 = time;
$node->safe_psql('tenant', "COMMIT PREPARED 'edusync'");
ok($graph->wait_for(sub { scalar($graph->requests(kind => 'errors')) >= 1 }, 60),
	'the prepared error was delivered');
my $took = time - $t0;
cmp_ok($took, '<', 5, "COMMIT PREPARED woke the worker (${took}s)");

# --- DROP DATABASE of the worker's database is not held up by it
my ($dret, $dout, $derr) = $node->psql('postgres', 'DROP DATABASE tenant');
is($dret, 0, 'DROP DATABASE of the worker\'s database succeeds') or diag($derr);

$node->stop;
$graph->stop;
done_testing();
