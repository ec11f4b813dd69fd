# t/025_launcher.pl: the launcher gives every database where edusync is
# installed a delivery worker of its own (issue 8).
#
# - three databases, each with async forwarding: each delivers everything it
#   queued, and the fake Graph receives each error once;
# - the workers follow CREATE EXTENSION (a new database gets its worker),
#   DROP EXTENSION (its worker leaves, woken at commit: not after its idle
#   sleep) and DROP DATABASE (it succeeds at once; the worker is gone);
# - edusync.databases narrows the databases served at reload, and widening
#   it again brings their workers back;
# - with no background worker slot free (max_worker_processes), the
#   unserved database is shown as such in worker_status(), the log says so,
#   async creates there are refused with 55000 and a hint, and it gets a
#   worker once another database gives its own up.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../test";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use FakeGraph;

my $TOKEN = 'launcher-token-SECRET-31c9';
my $graph = FakeGraph->start(tokens => [$TOKEN]);

# A started cluster with edusync preloaded, pointed at the fake Graph.
sub new_node
{
	my ($name, $conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'edusync'
edusync.graph_url = '@{[ $graph->url ]}'
edusync.bearer_token = '$TOKEN'
edusync.timeout = '5s'
$conf
});
	$node->start;
	return $node;
}

# Create database $db with the extension and profile p_$db.
sub add_database
{
	my ($node, $db) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, qq{
		CREATE EXTENSION edusync;
		INSERT INTO edusync.sync_profiles VALUES ('p_$db', 'profile of $db');
	});
	return;
}

# The databases whose delivery worker runs now, sorted, comma-separated.
sub workers
{
	my ($node) = @_;
	return $node->safe_psql('postgres', q{
		SELECT coalesce(string_agg(datname, ',' ORDER BY datname), '')
		FROM pg_stat_activity WHERE backend_type = 'edusync delivery worker'});
}

# Poll $sql in $db until it gives $expected, for at most $secs; how long it
# took, or undef (with a diag) when it never did.
sub wait_for_value
{
	my ($node, $db, $sql, $expected, $secs) = @_;
	my $t0 = time;
	my $got;
	while (1)
	{
		$got = $node->safe_psql($db, $sql);
		return time - $t0 if $got eq $expected;
		last if time - $t0 > $secs;
		sleep 0.05;
	}
	diag("waited $secs s for [$sql] = [$expected], last got [$got]");
	return undef;
}

sub wait_workers
{
	my ($node, $expected, $secs) = @_;
	return wait_for_value($node, 'postgres', q{
		SELECT coalesce(string_agg(datname, ',' ORDER BY datname), '')
		FROM pg_stat_activity WHERE backend_type = 'edusync delivery worker'},
		$expected, $secs);
}

# Queue $n async errors in $db; their ids.
sub queue
{
	my ($node, $db, $n, $tag) = @_;
	return split /\n/, $node->safe_psql($db, qq{
		SET edusync.forward = 'async';
		SELECT (edusync.create_sync_error('p_$db', 'Student', 'X', '$tag ' || g))->>'id'
		FROM generate_series(1, $n) g});
}

# =====================================================================
# Part 1: three databases, and the workers following what users do
# =====================================================================
my $node = new_node('launcher', '');
add_database($node, $_) for qw(db1 db2 db3);

ok(defined wait_workers($node, 'db1,db2,db3', 60),
	'each database with the extension has its delivery worker (and postgres, without it, none)');
is($node->safe_psql('db1', q{SELECT string_agg(datname || '=' || state, ',' ORDER BY datname)
	FROM edusync.worker_status() WHERE datname LIKE 'db%'}),
	'db1=running,db2=running,db3=running', 'worker_status() shows them running');
is($node->safe_psql('db1', q{SELECT state FROM edusync.worker_status() WHERE datname = 'postgres'}),
	'extension not installed', 'and postgres as a database without the extension');

