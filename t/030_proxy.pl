# t/030_proxy.pl: edusync_proxy, edusync's functions as PL/Proxy calls
# routed by hashtext(profile_id) to shards that run edusync.
#
# Part 1, shards in separate clusters (each delivering from database
# postgres with its own worker): profiles and errors created through the
# proxy land on the shard their hash names and nowhere else; the shard's
# SQLSTATEs come through the proxy; both shards' workers deliver every error
# once; a stopped shard fails only the calls routed to it and its pending
# deliveries drain after it restarts.
# Part 2, shards as databases of one cluster: the same routing and
# SQLSTATEs; the async check needs a worker per database.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../test";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use List::Util ();
use Time::HiRes qw(time sleep);
use JSON::PP;
use FakeGraph;
use EdusyncTest;

my $TOKEN = 'proxy-token-SECRET-77e1';
my $graph = FakeGraph->start(tokens => [$TOKEN]);

# A partition's connection string: the shard's socket, port and database,
# and async forwarding for the sessions the proxy opens there.
sub partition
{
	my ($node, $db) = @_;
	return sprintf("host=%s port=%d dbname=%s options='-c edusync.forward=async'",
		$node->host, $node->port, $db);
}

# Create edusync_proxy in $db of $node, with the cluster 'edusync' on the
# given partitions.
sub make_proxy
{
	my ($node, $db, @parts) = @_;
	my $i = 0;
	my $options = join(', ', map { (my $s = $_) =~ s/'/''/g; sprintf("p%d '%s'", $i++, $s) } @parts);
	$node->safe_psql($db, qq{
		CREATE EXTENSION edusync_proxy CASCADE;
		CREATE SERVER edusync FOREIGN DATA WRAPPER plproxy OPTIONS ($options);
		CREATE USER MAPPING FOR PUBLIC SERVER edusync;
	});
	return;
}

# Run $sql; its SQLSTATE and primary message, or ('', '') when it succeeds.
sub sqlstate
{
	my ($node, $db, $sql) = @_;
	my ($out, $err) = ('', '');
	$node->psql($db, "\\set VERBOSITY verbose\n$sql", stdout => \$out, stderr => \$err);
	return ('', '') unless $err =~ /ERROR:  ([0-9A-Z]{5}): (.*)/;
	return ($1, $2);
}

# Poll $sql on $node/$db until it gives $expected (poll_query_until: time
# is only the bound, $secs or the test default, whichever is longer).
sub wait_value
{
	my ($node, $db, $sql, $expected, $secs) = @_;
	local $PostgreSQL::Test::Utils::timeout_default =
	  List::Util::max($secs // 0, $PostgreSQL::Test::Utils::timeout_default);
	return $node->poll_query_until($db, $sql, $expected) ? 1 : 0;
}

# How many times the fake Graph accepted (2xx) each of @ids (client-request-id).
sub received
{
	my (@ids) = @_;
	my %want = map { $_ => 0 } @ids;
	for my $r ($graph->requests(kind => 'errors'))
	{
		my $id = $r->{headers}{'client-request-id'} // '';
		$want{$id}++ if exists $want{$id} && $r->{status} =~ /^2/;
	}
	return \%want;
}

# The partition (0 or 1) of each profile id, as the proxy computes it.
sub partitions_of
{
	my ($node, $db, @profiles) = @_;
	my $list = join(', ', map { "('$_')" } @profiles);
	my %part = map { split /\|/ } split /\n/, $node->safe_psql($db,
		"SELECT p, pg_catalog.hashtext(coalesce(p, '')) & 1 FROM (VALUES $list) v(p)");
	return %part;
}

# Profiles and errors through the proxy land on the shard the hash names,
# and nowhere else; get and list through the proxy give what create gave.
# Returns the ids of the errors, by partition.
sub check_routing
{
	my ($label, $proxy, $pdb, $shards, $tag) = @_;
	my @profiles = map { sprintf('%s-profile-%02d', $tag, $_) } 1 .. 12;
	my %part = partitions_of($proxy, $pdb, @profiles);
	my @by_part = ([ grep { $part{$_} == 0 } @profiles ], [ grep { $part{$_} == 1 } @profiles ]);
	ok(@{ $by_part[0] } && @{ $by_part[1] },
		"$label: the 12 profiles hash to both partitions (" . scalar(@{ $by_part[0] }) . ' + '
		  . scalar(@{ $by_part[1] }) . ')');

	for my $p (@profiles)
	{
		$proxy->safe_psql($pdb, "SELECT edusync.create_sync_profile('$p', 'display $p')");
	}
	my (%ids, %answers);
	for my $i (0 .. $#profiles)
	{
		my $p = $profiles[$i];
		my $sql = $i % 2
		  ? qq{SELECT edusync.create_sync_error('$p', '{"entryType": "Student", "errorCode": "E",
				"errorMessage": "$tag $p", "recordedDateTime": "2021-03-04T05:06:07+02:00"}')}
		  : qq{SELECT edusync.create_sync_error(profile_id => '$p', entry_type => 'Teacher',
				error_code => 'E', error_message => '$tag $p', joining_value => 'j')};
		my $answer = $proxy->safe_psql($pdb, $sql);
		my $id = decode_json($answer)->{id};
		push @{ $ids{ $part{$p} } }, $id;
		$answers{$p} = [ $id, $answer ];
	}

	for my $n (0, 1)
	{
		my ($node, $db) = @{ $shards->[$n] };
		my $mine = join(',', sort @{ $by_part[$n] });
		is($node->safe_psql($db, "SELECT string_agg(id, ',' ORDER BY id) FROM edusync.sync_profiles
				WHERE id LIKE '$tag-%'"), $mine, "$label: shard $n holds exactly the profiles that hash to it");
		is($node->safe_psql($db, "SELECT string_agg(DISTINCT profile_id, ',' ORDER BY profile_id)
				FROM edusync.sync_errors WHERE error_message LIKE '$tag %'"), $mine,
			"$label: shard $n holds exactly the errors of those profiles");
		is($node->safe_psql($db, "SELECT count(*) FROM edusync.sync_errors WHERE error_message LIKE '$tag %'"),
			scalar(@{ $by_part[$n] }), "$label: shard $n holds one error per profile");
	}

	my ($p, $first) = ($profiles[1], $answers{ $profiles[1] });
	is($proxy->safe_psql($pdb, "SELECT edusync.get_sync_error('$p', '$first->[0]')"), $first->[1],
		"$label: get_sync_error through the proxy gives what create gave");
	is($proxy->safe_psql($pdb, "SELECT edusync.list_sync_errors('$p', 5) -> 'value' -> 0"), $first->[1],
		"$label: list_sync_errors through the proxy too");
	is($proxy->safe_psql($pdb, "SELECT edusync.get_sync_error('$profiles[0]', '$first->[0]') IS NULL"), 't',
		"$label: get_sync_error of another profile's id is NULL");
	return (\%ids, \@by_part);
}

# The validation table through the proxy: each SQLSTATE is the shard's,
# the message the shard's behind PL/Proxy's prefix, nothing stored.
sub check_sqlstates
{
	my ($label, $proxy, $pdb, $shards, $profile, $shard_of_profile) = @_;
	my $id = $proxy->safe_psql($pdb, qq{SELECT edusync.create_sync_error('$profile', 'Student', 'E', 'kept')->>'id'});
	my $body = sub { my $extra = shift; qq{'{"entryType": "Student", "errorCode": "E", "errorMessage": "m"$extra}'} };
	my @cases = (
		[ 'NULL profile id', "SELECT edusync.create_sync_error(NULL, 'Student', 'E', 'm')", '23502' ],
		[ 'empty profile id', "SELECT edusync.create_sync_error('', " . $body->('') . ')', '22023' ],
		[ 'unknown profile', "SELECT edusync.create_sync_error('$profile-nobody', " . $body->('') . ')', '23503' ],
		[ 'body not an object', "SELECT edusync.create_sync_error('$profile', '[1]')", '22023' ],
		[ 'unknown property', "SELECT edusync.create_sync_error('$profile', " . $body->(', "color": "red"') . ')', '22023' ],
		[ 'wrong \@odata.type', "SELECT edusync.create_sync_error('$profile', " . $body->(', "@odata.type": "#x.y"') . ')', '22023' ],
		[ 'number for a string', qq{SELECT edusync.create_sync_error('$profile', '{"entryType": 1, "errorCode": "E", "errorMessage": "m"}')}, '22023' ],
		[ 'errorMessage missing', qq{SELECT edusync.create_sync_error('$profile', '{"entryType": "S", "errorCode": "E"}')}, '23502' ],
		[ 'errorMessage too long', "SELECT edusync.create_sync_error('$profile', 'S', 'E', repeat('x', 8193))", '22001' ],
		[ 'recordedDateTime without offset', "SELECT edusync.create_sync_error('$profile', " . $body->(', "recordedDateTime": "2021-01-01T00:00:00"') . ')', '22007' ],
		[ 'id not a GUID', "SELECT edusync.create_sync_error('$profile', " . $body->(', "id": "42"') . ')', '22P02' ],
		[ 'existing id, other content', "SELECT edusync.create_sync_error('$profile', 'Student', 'E', 'other', id => '$id')", '23505' ],
		[ 'typed: entry_type NULL', "SELECT edusync.create_sync_error('$profile', NULL, 'E', 'm')", '23502' ],
		[ 'list: top 0', "SELECT edusync.list_sync_errors('$profile', 0)", '22023' ],
		[ 'existing profile', "SELECT edusync.create_sync_profile('$profile', 'again')", '23505' ],
	);
	my ($node, $db) = @{ $shard_of_profile };
	my $count = "SELECT (SELECT count(*) FROM edusync.sync_errors) || '/' || (SELECT count(*) FROM edusync.sync_profiles)";
	my @before = map { $_->[0]->safe_psql($_->[1], $count) } @$shards;
	for my $c (@cases)
	{
		my ($what, $sql, $want) = @$c;
		my ($direct, $dmsg) = sqlstate($node, $db, $sql);
		my ($proxied, $pmsg) = sqlstate($proxy, $pdb, $sql);
		is($direct, $want, "$label: $what: $want on the shard");
		is($proxied, $want, "$label: $what: $want through the proxy");
		like($pmsg, qr/^edusync\.(create_sync_error|list_sync_errors|create_sync_profile)\(\d\): \[\w+\] REMOTE ERROR: \Q$dmsg\E$/,
			"$label: $what: the shard's message behind PL/Proxy's prefix");
	}
	is_deeply([ map { $_->[0]->safe_psql($_->[1], $count) } @$shards ], \@before,
		"$label: no refused call stored anything on either shard");
	my ($ss, $msg) = sqlstate($proxy, $pdb, "SELECT edusync.create_sync_error('$profile', 'Student', 'E', 'kept', id => '$id')");
	is($ss, '', "$label: an idempotent retry through the proxy is not an error");
	return;
}

########################################################################
# Part 1: two shards in separate clusters, one proxy cluster.

my $conf = qq{edusync.bearer_token = '$TOKEN'\n};
my @shard = (edusync_node('shard0', $graph, $conf), edusync_node('shard1', $graph, $conf));
my $proxy = PostgreSQL::Test::Cluster->new('proxy');
$proxy->init;
$proxy->start;
make_proxy($proxy, 'postgres', map { partition($_, 'postgres') } @shard);
my @shards = map { [ $_, 'postgres' ] } @shard;

my ($ids, $by_part) = check_routing('clusters', $proxy, 'postgres', \@shards, 'c');
check_sqlstates('clusters', $proxy, 'postgres', \@shards, $by_part->[1][0], $shards[1]);

# --- async: both shards' workers deliver, each error once
my @all = (@{ $ids->{0} }, @{ $ids->{1} });
for my $n (0, 1)
{
	ok(wait_value($shard[$n], 'postgres',
			"SELECT count(*) FROM edusync.deliveries WHERE status <> 'delivered'", '0', 30),
		"clusters: shard $n delivered all its errors");
}
my $got = received(@all);
is_deeply([ grep { $got->{$_} != 1 } sort keys %$got ], [],
	'clusters: the fake Graph received each error created through the proxy exactly once');
my $delivered = $shard[0]->safe_psql('postgres', "SELECT count(*) FROM edusync.deliveries WHERE status = 'delivered'")
  + $shard[1]->safe_psql('postgres', "SELECT count(*) FROM edusync.deliveries WHERE status = 'delivered'");
is($proxy->safe_psql('postgres', 'SELECT pending || \'|\' || failed || \'|\' || delivered_last_hour FROM edusync.delivery_queue'),
	"0|0|$delivered", 'clusters: the proxy\'s delivery_queue adds up both shards (RUN ON ALL)');
is($proxy->safe_psql('postgres', 'SELECT count(DISTINCT shard) FROM edusync.shard_delivery_queues()'), '2',
	'clusters: shard_delivery_queues has one row per shard');
is($proxy->safe_psql('postgres', 'SELECT edusync.retry_failed()'), '0',
	'clusters: retry_failed() on every shard adds up their counts');

# --- shard 1 stopped: only its calls fail; its pending deliveries wait
# An outage of the fake Graph keeps shard 1's new deliveries pending.
$graph->outage('errors', status => 503, seconds => 600);
my ($p0, $p1) = ($by_part->[0][0], $by_part->[1][0]);
my @held = split /\n/, $proxy->safe_psql('postgres', qq{
	SELECT edusync.create_sync_error('$p1', 'Student', 'E', 'held ' || g)->>'id'
	FROM generate_series(1, 5) g});
ok($graph->wait_for(sub { grep { $_->{status} == 503 } $graph->requests(kind => 'errors') }, 30),
	'stop: shard 1\'s worker tried to send during the outage');
$shard[1]->stop('fast');
is(join(',', map { $_ // 0 } @{ received(@held) }{@held}), '0,0,0,0,0',
	'stop: none of the held errors was delivered before shard 1 stopped');

my ($ss, $msg) = sqlstate($proxy, 'postgres', "SELECT edusync.create_sync_error('$p1', 'Student', 'E', 'down')");
is($ss, 'XX000', 'stop: a create routed to the stopped shard fails');
like($msg, qr/^PL\/Proxy function edusync\.create_sync_error\(8\): \[postgres\] PQconnect\w+: connection to server on socket ".*\.s\.PGSQL\.@{[ $shard[1]->port ]}" failed/,
	'stop: the error names the function and the unreachable shard');
($ss) = sqlstate($proxy, 'postgres', "SELECT edusync.get_sync_error('$p1', '$ids->{1}[0]')");
is($ss, 'XX000', 'stop: a read routed to the stopped shard fails');
is($proxy->safe_psql('postgres', "SELECT edusync.create_sync_error('$p0', 'Student', 'E', 'up')->>'errorMessage'"),
	'up', 'stop: a create routed to the other shard works');
is($proxy->safe_psql('postgres', "SELECT edusync.get_sync_error('$p0', '$ids->{0}[0]') IS NOT NULL"), 't',
	'stop: a read routed to the other shard works');
($ss) = sqlstate($proxy, 'postgres', 'SELECT * FROM edusync.delivery_queue');
is($ss, 'XX000', 'stop: the cluster-wide delivery_queue (RUN ON ALL) needs every shard');

$shard[1]->start;
is($shard[1]->safe_psql('postgres', "SELECT count(*) FROM edusync.deliveries d
		JOIN edusync.sync_errors e ON e.profile_id = d.profile_id AND e.id = d.error_id
		WHERE e.error_message LIKE 'held %' AND d.status = 'pending'"), '5',
	'restart: shard 1 kept the 5 held deliveries pending');
$graph->outage('errors', status => 503, seconds => 0);	# the outage ends
is($proxy->safe_psql('postgres', "SELECT edusync.create_sync_error('$p1', 'Student', 'E', 'back')->>'errorMessage'"),
	'back', 'restart: calls routed to the restarted shard work again');
ok(wait_value($shard[1], 'postgres', "SELECT count(*) FROM edusync.deliveries WHERE status <> 'delivered'", '0', 60),
	'restart: the restarted shard\'s pending deliveries drain');
$got = received(@held);
is_deeply([ grep { $got->{$_} != 1 } sort keys %$got ], [],
	'restart: each held error reached the fake Graph exactly once');
ok(wait_value($proxy, 'postgres', 'SELECT pending FROM edusync.delivery_queue', '0', 30),
	'restart: the proxy sees an empty queue on every shard');

$_->stop for $proxy, @shard;

########################################################################
# Part 2: shards as databases of one cluster (and the proxy as a third).

my $one = edusync_node('databases', $graph, $conf);
$one->safe_psql('postgres', 'CREATE DATABASE shard_a');
$one->safe_psql('postgres', 'CREATE DATABASE shard_b');
$one->safe_psql('postgres', 'CREATE DATABASE proxy');
$one->safe_psql($_, 'CREATE EXTENSION edusync') for qw(shard_a shard_b);
make_proxy($one, 'proxy', partition($one, 'shard_a'), partition($one, 'shard_b'));
my @dbs = ([ $one, 'shard_a' ], [ $one, 'shard_b' ]);

my ($dids, $dby_part) = check_routing('databases', $one, 'proxy', \@dbs, 'd');
check_sqlstates('databases', $one, 'proxy', \@dbs, $dby_part->[0][0], $dbs[0]);
is($one->safe_psql('postgres', "SELECT count(*) FROM edusync.sync_errors WHERE error_message LIKE 'd %'"), '0',
	'databases: nothing landed in the proxy\'s own cluster database');
is($one->safe_psql('proxy', 'SELECT count(*) FROM edusync.shard_delivery_queues()'), '2',
	'databases: shard_delivery_queues has one row per shard');

# every database with edusync has its own delivery worker (the launcher's)
for my $db (qw(shard_a shard_b))
{
	ok(wait_value($one, $db, "SELECT count(*) FROM edusync.deliveries WHERE status <> 'delivered'", '0', 30),
		"databases: $db delivered all its errors");
}
my $dgot = received(@{ $dids->{0} }, @{ $dids->{1} });
is_deeply([ grep { $dgot->{$_} != 1 } sort keys %$dgot ], [],
	'databases: the fake Graph received each error exactly once');

$one->stop;
$graph->stop;
done_testing();
