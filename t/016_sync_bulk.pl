# t/016_sync_bulk.pl: create_sync_errors with edusync.forward = 'sync'
# sends through Graph's $batch (at most 20 requests per $batch, no single
# POST), and each element fares as its single sync create would: the
# deliveries rows it leaves, retries of a throttled item after its
# Retry-After, and on a failure for good the single create's SQLSTATE for
# the first failing element, named by its index, with nothing stored
# (YG001, YG002, YG003, 57014 on cancel).  Replays follow the single
# create: sent only when never forwarded, once per call.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../test";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use JSON::PP;
use FakeGraph;
use EdusyncTest;

my $TOKEN = 'bulk-token-SECRET-5c2e';

my $SECRET = 'bulk-secret-SECRET-8d1f';

my $graph = FakeGraph->start(tokens => [$TOKEN], client_id => 'edusync-client',
	client_secret => $SECRET);
# a long timeout: the counts below must not depend on a loaded machine;
# batch_size stays at its default (1): it is the worker's setting
my $node = edusync_node('sync_bulk', $graph, credentials_conf($graph, $TOKEN, $SECRET) . qq{
edusync.timeout = '60s'
edusync.max_attempts = 3
});

# SQL for an array of $n bodies, messages "$tag 1".."$tag $n"
sub bodies
{
	my ($n, $tag) = @_;
	return qq{(SELECT jsonb_agg(jsonb_build_object('entryType', 'Student',
		'errorCode', 'UnsynchronizableChange', 'errorMessage', '$tag ' || g,
		'recordedDateTime', '2017-07-05T00:52:45Z') ORDER BY g)
		FROM generate_series(1, $n) g)};
}

# Run a bulk create with forward = sync (and extra settings); returns
# (ok, the answers' ids in order, stderr).
sub bulk
{
	my ($bodies, %opt) = @_;
	my $settings = join('', map { "SET $_;\n" } @{ $opt{set} || [] });
	my ($ret, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nSET edusync.forward = 'sync';\n$settings"
		  . "SELECT a->>'id' FROM edusync.create_sync_errors('p1', $bodies) a;",
		on_error_stop => 1);
	return ($ret == 0, [ grep { length } split /\n/, $out ], $err);
}

sub count_rows
{
	return $node->safe_psql('postgres',
		'SELECT (SELECT count(*) FROM edusync.sync_errors) || \'|\' || (SELECT count(*) FROM edusync.deliveries)');
}

my $in = sub { "('" . join("','", @_) . "')" };

# --- 45 errors: three $batch requests of 20, 20 and 5, no single POST
$graph->reset;
my ($ok, $ids, $err) = bulk(bodies(45, 'many'));
ok($ok, '45 errors created and sent') or diag($err);
is(scalar @$ids, 45, '45 answers');
my @batches = sort { $a->{seq} <=> $b->{seq} } $graph->requests(kind => 'batch');
is_deeply([ map { scalar @{ $_->{json}{requests} } } @batches ], [ 20, 20, 5 ],
	'three $batch requests: 20, 20 and 5 items');
is(scalar($graph->requests(kind => 'errors')), 0, 'no single POST');
is($batches[0]{raw_path}, '/beta/$batch', 'to {graph_url}/$batch');
is($batches[0]{headers}{authorization}, "Bearer $TOKEN", 'with the bearer token');
my @items = map { @{ $_->{json}{requests} } } @batches;
is_deeply([ map { $_->{headers}{'client-request-id'} } @items ], $ids,
	'each item carries its error id as client-request-id, in the order of the array');
is(scalar(grep { $_->{method} eq 'POST' && $_->{url} eq '/education/synchronizationProfiles/p1/errors' } @items),
	45, 'each item a POST to the errors collection, relative to graph_url');
my $one = decode_json($node->safe_psql('postgres', "SELECT edusync.get_sync_error('p1', '$ids->[0]')"));
delete $one->{id};
is_deeply($items[0]{body}, $one, 'each body the answer without the read-only id');
is($node->safe_psql('postgres', qq{
		SELECT count(*) FROM edusync.deliveries WHERE error_id IN @{[ $in->(@$ids) ]}
		AND status = 'delivered' AND attempts = 1 AND last_status = 201
		AND last_error IS NULL AND delivered_at IS NOT NULL
		AND remote_id ~ '^[0-9a-f-]{36}\$'}), '45',
	'each recorded as a single sync create records it: delivered, 1 attempt, 201, the remote id');

# --- one item rejected (400): the whole call refused, its index named
my $before = count_rows();
$graph->reset;
$graph->script('batch_item', { status => 201, repeat => 7 },
	{ status => 400, body => { error => { code => 'InvalidEntryType', message => 'The entry type is not known.' } } });
