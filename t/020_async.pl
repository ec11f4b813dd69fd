# t/020_async.pl: edusync.forward = 'async' against the fake Graph: the
# worker runs and waits on its latch, a rollback sends nothing, a commit is
# sent at once (latency measured), the request is the one Graph documents,
# a 400 fails for good with Graph's words, retry_failed() queues it again,
# a reload changes where the worker sends, an unsafe configuration pauses
# the worker without spending attempts, and the token flow (a 401 refreshes
# the token once; a token endpoint that refuses sends nothing).
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

my $TOKEN = 'async-token-SECRET-5c1e';
my $CLIENT_SECRET = 'async-client-secret-SECRET-0a7d';

my $graph = FakeGraph->start(
	tokens => [$TOKEN],
	client_id => 'edusync-client',
	client_secret => $CLIENT_SECRET);

my $node = edusync_node('async', $graph,
	credentials_conf($graph, $TOKEN, $CLIENT_SECRET) . qq{
edusync.timeout = '2s'
}, 'p2');

# Poll a query until it gives the expected value (poll_query_until: time
# is only the bound, $secs or the test default, whichever is longer).
sub wait_query
{
	my ($sql, $expected, $secs) = @_;
	local $PostgreSQL::Test::Utils::timeout_default =
	  List::Util::max($secs // 0, $PostgreSQL::Test::Utils::timeout_default);
	return $node->poll_query_until('postgres', $sql, $expected) ? 1 : 0;
}

# Reload the configuration and wait until the postmaster has read it: the
# log, from before the reload, names the parameter ($param) that changed.
# The postmaster signals the worker right after, and the worker reloads
# before its next send.
sub reload_and_wait
{
	my ($param, $how) = @_;
	my $offset = -s $node->logfile;
	if ($how && $how eq 'pg_ctl')
	{
		$node->reload;
	}
	else
	{
		$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	}
	ok($node->wait_for_log(qr/parameter "\Q$param\E" (?:changed|removed)/, $offset),
		"the reload of $param was read");
	return;
}

sub pending
{
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM edusync.deliveries WHERE status = 'pending'");
}

sub delivery
{
	my ($id, $cols) = @_;
	return $node->safe_psql('postgres',
		"SELECT $cols FROM edusync.deliveries WHERE error_id = '$id'");
}

# --- the worker runs, and sleeps on its latch
ok(wait_query(
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'edusync delivery worker'",
		'1', 20), 'the delivery worker runs');
ok(wait_query(
		"SELECT wait_event_type || '/' || wait_event || '/' || state FROM pg_stat_activity
		 WHERE backend_type = 'edusync delivery worker'", 'Extension/Extension/idle', 20),
	'an idle worker waits as an extension wait event');
like(slurp_file($node->logfile), qr/edusync delivery worker started for database "postgres"/,
	'the worker says where it delivers from');

# --- a rollback sends nothing
$graph->reset;
$node->safe_psql('postgres', q{
	SET edusync.forward = 'async';
	BEGIN;
	SELECT edusync.create_sync_error('p1', 'Student', 'X', 'rolled back');
	ROLLBACK;
});
# a later committed error is sent: by then a rolled-back one would be too
my ($marker) = queue_errors($node, 1, 'after the rollback');
ok(wait_query("SELECT status FROM edusync.deliveries WHERE error_id = '$marker'",
		'delivered', 30), 'an error committed after the rollback is delivered');
is(join(',', map { $_->{headers}{'client-request-id'} } $graph->requests), $marker,
	'a rolled-back error is not sent');
$node->safe_psql('postgres', "DELETE FROM edusync.deliveries WHERE error_id = '$marker'");
is($node->safe_psql('postgres', 'SELECT count(*) FROM edusync.deliveries'), '0',
	'and leaves no delivery');

# --- the queued row, read before commit (the worker cannot see it yet):
# inserted without a statement, holding what the INSERT's defaults give
my ($qret, $qout, $qerr) = $node->psql('postgres', q{
	SET edusync.forward = 'async';
	SET client_min_messages = debug2;
	BEGIN;
	SELECT edusync.create_sync_error('p1', 'Student', 'X', 'queued row') IS NOT NULL;
	SELECT d.status || '|' || d.attempts || '|' || (d.next_attempt_at = now()) || '|' ||
		(d.created_at = now()) || '|' || (d.last_status IS NULL) || '|' ||
		(d.last_error IS NULL) || '|' || (d.remote_id IS NULL) || '|' ||
		(d.delivered_at IS NULL) || '|' || (d.last_attempt_at IS NULL)
		FROM edusync.deliveries d JOIN edusync.sync_errors e
			ON e.profile_id = d.profile_id AND e.id = d.error_id
		WHERE e.error_message = 'queued row';
	ROLLBACK;
});
is($qret, 0, 'a queued row: the create succeeds') or diag($qerr);
is($qout, "t\npending|0|true|true|true|true|true|true|true",
	'a queued row holds what the INSERT statement gave it');
like($qerr, qr/inserted a row into edusync\.deliveries without a statement, its foreign key held by this transaction's own row/,
	'a queued row is inserted without a statement, its foreign key check not queued');

# --- a commit is sent: the request Graph documents, the delivery recorded
$graph->reset;
my $answer = decode_json($node->safe_psql('postgres', q{
	SET edusync.forward = 'async';
	SELECT edusync.create_sync_error('p1', '{"entryType": "Student",
		"errorCode": "UnsynchronizableChange", "errorMessage": "Student cannot be updated",
		"joiningValue": "j@school.edu", "recordedDateTime": "2017-07-05T00:52:45Z",
		"reportableIdentifier": "r"}')}));
ok(wait_query("SELECT status FROM edusync.deliveries WHERE error_id = '$answer->{id}'",
		'delivered', 10), 'the committed error is delivered');
my @reqs = $graph->requests(kind => 'errors');
is(scalar @reqs, 1, 'one request sent');
is($reqs[0]{raw_path}, '/beta/education/synchronizationProfiles/p1/errors', 'to the errors collection');
is($reqs[0]{headers}{authorization}, "Bearer $TOKEN", 'with the bearer token');
like($reqs[0]{headers}{'content-type'}, qr{^application/json}, 'as JSON');
is($reqs[0]{headers}{'client-request-id'}, $answer->{id}, 'client-request-id is the error id');
my %expected = %$answer;
delete $expected{id};
is_deeply($reqs[0]{json}, \%expected, 'the body is the answer without the read-only id');
is(delivery($answer->{id},
		"attempts || '|' || last_status || '|' || (remote_id ~ '^[0-9a-f-]{36}\$') || '|' ||
		 (delivered_at IS NOT NULL) || '|' || (next_attempt_at IS NULL) || '|' || (last_error IS NULL)"),
	'1|201|true|true|true|true', 'recorded: one attempt, 201, the remote id, delivered_at');

# --- commit-to-send latency, one commit at a time
$graph->reset;
my $session = $node->background_psql('postgres', on_error_stop => 1);
$session->query_safe("SET edusync.forward = 'async'");
my (%started, @server_ms);
for my $i (1 .. 50)
{
	my $t0 = time;
	my $id = $session->query_safe(
		"SELECT edusync.create_sync_error('p1', 'Student', 'X', 'latency $i')->>'id'");
	$started{$id} = $t0;
	sleep 0.05;
}
$session->quit;
ok(wait_query("SELECT count(*) FROM edusync.deliveries d JOIN edusync.sync_errors e
		ON e.profile_id = d.profile_id AND e.id = d.error_id
		WHERE e.error_message LIKE 'latency %' AND d.status <> 'delivered'", '0', 20),
	'all 50 single commits delivered');
my @client_ms;
for my $r ($graph->requests(kind => 'errors'))
{
	my $t0 = $started{ $r->{headers}{'client-request-id'} } or next;
	push @client_ms, ($r->{time} - $t0) * 1000;
}
@server_ms = split /\n/, $node->safe_psql('postgres', q{
	SELECT extract(epoch FROM d.delivered_at - d.created_at) * 1000
	FROM edusync.deliveries d JOIN edusync.sync_errors e
	  ON e.profile_id = d.profile_id AND e.id = d.error_id
	WHERE e.error_message LIKE 'latency %'});

sub median
{
	my @s = sort { $a <=> $b } @_;
	return @s ? $s[ int($#s / 2) ] : 9999;
}
my $client_median = median(@client_ms);
my $server_median = median(@server_ms);
is(scalar @client_ms, 50, 'every latency probe reached the fake');
note(sprintf('commit-to-send latency over %d commits: median %.1f ms, max %.1f ms '
		  . '(from the client sending the statement to the fake receiving the request)',
		scalar @client_ms, $client_median, (sort { $b <=> $a } @client_ms)[0] // 0));
note(sprintf('commit-to-delivered latency (created_at to delivered_at, server side): median %.1f ms',
		$server_median));
cmp_ok($client_median, '<', 200, 'median commit-to-send latency well under 200 ms');

# --- a 400 fails for good, with Graph's code and message; retry_failed() requeues
$graph->reset;
$graph->script('errors', { status => 400, body => { error => {
	code => 'InvalidEntryType', message => 'The entry type is not known.' } } });
my ($rejected) = queue_errors($node, 1, 'error');
ok(wait_query("SELECT status FROM edusync.deliveries WHERE error_id = '$rejected'", 'failed', 10),
	'a 400 makes the delivery failed');
is(delivery($rejected, "attempts || '|' || last_status || '|' || last_error || '|' || (next_attempt_at IS NULL)"),
	'1|400|InvalidEntryType: The entry type is not known.|true',
	'at once (one attempt), with Graph\'s code and message');
# a later error is sent: by then a retry of the 400 would have been too
my ($after400) = queue_errors($node, 1, 'after the 400');
ok(wait_query("SELECT status FROM edusync.deliveries WHERE error_id = '$after400'",
		'delivered', 30), 'an error queued after the 400 is delivered');
is(scalar(grep { $_->{headers}{'client-request-id'} eq $rejected }
		$graph->requests(kind => 'errors')), 1, 'a 400 is not retried');
is($node->safe_psql('postgres', "SELECT edusync.retry_failed('p2')"), '0',
	'retry_failed of another profile requeues nothing');
is($node->safe_psql('postgres', "SELECT edusync.retry_failed('p1')"), '1',
	'retry_failed requeues the failed delivery');
ok(wait_query("SELECT status FROM edusync.deliveries WHERE error_id = '$rejected'", 'delivered', 10),
	'the requeued delivery is delivered once the fault is gone');
is(delivery($rejected, "attempts || '|' || last_status || '|' || coalesce(last_error, '-')"),
	'1|201|-', 'with a fresh count of attempts');

# --- a reload changes where the worker sends
my $graph2 = FakeGraph->start(tokens => [$TOKEN]);
$graph->reset;
$node->safe_psql('postgres', "ALTER SYSTEM SET edusync.graph_url = '@{[ $graph2->url ]}'");
reload_and_wait('edusync.graph_url');
my @moved = queue_errors($node, 5, 'error');
ok(wait_query('SELECT count(*) FROM edusync.deliveries WHERE status = \'pending\'', '0', 10),
	'delivered after the reload');
is(scalar($graph2->requests(kind => 'errors')), 5, 'the reloaded graph_url got the requests');
is(scalar($graph->requests(kind => 'errors')), 0, 'the old one got none');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET edusync.graph_url');
reload_and_wait('edusync.graph_url');
$graph2->stop;

# --- an unsafe configuration is refused when set (check hooks), so the
# worker never sees it: it goes on, and no attempt is spent on it
$graph->reset;
$graph->script('errors', { status => 429, headers => { 'Retry-After' => '2' }, repeat => 3 });
my @held = queue_errors($node, 3, 'error');
ok($graph->wait_for(sub { scalar($graph->requests(kind => 'errors')) >= 1 }, 10),
	'throttled sends hold the queue for 2 s');
my ($uret, $uout, $uerr) = $node->psql('postgres',
	"ALTER SYSTEM SET edusync.errors_path = '/education/errors'");
isnt($uret, 0, 'ALTER SYSTEM refuses an errors_path without {profile_id}');
like($uerr, qr/invalid value for parameter "edusync.errors_path"/, 'with the 22023 message');
like($uerr, qr/must contain "\{profile_id\}" exactly once/, 'and says why');
ok(wait_query("SELECT count(*) FROM edusync.deliveries WHERE status = 'pending'", '0', 15),
	'the worker, never paused, delivers them after the throttle');
is($node->safe_psql('postgres',
		"SELECT max(attempts) FROM edusync.deliveries WHERE error_id IN ('" . join("','", @held) . "')"), '2',
	'each was sent once throttled and once delivered');

# --- the client-credentials flow: a 401 refreshes the token once
# (the credentials are in postgresql.conf from the start, behind the static
# token: a reload that changes a secret makes the postmaster log its value,
# and ALTER SYSTEM would be logged by log_statement)
$node->append_conf('postgresql.conf', "edusync.bearer_token = ''\n");
reload_and_wait('edusync.bearer_token', 'pg_ctl');
$graph->reset;
my ($first) = queue_errors($node, 1, 'error');
ok(wait_query("SELECT status FROM edusync.deliveries WHERE error_id = '$first'", 'delivered', 10),
	'client credentials: delivered');
is(scalar($graph->requests(kind => 'token')), 1, 'a token was fetched');
like(($graph->requests(kind => 'errors'))[0]{headers}{authorization}, qr/^Bearer fake-/,
	'and used');
$graph->revoke;
my ($second) = queue_errors($node, 1, 'error');
ok(wait_query("SELECT status FROM edusync.deliveries WHERE error_id = '$second'", 'delivered', 10),
	'a revoked token: delivered after a refresh');
is(scalar($graph->requests(kind => 'token')), 2, 'one new token fetched');
is(delivery($second, 'attempts'), '2', 'the refused send counts as an attempt');
is(join(',', map { $_->{status} } $graph->requests(kind => 'errors')), '201,401,201',
	'the 401 was repeated once, at once');

# a token endpoint that refuses: nothing sent, no attempt spent, warned
$graph->reset;
$graph->revoke;
$graph->config(client_secret => 'rotated');
my $refused_at = -s $node->logfile;
my ($third) = queue_errors($node, 1, 'error');
ok($node->wait_for_log(qr/edusync delivery worker could not obtain a token/, $refused_at),
	'the worker could not obtain a token');
ok($node->poll_query_until('postgres',
		"SELECT status || '|' || attempts FROM edusync.deliveries WHERE error_id = '$third'",
		'pending|1'),
	'refused token: still pending after the 401 that asked for a new one');
ok(scalar($graph->requests(kind => 'token')) >= 1, 'the worker asked for a token');
is(scalar($graph->requests(kind => 'errors')), 1, 'no send without a token');
like(slurp_file($node->logfile),
	qr/WARNING:  edusync delivery worker could not obtain a token for Graph\n.*DETAIL:  .*invalid_client/,
	'the worker says why');
ok($node->poll_query_until('postgres',
		"SELECT last_error LIKE 'waiting: token: %invalid_client%' FROM edusync.deliveries WHERE error_id = '$third'"),
	'and so does the held row');
like($node->safe_psql('postgres', q{SELECT detail FROM edusync.worker_status() WHERE datname = 'postgres'}),
	qr/^token: .*invalid_client/, 'and worker_status()');
$graph->config(client_secret => $CLIENT_SECRET);
ok(wait_query("SELECT status FROM edusync.deliveries WHERE error_id = '$third'", 'delivered', 15),
	'delivered once the token endpoint accepts the secret again');
is(delivery($third, "last_attempt_at >= created_at AND last_attempt_at <= delivered_at"), 't',
	'last_attempt_at is when it was last sent');

# --- a 403 is retried with backoff and fails after max_attempts
$node->safe_psql('postgres', 'ALTER SYSTEM SET edusync.max_attempts = 3');
reload_and_wait('edusync.max_attempts');
$graph->reset;
$graph->script('errors', { status => 403, repeat => 3 });
my ($forbidden) = queue_errors($node, 1, 'error');
ok(wait_query("SELECT status FROM edusync.deliveries WHERE error_id = '$forbidden'", 'failed', 30),
	'a lasting 403 fails the delivery');
like(delivery($forbidden, "attempts || '|' || last_status || '|' || last_error"),
	qr/^3\|403\|Forbidden: Insufficient privileges to complete the operation\. \(request-id [0-9a-f-]{36}\)$/,
	'after max_attempts, with Graph\'s words and its request-id');
is(scalar($graph->requests(kind => 'errors')), 3, 'three sends');

# --- a terminated worker is restarted
my $pid = worker_pid($node);
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok(wait_query("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'edusync delivery worker'
		AND pid <> $pid", '1', 20), 'a terminated worker is restarted');

# --- the indexes hold what the rows stored without statements belong in:
# the delivered and failed rows so far, and queued rows still in their
# transaction (pending; no worker sees them yet)
indexes_agree($node, 'async');
indexes_agree($node, 'async, in the transaction', q{
	SET LOCAL edusync.forward = 'async';
	SELECT count(edusync.create_sync_error('p1', 'Student', 'c', 'indexed ' || g))
	FROM generate_series(1, 3) g;});

log_keeps_secrets($node, 'static token' => $TOKEN, 'client secret' => $CLIENT_SECRET);
$graph->stop;
done_testing();
