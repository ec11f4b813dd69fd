# t/027_tools.pl: the operator's single-row tools and retention: queue
# errors created while forwarding was off, retry one failed delivery,
# cancel one pending delivery, refuse an unknown profile, and delete
# delivered rows older than edusync.delivered_retention.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../test";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FakeGraph;
use EdusyncTest;

my $graph = FakeGraph->start(tokens => ['tools-token']);
my $node = edusync_node('tools', $graph, qq{
edusync.bearer_token = 'tools-token'
edusync.max_attempts = 3
}, 'p2');

sub status_of
{
	my ($id) = @_;
	return $node->safe_psql('postgres',
		"SELECT status FROM edusync.deliveries WHERE error_id = '$id'");
}

# --- errors created while forwarding was off: queued by profile, or by ids
my @off = split /\n/, $node->safe_psql('postgres', q{
	SELECT (edusync.create_sync_error('p1', 'Student', 'c', 'off ' || g))->>'id'
	FROM generate_series(1, 3) g});
my $other = $node->safe_psql('postgres',
	"SELECT (edusync.create_sync_error('p2', 'Student', 'c', 'off p2'))->>'id'");
is($node->safe_psql('postgres', 'SELECT count(*) FROM edusync.deliveries'), '0',
	'forwarding off: nothing queued');
is($node->safe_psql('postgres',
	"SELECT edusync.queue_errors('p1', ARRAY['$off[0]']::uuid[])"), '1',
	'queue_errors with ids queues those');
is($node->safe_psql('postgres', "SELECT edusync.queue_errors('p1')"), '2',
	'queue_errors by profile queues the rest, not twice');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 3 FROM edusync.deliveries WHERE status = 'delivered'"),
	'the queued errors are delivered');
is(scalar($graph->requests(kind => 'errors')), 3, 'each sent once');
is(status_of($other), '', 'the other profile\'s error was not queued');
my ($ret, $out, $err) = $node->psql('postgres', "SELECT edusync.queue_errors('nope')");
like($err, qr/synchronization profile "nope" does not exist/, 'queue_errors: unknown profile refused');

# --- retry one failed delivery
$graph->reset;
$graph->script('errors', { status => 400 });
my ($failed) = queue_errors($node, 1, 'tofail');
ok($node->poll_query_until('postgres',
	"SELECT status = 'failed' FROM edusync.deliveries WHERE error_id = '$failed'"),
	'a 400 fails the delivery');
is($node->safe_psql('postgres', "SELECT edusync.retry_delivery('p1', '$failed')"), 't',
	'retry_delivery: true for a failed one');
ok($node->poll_query_until('postgres',
	"SELECT status = 'delivered' FROM edusync.deliveries WHERE error_id = '$failed'"),
	'and it is delivered');
is($node->safe_psql('postgres', "SELECT edusync.retry_delivery('p1', '$failed')"), 'f',
	'retry_delivery: false for one that is not failed');

# --- cancel one pending delivery (the endpoint is down meanwhile)
$graph->reset;
$graph->outage('errors', status => 503, seconds => 30);
my ($pending) = queue_errors($node, 1, 'tocancel');
ok($graph->wait_for(sub { scalar($graph->requests(kind => 'errors')) >= 1 }, 30),
	'the outage answered its first send');
is($node->safe_psql('postgres', "SELECT edusync.cancel_delivery('p1', '$pending')"), 't',
	'cancel_delivery: true for a pending one');
is($node->safe_psql('postgres',
	"SELECT status || '|' || last_error FROM edusync.deliveries WHERE error_id = '$pending'"),
	'failed|cancelled by ' . $node->safe_psql('postgres', 'SELECT session_user'),
	'it is failed, cancelled by the session user');
is($node->safe_psql('postgres', "SELECT edusync.cancel_delivery('p1', '$pending')"), 'f',
	'cancel_delivery: false for one that is not pending');
($ret, $out, $err) = $node->psql('postgres', "SELECT edusync.cancel_delivery('nope', '$pending')");
like($err, qr/synchronization profile "nope" does not exist/, 'cancel_delivery: unknown profile refused');
($ret, $out, $err) = $node->psql('postgres', "SELECT edusync.retry_failed('nope')");
like($err, qr/synchronization profile "nope" does not exist/, 'retry_failed: unknown profile refused');
$graph->outage('errors', status => 503, seconds => 0);

# --- retention: delivered rows older than edusync.delivered_retention go
my $delivered = $node->safe_psql('postgres',
	"SELECT count(*) FROM edusync.deliveries WHERE status = 'delivered'");
cmp_ok($delivered, '>=', 4, "$delivered delivered rows before");
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET edusync.delivered_retention = '1s';
	SELECT pg_reload_conf();
});
queue_errors($node, 1, 'wake');		# a turn of the worker after the reload
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM edusync.deliveries WHERE status = 'delivered'"),
	'delivered rows older than the retention are deleted');
is($node->safe_psql('postgres', "SELECT count(*) FROM edusync.deliveries WHERE status = 'failed'"),
	'1', 'failed rows stay');
is($node->safe_psql('postgres', "SELECT count(*) FROM edusync.sync_errors WHERE profile_id = 'p1'"),
	'6', 'the errors themselves stay');

$node->stop;
$graph->stop;
done_testing();
