# t/000_fake_graph.pl: the fake Graph itself, over real HTTP, so that the
# other tests cannot pass because the fake accepts anything.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../test";
use Test::More;
use HTTP::Tiny;
use JSON::PP;
use Time::HiRes qw(time);
use FakeGraph;

my $g = FakeGraph->start(tokens => ['tok'], client_id => 'cid', client_secret => 'sec');
my $http = HTTP::Tiny->new(timeout => 10, max_redirect => 0);
my $errors = $g->url . '/education/synchronizationProfiles/p%2F1/errors';
my $body = encode_json({ entryType => 'Student', errorCode => 'c', errorMessage => 'm' });

sub post
{
	my ($url, $content, %headers) = @_;
	return $http->request('POST', $url,
		{ content => $content, headers => { 'Content-Type' => 'application/json', %headers } });
}

my $r = post($errors, $body, Authorization => 'Bearer tok', 'client-request-id' => 'abc');
is($r->{status}, 201, 'create with a valid token: 201');
my $created = decode_json($r->{content});
like($created->{id}, qr/^[0-9a-f-]{36}$/, 'with a new id');
is($created->{errorMessage}, 'm', 'and the body echoed');

$r = post($errors, $body);
is($r->{status}, 401, 'no token: 401');
is(decode_json($r->{content})->{error}{code}, 'InvalidAuthenticationToken', 'Graph error body');
is(post($errors, '[1]', Authorization => 'Bearer tok')->{status}, 400, 'not an object: 400');

my @reqs = $g->requests(kind => 'errors');
is(scalar @reqs, 3, 'three requests recorded');
is($reqs[0]{raw_path}, '/beta/education/synchronizationProfiles/p%2F1/errors', 'raw path kept');
is($reqs[0]{profile_id}, 'p/1', 'profile id decoded');
is($reqs[0]{headers}{'client-request-id'}, 'abc', 'headers recorded');

# token endpoint
my $form = 'grant_type=client_credentials&client_id=cid&client_secret=sec&scope=x';
$r = $http->request('POST', $g->base . '/contoso/oauth2/v2.0/token',
	{ content => $form, headers => { 'Content-Type' => 'application/x-www-form-urlencoded' } });
is($r->{status}, 200, 'token issued');
my $token = decode_json($r->{content})->{access_token};
is(post($errors, $body, Authorization => "Bearer $token")->{status}, 201, 'issued token accepted');
$g->revoke;
is(post($errors, $body, Authorization => "Bearer $token")->{status}, 401, 'revoked token refused');
$g->config(tokens => ['tok']);
$r = $http->request('POST', $g->base . '/contoso/oauth2/v2.0/token',
	{ content => 'grant_type=client_credentials&client_id=cid&client_secret=bad',
	  headers => { 'Content-Type' => 'application/x-www-form-urlencoded' } });
is($r->{status}, 401, 'wrong secret: 401');
like($r->{content}, qr/invalid_client/, 'with invalid_client');

# scripts: statuses with Retry-After, delay, drop, redirect, repeat
$g->reset;
$g->script('errors', { status => 429, headers => { 'Retry-After' => '1.5' } },
	{ status => 503, repeat => 2 }, { delay => 0.5, status => 201 });
$r = post($errors, $body, Authorization => 'Bearer tok');
is($r->{status}, 429, 'scripted 429');
is($r->{headers}{'retry-after'}, '1.5', 'with Retry-After');
is(post($errors, $body, Authorization => 'Bearer tok')->{status}, 503, 'repeat 1');
is(post($errors, $body, Authorization => 'Bearer tok')->{status}, 503, 'repeat 2');
my $t0 = time;
is(post($errors, $body, Authorization => 'Bearer tok')->{status}, 201, 'slow 201');
cmp_ok(time - $t0, '>=', 0.45, 'answered after the delay');
is(post($errors, $body, Authorization => 'Bearer tok')->{status}, 201, 'script used up: normal');
$g->script('errors', { drop => JSON::PP::true });
is(post($errors, $body, Authorization => 'Bearer tok')->{status}, 599, 'dropped connection');
$g->script('errors', { redirect => 'http://127.0.0.1:1/x' });
$r = post($errors, $body, Authorization => 'Bearer tok');
is($r->{status}, 302, 'redirect');
is($r->{headers}{location}, 'http://127.0.0.1:1/x', 'with Location');
$g->outage('errors', status => 503, seconds => 0.5);
is(post($errors, $body, Authorization => 'Bearer tok')->{status}, 503, 'during an outage');
ok($g->wait_for(sub { post($errors, $body, Authorization => 'Bearer tok')->{status} == 201 }, 30),
	'after the outage');

# $batch: per-item statuses, at most 20
$g->reset;
$g->script('batch_item', { status => 201 }, { status => 429, headers => { 'Retry-After' => '2' } },
	{ status => 400 });
my @items = map {
	{ id => "$_", method => 'POST', url => '/education/synchronizationProfiles/p/errors',
	  headers => { 'Content-Type' => 'application/json', 'client-request-id' => "c$_" },
	  body => { entryType => 'S', errorCode => 'c', errorMessage => "m$_" } }
} 1 .. 3;
$r = post($g->url . '/$batch', encode_json({ requests => \@items }), Authorization => 'Bearer tok');
is($r->{status}, 200, '$batch: 200');
my %by_id = map { $_->{id} => $_ } @{ decode_json($r->{content})->{responses} };
is($by_id{1}{status}, 201, 'item 1: 201');
is($by_id{2}{status}, 429, 'item 2: 429');
is($by_id{2}{headers}{'Retry-After'}, '2', 'item 2: Retry-After');
is($by_id{3}{status}, 400, 'item 3: 400');
is(scalar($g->requests(kind => 'batch_item')), 3, 'items recorded');
my @many = map { { %{ $items[0] }, id => "$_" } } 1 .. 21;
is(post($g->url . '/$batch', encode_json({ requests => \@many }), Authorization => 'Bearer tok')
	  ->{status}, 400, '$batch of 21: 400');

my $stats = $g->stats;
is($stats->{kinds}{batch}, 2, 'stats count per kind');

my $pid = $g->{pid};
$g->stop;
ok(!kill(0, $pid), 'the server stopped');
done_testing();
