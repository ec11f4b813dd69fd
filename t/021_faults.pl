# t/021_faults.pl: hundreds of async errors under each fault class of the
# fake Graph (429 and 503 with Retry-After, 500/502/504, dropped
# connections, answers slower than edusync.timeout, outages of a few
# seconds): every one ends 'delivered', every one reached Graph at least
# once (by client-request-id), the fault really happened, and Retry-After
# held back every new request.
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

my $TOKEN = 'faults-token';
my $N = 300;

my $graph = FakeGraph->start(tokens => [$TOKEN]);
my $node = edusync_node('faults', $graph, qq{
edusync.bearer_token = '$TOKEN'
edusync.timeout = '1s'
});

# "status|count,..." of the deliveries of $tag.
sub statuses
{
	my ($tag) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT string_agg(status || '|' || n, ',' ORDER BY status) FROM (
			SELECT d.status, count(*) AS n FROM edusync.deliveries d
			JOIN edusync.sync_errors e ON e.profile_id = d.profile_id AND e.id = d.error_id
			WHERE e.error_message LIKE '$tag %' GROUP BY 1) s});
}

sub retried
{
	my ($tag) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT count(*) FROM edusync.deliveries d JOIN edusync.sync_errors e
		  ON e.profile_id = d.profile_id AND e.id = d.error_id
		WHERE e.error_message LIKE '$tag %' AND d.attempts > 1});
}

# Run one fault class: set it up, queue $N errors, check the outcome.
sub fault_case
{
	my (%c) = @_;
	my $tag = $c{tag};
	$graph->reset;
	$c{setup}->();
	my $t0 = time;
	my @ids = queue_errors($node, $N, $tag);
	ok(settle($node, $tag, 60), "$c{name}: nothing left pending");
	my $elapsed = time - $t0;
	is(statuses($tag), "delivered|$N", "$c{name}: all $N delivered");

	# a slow answer is recorded by the fake only when its delay is over,
	# which a fast drain may not wait for: wait (bounded) for the resends
	my @reqs = $graph->requests(kind => 'errors');
	my $until = time + 15;
	while ($c{min_dups} && @reqs < $N + $c{min_dups} && time < $until)
	{
		sleep 0.1;
		@reqs = $graph->requests(kind => 'errors');
	}
	my %arrived;
	for my $r (@reqs)
	{
		$arrived{ $r->{headers}{'client-request-id'} }++
		  if defined $r->{status} && $r->{status} == 201;
	}
	my @missing = grep { !$arrived{$_} } @ids;
	is(scalar @missing, 0, "$c{name}: each error reached Graph at least once");
	my $faults = grep { !defined $_->{status} || $_->{status} != 201 } @reqs;
	my $dups = grep { $_ > 1 } values %arrived;
	cmp_ok($faults, '>=', $c{min_faults}, "$c{name}: the fault happened ($faults times)")
	  if $c{min_faults};
	cmp_ok($dups, '>=', $c{min_dups}, "$c{name}: the errors given up on were sent again ($dups)")
	  if $c{min_dups};
	cmp_ok(retried($tag), '>', 0, "$c{name}: some deliveries needed more than one attempt")
	  unless $c{curl_may_retry};
	note(sprintf('%s: %d errors in %.1f s, %d requests, %d faults, %d received twice or more',
			$c{name}, $N, $elapsed, scalar @reqs, $faults, $dups));

	if ($c{retry_after})
	{
		# after a throttle is answered, no new request before Retry-After;
		# requests already in flight may arrive within the grace period
		my $grace = 0.25;
		my @bad;
		for my $t (grep { defined $_->{status} && $_->{status} == $c{status} } @reqs)
		{
			push @bad, grep {
				$_->{time} > $t->{time} + $grace
				  && $_->{time} < $t->{time} + $c{retry_after} - 0.05
			} @reqs;
		}
		is(scalar @bad, 0, "$c{name}: Retry-After held back every new request");
	}
	return;
}

fault_case(
	name => '429 with Retry-After',
	tag => 'throttle429',
	status => 429,
	retry_after => 1,
	min_faults => 8,
	setup => sub {
		$graph->script('errors',
			{ status => 429, headers => { 'Retry-After' => '1' }, repeat => 4 },
			{ status => 201, repeat => 100 },
			{ status => 429, headers => { 'Retry-After' => '1' }, repeat => 4 },
			{ status => 201, repeat => 100 },
			{ status => 429, headers => { 'Retry-After' => '1.0' }, repeat => 2 });
	});

fault_case(
	name => '503 with fractional Retry-After',
	tag => 'throttle503',
	status => 503,
	retry_after => 0.8,
	min_faults => 6,
	setup => sub {
		$graph->script('errors',
			{ status => 503, headers => { 'Retry-After' => '0.8' }, repeat => 3 },
			{ status => 201, repeat => 120 },
			{ status => 503, headers => { 'Retry-After' => '0.8' }, repeat => 3 });
	});

fault_case(
	name => '500, 502 and 504',
	tag => 'server5xx',
	min_faults => 9,
	setup => sub {
		$graph->script('errors',
			map { ({ status => $_, repeat => 3 }, { status => 201, repeat => 40 }) }
			  (500, 502, 504));
	});

fault_case(
	name => 'dropped connections',
	tag => 'dropped',
	min_faults => 9,
	# libcurl itself sends a request again, once, on a fresh connection
	# when a reused one closes without answering: then the worker sees
	# no failure at all
	curl_may_retry => 1,
	setup => sub {
		$graph->script('errors',
			map { ({ drop => 1, repeat => 3 }, { status => 201, repeat => 40 }) } 1 .. 3);
	});

fault_case(
	name => 'answers slower than edusync.timeout',
	tag => 'slow',
	min_dups => 4,	# the fake records a slow answer as 201, sent too late
	setup => sub {
		$graph->script('errors',
			{ delay => 2, status => 201, repeat => 2 },
			{ status => 201, repeat => 80 },
			{ delay => 2, status => 201, repeat => 2 });
	});

fault_case(
	name => 'an outage of 3 s (503 without Retry-After)',
	tag => 'outage503',
	min_faults => 3,
	setup => sub { $graph->outage('errors', status => 503, seconds => 3) });

fault_case(
	name => 'an outage of 2 s (connections dropped)',
	tag => 'outagedrop',
	min_faults => 2,
	setup => sub { $graph->outage('errors', drop => JSON::PP::true, seconds => 2) });

# nothing is left over, and nothing failed
is($node->safe_psql('postgres',
		"SELECT count(*) FROM edusync.deliveries WHERE status <> 'delivered'"), '0',
	'no delivery failed or stayed pending');
unlike(slurp_file($node->logfile), qr/ERROR|FATAL|PANIC/, 'the worker logged no error');

$node->stop;
$graph->stop;
done_testing();