($ok, $ids, $err) = bulk(bodies(10, 'reject'));
ok(!$ok, 'a rejected item refuses the call');
like($err, qr/ERROR:  YG001: bodies\[7\]: Graph rejected the error with HTTP status 400/,
	'YG001 naming the rejected element (bodies[7])');
like($err, qr/DETAIL:  InvalidEntryType: The entry type is not known\./, 'detail has Graph\'s code and message');
is(count_rows(), $before, 'nothing stored: no error, no delivery');
is(scalar($graph->requests(kind => 'batch')), 1, 'a 400 is not retried');

# --- one item throttled (429, Retry-After 1), then 201: retried, stored
$graph->reset;
$graph->script('batch_item', { status => 201, repeat => 3 },
	{ status => 429, headers => { 'Retry-After' => '1' } });
my $t0 = time;
($ok, $ids, $err) = bulk(bodies(5, 'throttle'));
my $elapsed = time - $t0;
ok($ok, 'a throttled item is retried and the call succeeds') or diag($err);
@batches = sort { $a->{seq} <=> $b->{seq} } $graph->requests(kind => 'batch');
is(scalar @batches, 2, 'two $batch requests');
is_deeply([ map { $_->{headers}{'client-request-id'} } @{ $batches[1]{json}{requests} || [] } ],
	[ $ids->[3] ], 'the second carries only the throttled item (bodies[3])');