# --- each delivers everything it queues, each error once
$graph->reset;
my %queued;
for my $db (qw(db1 db2 db3))
{
	$queued{$_} = $db for queue($node, $db, 20, "many $db");
}
for my $db (qw(db1 db2 db3))
{
	ok(defined wait_for_value($node, $db,
			q{SELECT count(*) FILTER (WHERE status = 'delivered') || '/' || count(*) FROM edusync.deliveries},
			'20/20', 60), "$db: its 20 errors are delivered");
}
my %seen;
my %where;
for my $r ($graph->requests(kind => 'errors'))
{
	my $id = $r->{headers}{'client-request-id'} // '';
	$seen{$id}++;
	$where{$id} = $r->{profile_id} // '';
}
is(scalar(keys %seen), 60, 'the fake Graph received 60 distinct errors');
is(scalar(grep { $seen{$_} != 1 } keys %seen), 0, 'each exactly once');
is(scalar(grep { !exists $queued{$_} } keys %seen), 0, 'all of them queued here');
is(scalar(grep { ($where{$_} // '') ne "p_$queued{$_}" } keys %queued), 0,
	'each sent to the profile of the database that queued it');

# --- CREATE EXTENSION: a new database gets its worker at commit
$node->safe_psql('postgres', 'CREATE DATABASE db4');
my $t0 = time;
$node->safe_psql('db4', q{CREATE EXTENSION edusync;
	INSERT INTO edusync.sync_profiles VALUES ('p_db4', 'profile of db4')});
my $took = wait_workers($node, 'db1,db2,db3,db4', 60);
ok(defined $took, 'CREATE EXTENSION in a new database starts its worker');
note(sprintf('db4 got its worker %.2f s after CREATE EXTENSION', time - $t0));
$graph->reset;
my ($id4) = queue($node, 'db4', 1, 'db4 first');
ok(defined wait_for_value($node, 'db4',
		"SELECT status FROM edusync.deliveries WHERE error_id = '$id4'", 'delivered', 30),
	'and it delivers');

# --- DROP EXTENSION: the worker leaves, woken at commit rather than after
# its idle sleep (10 s): wait until it is idle, then drop.
ok(defined wait_for_value($node, 'postgres',
		q{SELECT state FROM pg_stat_activity WHERE backend_type = 'edusync delivery worker' AND datname = 'db3'},
		'idle', 30), 'the worker of db3 is idle');
sleep 0.5;
$t0 = time;
$node->safe_psql('db3', 'DROP EXTENSION edusync CASCADE');
$took = wait_workers($node, 'db1,db2,db4', 60);
ok(defined $took, 'DROP EXTENSION: the worker of db3 leaves');
note(sprintf('the worker of db3 left %.2f s after DROP EXTENSION', $took // -1));
ok(defined $took && $took < 5,
	'woken by the commit: it leaves well before its 10 s idle sleep ends');
is($node->safe_psql('db1', q{SELECT state FROM edusync.worker_status() WHERE datname = 'db3'}),
	'extension not installed', 'worker_status(): db3 has no extension now');
like(slurp_file($node->logfile),
	qr/edusync delivery worker stops: the extension is no longer installed in this database/,
	'the worker says why it left');

# and CREATE EXTENSION again brings it back
$node->safe_psql('db3', q{CREATE EXTENSION edusync;
	INSERT INTO edusync.sync_profiles VALUES ('p_db3', 'again')});
ok(defined wait_workers($node, 'db1,db2,db3,db4', 60),
	'CREATE EXTENSION again: db3 has its worker back');

# --- DROP DATABASE: succeeds at once, does not hang, the worker is gone
my ($ret, $out, $err);
$t0 = time;
($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE db2', timeout => 60);
my $drop_s = time - $t0;
is($ret, 0, 'DROP DATABASE of a database with a running worker succeeds')
  or diag($err);
note(sprintf('DROP DATABASE db2 took %.2f s', $drop_s));
ok($drop_s < 30, 'and does not hang');
ok(defined wait_workers($node, 'db1,db3,db4', 30), 'its worker is gone');
ok(defined wait_for_value($node, 'db1',
		q{SELECT count(*) FROM edusync.worker_status() WHERE datname IS NULL OR datname = 'db2'},
		'0', 30), 'and worker_status() forgets it');

# --- edusync.databases narrows the databases served, at reload
$node->append_conf('postgresql.conf', "edusync.databases = 'db1, db4'\n");
$node->reload;
ok(defined wait_workers($node, 'db1,db4', 30),
	'edusync.databases = db1, db4: only those keep a worker');
($ret, $out, $err) = $node->psql('db3', qq{\\set VERBOSITY verbose
	SET edusync.forward = 'async';
	SELECT edusync.create_sync_error('p_db3', 'Student', 'X', 'not served')});
like($err, qr/ERROR:  55000: no delivery worker serves database "db3"/,
	'an async create in a database left out is refused with 55000');
like($err, qr/HINT:  Add this database to edusync\.databases/, 'with a hint');
$node->append_conf('postgresql.conf', "edusync.databases = ''\n");
$node->reload;
ok(defined wait_workers($node, 'db1,db3,db4', 30),
	'emptied again: db3 has its worker back');

$node->stop;

# =====================================================================
# Part 2: no background worker slot free
# =====================================================================
# Three slots, the logical replication launcher disabled: the edusync
# launcher and two delivery workers, for three databases.
$graph->reset;
my $small = new_node('full', qq{
max_worker_processes = 3
max_logical_replication_workers = 0
max_parallel_workers = 0
});
add_database($small, $_) for qw(da db dc);

my $status_sql = q{SELECT string_agg(datname || '=' || state, ',' ORDER BY datname)
	FROM edusync.worker_status() WHERE datname LIKE 'd_'};
my $waited = 0;
my $status = '';
while ($waited < 60)
{
	$status = $small->safe_psql('da', $status_sql);
	last if ($status =~ tr/=//) == 3
	  && (() = $status =~ /=running/g) == 2
	  && $status =~ /=no worker: max_worker_processes exhausted/;
	sleep 0.1;
	$waited += 0.1;
}
like($status, qr/^(d.=(running|no worker: max_worker_processes exhausted),?){3}$/,
	"two databases served, one waiting ($status)");
my ($unserved) = $status =~ /(d.)=no worker/;
ok(defined $unserved, 'worker_status() says which one has no worker: max_worker_processes exhausted');
$unserved //= 'dc';
my ($served) = grep { $_ ne $unserved } qw(da db dc);

ok($small->wait_for_log(qr/edusync launcher could not start a delivery worker: no background worker slot is free/, 0),
	'the log says a delivery worker could not be started');
like(slurp_file($small->logfile), qr/HINT:  Raise max_worker_processes/, 'with a hint');

($ret, $out, $err) = $small->psql($unserved, qq{\\set VERBOSITY verbose
	SET edusync.forward = 'async';
	SELECT edusync.create_sync_error('p_$unserved', 'Student', 'X', 'no worker')});
like($err, qr/ERROR:  55000: no delivery worker serves database "$unserved"/,
	'an async create where no worker runs is refused with 55000');
like($err, qr/HINT:  Raise max_worker_processes/, 'with the hint to raise max_worker_processes');
is($small->safe_psql($unserved, 'SELECT count(*) FROM edusync.sync_errors'), '0',
	'and nothing is stored');

# another database gives its worker up: the waiting one gets it
my $offset = -s $small->logfile;
$small->safe_psql($served, 'DROP EXTENSION edusync CASCADE');
ok(defined wait_for_value($small, 'postgres', qq{
		SELECT count(*) FROM pg_stat_activity
		WHERE backend_type = 'edusync delivery worker' AND datname = '$unserved'}, '1', 60),
	"after DROP EXTENSION in $served, $unserved gets a worker");
ok($small->wait_for_log(qr/edusync launcher started every delivery worker it was waiting for/, $offset),
	'and the log says the wait is over');
my ($idu) = queue($small, $unserved, 1, 'served at last');
ok(defined wait_for_value($small, $unserved,
		"SELECT status FROM edusync.deliveries WHERE error_id = '$idu'", 'delivered', 30),
	'its async creates are accepted and delivered');

$small->stop;
$graph->stop;
done_testing();
