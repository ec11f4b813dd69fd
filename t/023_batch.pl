# t/023_batch.pl: edusync.batch_size = 20 sends through Graph's $batch:
# the items are the requests Graph documents; each item's own status
# decides its delivery (201 delivered, 429 retried after its Retry-After,
# 400 failed at once with Graph's words, 500 retried); a failure of the
# whole $batch counts for every item; an answer that leaves items out
# retries them; hundreds of errors go out 20 at a time.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../test";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use JSON::PP;
use FakeGraph;
use EdusyncTest;

my $TOKEN = 'batch-token';

my $graph = FakeGraph->start(tokens => [$TOKEN]);
my $node = edusync_node('batch', $graph, qq{
edusync.bearer_token = '$TOKEN'
edusync.timeout = '2s'
edusync.batch_size = 20
});

sub delivery
{
	my ($id, $cols) = @_;
	return $node->safe_psql('postgres',
		"SELECT $cols FROM edusync.deliveries WHERE error_id = '$id'");
}

# The client-request-ids of the $batch items that got a status.
sub items_with
{
	my ($status) = @_;
	return map { $_->{headers}{'client-request-id'} }
	  grep { defined $_->{status} && $_->{status} == $status } $graph->requests(kind => 'batch_item');
}

# --- twenty errors, one $batch, each item the request Graph documents
$graph->reset;
my @ids = queue_errors($node, 20, 'plain');
ok(settle($node, 'plain', 20), 'twenty errors delivered');
my @batches = $graph->requests(kind => 'batch');
is(scalar @batches, 1, 'in one $batch request');
is($batches[0]{raw_path}, '/beta/$batch', 'to {graph_url}/$batch');
is($batches[0]{headers}{authorization}, "Bearer $TOKEN", 'with the bearer token');
my $items = $batches[0]{json}{requests};
is(scalar @$items, 20, 'carrying twenty requests');
is_deeply([ map { $_->{id} } @$items ], [ map { "$_" } 1 .. 20 ], 'numbered 1 to 20');
is(scalar(grep { $_->{method} eq 'POST' } @$items), 20, 'each a POST');
is(scalar(grep { $_->{url} eq '/education/synchronizationProfiles/p1/errors' } @$items), 20,
	'each to the errors collection, relative to graph_url');
is(scalar(grep { $_->{headers}{'Content-Type'} eq 'application/json' } @$items), 20,
	'each with its content type');
is_deeply([ sort map { $_->{headers}{'client-request-id'} } @$items ], [ sort @ids ],
	'each with its error id as client-request-id');
my $one = decode_json($node->safe_psql('postgres', "SELECT edusync.get_sync_error('p1', '$ids[0]')"));
delete $one->{id};
my ($item) = grep { $_->{headers}{'client-request-id'} eq $ids[0] } @$items;
is_deeply($item->{body}, $one, 'each body the answer without the read-only id');
is($node->safe_psql('postgres', qq{
		SELECT count(*) FROM edusync.deliveries WHERE error_id = ANY ('{@{[ join(',', @ids) ]}}')
		AND status = 'delivered' AND attempts = 1 AND last_status = 201
		AND remote_id ~ '^[0-9a-f-]{36}\$'}), '20',
	'each delivered with its own remote id');

# --- mixed item statuses: 201, 429 (Retry-After 1), 400, 500
$graph->reset;
$graph->script('batch_item',
	{ status => 201, repeat => 5 },
	{ status => 429, headers => { 'Retry-After' => '1' }, repeat => 5 },
	{ status => 400, repeat => 5,
	  body => { error => { code => 'InvalidErrorCode', message => 'errorCode is not known.' } } },
	{ status => 500, repeat => 5 });