cmp_ok($batches[1]{time} - $batches[0]{time}, '>=', 1, 'Retry-After honoured between the $batch requests');
cmp_ok($elapsed, '>=', 1, 'the call waited Retry-After');
is($node->safe_psql('postgres', "SELECT string_agg(attempts || '|' || status || '|' || last_status, ',' ORDER BY e.recorded_date_time, e.error_message)
		FROM edusync.deliveries d JOIN edusync.sync_errors e ON e.id = d.error_id
		WHERE d.error_id IN @{[ $in->(@$ids) ]}"),
	'1|delivered|201,1|delivered|201,1|delivered|201,2|delivered|201,1|delivered|201',
	'the throttled item: delivered on its second attempt; the others on their first');
is($node->safe_psql('postgres', "SELECT count(*) FROM edusync.sync_errors WHERE error_message LIKE 'throttle %'"),
	'5', 'all five stored');

# --- still throttled when max_attempts (3) run out: YG002, nothing stored
$before = count_rows();
$graph->reset;
$graph->script('batch_item', { status => 201 },
	{ status => 503, headers => { 'Retry-After' => '0.1' }, repeat => 10 });
($ok, $ids, $err) = bulk(bodies(2, 'exhaust'));
like($err, qr/ERROR:  YG002: bodies\[1\]: could not forward the error to Graph/,
	'an item still failing after max_attempts: YG002 naming it');
like($err, qr/DETAIL:  Gave up after 3 attempts/, 'after max_attempts sends of that item');
is(scalar($graph->requests(kind => 'batch')), 3, 'three $batch requests');
is(count_rows(), $before, 'nothing stored after YG002');

# --- 401 (static token): YG003, for the whole $batch and for one item
for my $case ([ 'batch', [ { status => 401 } ], 0 ],
	[ 'batch_item', [ { status => 201, repeat => 2 }, { status => 401 } ], 2 ])
{
	my ($kind, $actions, $index) = @$case;
	$graph->reset;
	$graph->script($kind, @$actions);
	($ok, $ids, $err) = bulk(bodies(4, "auth$kind"));
	like($err, qr/ERROR:  YG003: bodies\[$index\]: Graph refused the credentials with HTTP status 401/,
		"401 on the $kind: YG003 naming bodies[$index]");
	is(count_rows(), $before, "nothing stored after a 401 on the $kind");
}

# --- a revoked fetched token: one new token, the refused items sent again
$graph->reset;
my $session = $node->background_psql('postgres', on_error_stop => 1);
$session->query_safe("SET edusync.forward = 'sync'; SET edusync.bearer_token = ''");
$session->query_safe("SELECT count(*) FROM edusync.create_sync_errors('p1', " . bodies(3, 'cc1') . ")");
is(scalar($graph->requests(kind => 'token')), 1, 'client credentials: a token fetched');
$graph->revoke;
my $n = $session->query_safe("SELECT count(*) FROM edusync.create_sync_errors('p1', " . bodies(3, 'cc2') . ")");
is($n, '3', 'after a revoked token the call succeeds');
is(scalar($graph->requests(kind => 'token')), 2, '401 with a fetched token: a new token was fetched');
is_deeply([ map { scalar @{ $_->{json}{requests} } } sort { $a->{seq} <=> $b->{seq} } $graph->requests(kind => 'batch') ],
	[ 3, 3, 3 ], 'the refused $batch was sent again once');
is($node->safe_psql('postgres', "SELECT string_agg(DISTINCT status || '|' || attempts || '|' || last_status, ',')
		FROM edusync.deliveries d JOIN edusync.sync_errors e ON e.id = d.error_id WHERE e.error_message LIKE 'cc2 %'"),
	'delivered|2|201', 'recorded as the single create records it: two attempts');
$session->quit;
$graph->config(tokens => [$TOKEN]);
$before = count_rows();

# --- the endpoint down: YG002 naming the first element
my $closed = PostgreSQL::Test::Cluster::get_free_port();
($ok, $ids, $err) = bulk(bodies(3, 'down'),
	set => ["edusync.graph_url = 'http://127.0.0.1:$closed/beta'"]);
like($err, qr/ERROR:  YG002: bodies\[0\]: could not forward the error to Graph/,
	'endpoint down: YG002 naming bodies[0]');
like($err, qr/Gave up after 3 attempts/, 'after max_attempts sends');
is(count_rows(), $before, 'nothing stored with the endpoint down');

# --- what the endpoint answers is cleaned: the token it echoes is not shown
$graph->reset;
$graph->script('batch', { echo => JSON::PP::true, status => 400 });
($ok, $ids, $err) = bulk(bodies(2, 'echo'));
like($err, qr/ERROR:  YG001: bodies\[0\]: /, 'a $batch refused as a whole: YG001 naming bodies[0]');
like($err, qr/echo: /, 'the detail holds the endpoint\'s words');
unlike($err, qr/\Q$TOKEN\E/, 'but not the token it echoed');

# --- replays: sent only when never forwarded, and once per call
my $rid = '00000000-0000-4000-8000-0000000000b1';
my $replay_body = qq{'{"id": "$rid", "entryType": "Student", "errorCode": "E", "errorMessage": "replay 1"}'::jsonb};
$node->safe_psql('postgres', "SELECT edusync.create_sync_error('p1', $replay_body)");	# forward off
$graph->reset;
($ok, $ids, $err) = bulk("jsonb_build_array($replay_body, $replay_body) || " . bodies(1, 'fresh'));
ok($ok, 'a bulk call with a replay twice') or diag($err);
@items = map { @{ $_->{json}{requests} } } $graph->requests(kind => 'batch');
is_deeply([ map { $_->{headers}{'client-request-id'} } @items ], [ $rid, $ids->[2] ],
	'the replay of an error never forwarded is sent, once; the new one too');
is($node->safe_psql('postgres', "SELECT status || '|' || attempts FROM edusync.deliveries WHERE error_id = '$rid'"),
	'delivered|1', 'the replay is recorded delivered');
$graph->reset;
($ok, $ids, $err) = bulk("jsonb_build_array($replay_body)");
ok($ok, 'the replay again') or diag($err);
is(scalar($graph->requests), 0, 'a replay of a forwarded error is not sent again');

# --- a cancel during the send: 57014, nothing stored
$before = count_rows();
$graph->reset;
$graph->script('batch', { delay => 10 });
my $bg = $node->background_psql('postgres', on_error_stop => 0);
my $pid = $bg->query_safe('SELECT pg_backend_pid()');
$bg->query_until(qr/started/, q{
	\echo started
	SET edusync.forward = 'sync';
	\set VERBOSITY verbose
	} . "SELECT count(*) FROM edusync.create_sync_errors('p1', " . bodies(25, 'cancel') . ");\n\\echo finished\n");
# the fake records a delayed request only after the delay: wait for the
# connection (the backend then waits in libcurl)
ok($graph->wait_for(sub { $graph->stats->{connections} >= 1 }, 60),
	'the slow $batch reached the fake');
$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
$bg->query_until(qr/finished/, '');
my $answered = scalar($graph->requests(kind => 'batch'));
like($bg->{stderr}, qr/57014: canceling statement due to user request/, 'cancel gives 57014');
is($answered, 0, 'cancel interrupted the $batch before its answer');
$bg->quit;
is(count_rows(), $before, 'nothing stored after a cancel');
ok($graph->wait_for(sub { scalar($graph->requests(kind => 'batch')) >= 1 }, 60),
	'the fake answered the cancelled $batch in the end');

log_keeps_secrets($node, 'token' => $TOKEN, 'client secret' => $SECRET);
$graph->stop;
done_testing();