my $t0 = time;
@ids = queue_errors($node, 20, 'mixed');
ok(settle($node, 'mixed', 30), 'mixed statuses: nothing left pending');
my @first = $graph->requests(kind => 'batch');
my @throttled = items_with(429);
my @rejected = items_with(400);
my @broken = items_with(500);
is(scalar @throttled, 5, 'five items throttled');
is(scalar @rejected, 5, 'five items rejected');
is(scalar @broken, 5, 'five items failed with 500');
my $in = sub { "('" . join("','", @_) . "')" };
is($node->safe_psql('postgres', "SELECT string_agg(DISTINCT status || '|' || attempts || '|' || last_status || '|' || last_error, ',')
		FROM edusync.deliveries WHERE error_id IN @{[ $in->(@rejected) ]}"),
	'failed|1|400|InvalidErrorCode: errorCode is not known.',
	'a rejected item: failed at once, with Graph\'s code and message');
is($node->safe_psql('postgres', "SELECT string_agg(DISTINCT status || '|' || attempts || '|' || last_status, ',')
		FROM edusync.deliveries WHERE error_id IN @{[ $in->(@throttled, @broken) ]}"),
	'delivered|2|201', 'throttled and failed items: delivered on their second attempt');
is($node->safe_psql('postgres', "SELECT count(*) FROM edusync.deliveries
		WHERE error_id IN @{[ $in->(@ids) ]} AND status = 'delivered' AND attempts = 1"), '5',
	'the items answered 201 at once: delivered, one attempt');
my @b = sort { $a->{time} <=> $b->{time} } $graph->requests(kind => 'batch');
cmp_ok(scalar @b, '>=', 2, 'the retried items went in a later $batch');
cmp_ok($b[1]{time} - $b[0]{time}, '>=', 0.95,
	sprintf('an item\'s Retry-After held back the next $batch (%.2f s)', $b[1]{time} - $b[0]{time}));
my @retried = map { @{ $_->{json}{requests} } } @b[1 .. $#b];
is(scalar @retried, 10, 'only the ten throttled and failed items were sent again');

# --- the whole $batch fails: it counts for every item
$graph->reset;
$graph->script('batch', { status => 503 });
@ids = queue_errors($node, 20, 'outer');
ok(settle($node, 'outer', 30), 'outer 503: nothing left pending');
is($node->safe_psql('postgres', "SELECT string_agg(DISTINCT status || '|' || attempts, ',')
		FROM edusync.deliveries WHERE error_id IN @{[ $in->(@ids) ]}"),
	'delivered|2', 'every item: delivered on its second attempt');

$graph->reset;
$graph->script('batch', { status => 429, headers => { 'Retry-After' => '1.5' } });
@ids = queue_errors($node, 20, 'outer429');
ok(settle($node, 'outer429', 30), 'outer 429: nothing left pending');
@b = sort { $a->{time} <=> $b->{time} } $graph->requests(kind => 'batch');
cmp_ok($b[1]{time} - $b[0]{time}, '>=', 1.45, 'the $batch\'s Retry-After was honoured');

# --- an answer that leaves the items out: each is retried
$graph->reset;
$graph->script('batch', { status => 207, body => { responses => [] } });
@ids = queue_errors($node, 5, 'partial');
ok(settle($node, 'partial', 30), 'items missing from the answer: nothing left pending');
is($node->safe_psql('postgres', "SELECT string_agg(DISTINCT status || '|' || attempts, ',')
		FROM edusync.deliveries WHERE error_id IN @{[ $in->(@ids) ]}"),
	'delivered|2', 'each retried, then delivered');

# --- hundreds of errors, twenty at a time
$graph->reset;
@ids = queue_errors($node, 300, 'many');
ok(settle($node, 'many', 30), '300 errors delivered');
@b = $graph->requests(kind => 'batch');
my $max = 0;
for (@b) { my $n = scalar @{ $_->{json}{requests} }; $max = $n if $n > $max }
is($max, 20, 'at most twenty per $batch');
cmp_ok(scalar @b, '>=', 15, scalar(@b) . ' $batch requests');
my %arrived = map { $_ => 1 } items_with(201);
is(scalar(grep { !$arrived{$_} } @ids), 0, 'each error reached Graph');

$node->stop;
$graph->stop;
done_testing();
