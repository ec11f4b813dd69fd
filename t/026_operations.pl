# t/026_operations.pl: running edusync (issue 10, items 1, 2 and 4).
#
# - secrets from files: rotating the bearer token or the client secret is
#   "write the file, reload", and the next request uses the new one, also
#   when the file is rewritten in place with a secret of the same length in
#   the same second; a file that group or others may read is refused (the
#   worker pauses and says why in worker_status(); sync gives 22023), also
#   when it was fine before and only its mode changed; no secret appears in
#   the server log (log_statement = all, debug2), in pg_settings or SHOW
#   for a pg_monitor member, in an error, or in a table;
# - state changes are logged once: an outage and its end, throttling, a
#   delivery failed for good with Graph's code; worker_status() follows
#   (probing, then idle or sending) and its counters move;
# - check hooks refuse bad URLs at ALTER SYSTEM, and at reload from
#   postgresql.conf (the old value stays, the log says why).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../test";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use FakeGraph;

# same length, so that a rewrite in place keeps the file's size
my @TOKENS = map { "file-token-SECRET-$_" } qw(a1a1a1a1 b2b2b2b2 c3c3c3c3);
my @SECRETS = map { "client-secret-SECRET-$_" } qw(d4d4d4d4 e5e5e5e5);

my $graph = FakeGraph->start(tokens => [ $TOKENS[0] ],
	client_id => 'edusync-client', client_secret => $SECRETS[0]);

my $dir = PostgreSQL::Test::Utils::tempdir;
my $token_file = "$dir/bearer_token";
my $secret_file = "$dir/client_secret";

# Write a secret file in place (same inode), mode 0600.
sub write_secret
{
	my ($path, $value) = @_;
	my $existed = -e $path;
	open(my $fh, $existed ? '+<' : '>', $path) or die "$path: $!";
	truncate($fh, 0);
	print $fh "$value\n";
	close $fh;
	chmod 0600, $path;
	return;
}
write_secret($token_file, $TOKENS[0]);
write_secret($secret_file, $SECRETS[0]);

my $node = PostgreSQL::Test::Cluster->new('operations');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'edusync'
edusync.graph_url = '@{[ $graph->url ]}'
edusync.bearer_token_file = '$token_file'
edusync.tenant_id = 'contoso'
edusync.client_id = 'edusync-client'
edusync.token_url = '@{[ $graph->token_url ]}'
edusync.timeout = '3s'
log_statement = 'all'
log_min_messages = debug2
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION edusync;
	INSERT INTO edusync.sync_profiles VALUES ('p1', 'p1');
	CREATE ROLE monitor LOGIN IN ROLE pg_monitor;
});

sub wait_value
{
	my ($sql, $expected, $secs) = @_;
	my $t0 = time;
	my $got;
	while (1)
	{
		$got = $node->safe_psql('postgres', $sql);
		return 1 if $got eq $expected;
		last if time - $t0 > ($secs // 30);
		sleep 0.05;
	}
	diag("waited for [$sql] = [$expected], last got [$got]");
	return 0;
}

my $n = 0;
# Queue one async error; its id.
sub queue_one
{
	my ($tag) = @_;
	$n++;
	return $node->safe_psql('postgres', qq{
		SET edusync.forward = 'async';
		SELECT edusync.create_sync_error('p1', 'Student', 'X', '$tag $n')->>'id'});
}

sub status_of
{
	my ($id) = @_;
	return "SELECT status FROM edusync.deliveries WHERE error_id = '$id'";
}

sub worker_status
{
	my ($cols) = @_;
	return $node->safe_psql('postgres',
		"SELECT $cols FROM edusync.worker_status() WHERE datname = 'postgres'");
}

# What the server logged from byte $offset on.
sub log_since
{
	my ($offset) = @_;
	my $log = slurp_file($node->logfile);
	return substr($log, $offset);
}

ok(wait_value(q{SELECT state FROM edusync.worker_status() WHERE datname = 'postgres'},
		'running', 30), 'the worker runs');

# =====================================================================
# Secrets from files
# =====================================================================
my $id = queue_one('file token');
ok(wait_value(status_of($id), 'delivered', 30), 'delivered with the token from the file');
my @reqs = $graph->requests(kind => 'errors');
is($reqs[-1]{headers}{authorization}, "Bearer $TOKENS[0]", 'the file\'s token is sent');

# rotation: the endpoint takes only the new token; write the file, reload
$graph->config(tokens => [ $TOKENS[1] ]);
write_secret($token_file, $TOKENS[1]);
$node->reload;
$id = queue_one('rotated token');
ok(wait_value(status_of($id), 'delivered', 30), 'after write + reload, the new token is used');
@reqs = $graph->requests(kind => 'errors');
is($reqs[-1]{headers}{authorization}, "Bearer $TOKENS[1]", 'the rotated token is sent');

# sync mode reads the file too
my ($ret, $out, $err) = $node->psql('postgres', q{SET edusync.forward = 'sync';
	SELECT edusync.create_sync_error('p1', 'Student', 'X', 'sync file token')->>'id'});
is($ret, 0, 'sync mode sends with the file\'s token') or diag($err);

# a rewrite in place in the same second, same length: the file's mtime
# (in whole seconds) and size say nothing changed; it must be read anyway
my @st = stat($token_file);
$graph->config(tokens => [ $TOKENS[2] ]);
write_secret($token_file, $TOKENS[2]);
utime($st[8], $st[9], $token_file);    # mtime as before the rewrite
$node->reload;
$id = queue_one('same second');
ok(wait_value(status_of($id), 'delivered', 30),
	'a rewrite with the same size and mtime is noticed');
@reqs = $graph->requests(kind => 'errors');
is($reqs[-1]{headers}{authorization}, "Bearer $TOKENS[2]", 'and its token is sent');

# --- a file others may read is refused, even when only its mode changed
chmod 0640, $token_file;
$node->reload;
my $offset = -s $node->logfile;
$id = queue_one('group readable');
ok(wait_value(q{SELECT activity || ': ' || (detail LIKE '%edusync.bearer_token_file%not private%')
		FROM edusync.worker_status() WHERE datname = 'postgres'}, 'paused: true', 30),
	'worker_status(): the worker pauses, saying the file is not private');
is($node->safe_psql('postgres', status_of($id)), 'pending', 'the delivery stays pending');
ok($node->wait_for_log(qr/could not use edusync\.bearer_token_file: the file is not private to the server/, $offset),
	'the log says why');
($ret, $out, $err) = $node->psql('postgres', qq{\\set VERBOSITY verbose
	SET edusync.forward = 'sync';
	SELECT edusync.create_sync_error('p1', 'Student', 'X', 'sync refused')});
like($err, qr/ERROR:  22023: could not use edusync\.bearer_token_file: the file is not private/,
	'sync: 22023');
unlike($err, qr/SECRET/, 'the error holds no secret');
chmod 0600, $token_file;
$node->reload;
ok(wait_value(status_of($id), 'delivered', 30), 'chmod 600 + reload: delivered');

# --- the client secret from a file (no static token now)
$node->append_conf('postgresql.conf', "edusync.bearer_token_file = ''\n"
	  . "edusync.client_secret_file = '$secret_file'\n");
$node->reload;
$id = queue_one('client secret');
ok(wait_value(status_of($id), 'delivered', 30), 'delivered with a token fetched with the file\'s secret');
@reqs = $graph->requests(kind => 'errors');
like($reqs[-1]{headers}{authorization}, qr/^Bearer fake-/, 'a fetched token is sent');
my $tokens_before = $graph->stats->{tokens_issued};

$graph->config(client_secret => $SECRETS[1]);
write_secret($secret_file, $SECRETS[1]);
$node->reload;
$id = queue_one('rotated secret');
ok(wait_value(status_of($id), 'delivered', 30), 'after write + reload, the new secret is used');
cmp_ok($graph->stats->{tokens_issued}, '>', $tokens_before, 'a new token was fetched with it');

# --- where a secret must not be
my @secrets = (@TOKENS, @SECRETS);
my $settings = $node->safe_psql('postgres', q{
	SELECT string_agg(name || '=' || coalesce(setting, ''), E'\n') FROM pg_settings
	WHERE name LIKE 'edusync.%'}, extra_params => [ '-U', 'monitor' ]);
like($settings, qr/edusync\.graph_url=/, 'a pg_monitor member reads pg_settings');
my $shows = '';
for my $name (split /\n/, $node->safe_psql('postgres',
		q{SELECT name FROM pg_settings WHERE name LIKE 'edusync.%'}))
{
	my ($r, $o, $e) = $node->psql('postgres', "SHOW $name", extra_params => [ '-U', 'monitor' ]);
	$shows .= "$o$e\n";
}
($ret, $out, $err) = $node->psql('postgres', "SELECT pg_read_file('$token_file')",
	extra_params => [ '-U', 'monitor' ]);
isnt($ret, 0, 'a pg_monitor member cannot read the file');
my ($dump, $dump_err) = ("", "");
IPC::Run::run([ 'pg_dump', '--data-only', '-h', $node->host, '-p', $node->port, '-d', 'postgres' ],
	'>', \$dump, '2>', \$dump_err) or die "pg_dump: $dump_err";
for my $s (@secrets)
{
	unlike($settings, qr/\Q$s\E/, "pg_settings (pg_monitor) does not show $s");
	unlike($shows, qr/\Q$s\E/, "SHOW (pg_monitor) does not show $s");
	unlike($dump, qr/\Q$s\E/, "no table holds $s");
}

# =====================================================================
# State changes, logged once, in worker_status()
# =====================================================================
my ($sent0, $retried0) = split /\|/, worker_status('sent || \'|\' || retried');

# --- an outage and its end
$offset = -s $node->logfile;
$graph->outage('errors', status => 500, seconds => 3);
$id = queue_one('outage');
ok(wait_value(q{SELECT activity FROM edusync.worker_status() WHERE datname = 'postgres'},
		'probing', 30), 'worker_status(): probing during the outage');
ok(wait_value(status_of($id), 'delivered', 60), 'delivered after the outage');
ok(wait_value(q{SELECT activity FROM edusync.worker_status() WHERE datname = 'postgres'
		AND activity IN ('idle', 'sending')}, 'idle', 30)
	  || worker_status('activity') eq 'sending',
	'worker_status(): back to idle once Graph answers');
my ($sent1, $retried1) = split /\|/, worker_status('sent || \'|\' || retried');
cmp_ok($retried1, '>', $retried0, 'the retried counter moved');
cmp_ok($sent1, '>=', $sent0 + 2, 'the sent counter moved');
my $slice = log_since($offset);
is(scalar(() = $slice =~ /Graph is failing, sending one request at a time/g), 1,
	'the outage is logged once');
is(scalar(() = $slice =~ /Graph answers again, after \d+ failed attempt/g), 1,
	'its end is logged once');

# --- throttling
$offset = -s $node->logfile;
my $throttled0 = worker_status('throttled');
$graph->script('errors', { status => 429, headers => { 'Retry-After' => '1' } });
$id = queue_one('throttled');
ok(wait_value(status_of($id), 'delivered', 30), 'delivered after the throttle');
like(log_since($offset), qr/edusync delivery worker throttled by Graph until \d{4}-/,
	'the log says until when Graph throttles');
cmp_ok(worker_status('throttled'), '>', $throttled0, 'the throttled counter moved');

# --- failed for good
$offset = -s $node->logfile;
my $failed0 = worker_status('failed');
$graph->script('errors', { status => 400 });
$id = queue_one('rejected');
ok(wait_value(status_of($id), 'failed', 30), 'a 400 fails the delivery');
like(log_since($offset),
	qr/error $id of profile "p1" failed for good after 1 attempt\n.*DETAIL:.*BadRequest/,
	'the log says it failed for good, with Graph\'s code');
cmp_ok(worker_status('failed'), '>', $failed0, 'the failed counter moved');

# =====================================================================
# Check hooks
# =====================================================================
for my $bad (
	[ 'edusync.graph_url', 'http://graph.example.com/beta' ],
	[ 'edusync.errors_path', '/education/errors' ],
	[ 'edusync.token_url', 'ftp://login.example.com/{tenant}/token' ],
	[ 'edusync.bearer_token_file', 'relative/path' ])
{
	($ret, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nALTER SYSTEM SET $bad->[0] = '$bad->[1]'");
	like($err, qr/ERROR:  22023: invalid value for parameter "\Q$bad->[0]\E"/,
		"ALTER SYSTEM refuses $bad->[0] = $bad->[1]");
}
is(slurp_file($node->data_dir . '/postgresql.auto.conf') =~ /edusync/ ? 1 : 0, 0,
	'and writes nothing to postgresql.auto.conf');

$offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "edusync.graph_url = 'http://graph.example.com/beta'\n");
$node->reload;
ok($node->wait_for_log(qr/invalid value for parameter "edusync\.graph_url": "http:\/\/graph\.example\.com\/beta"/, $offset),
	'reload: the log says the bad graph_url is refused');
like(log_since($offset), qr/DETAIL:  .*loopback/, 'and why');
is($node->safe_psql('postgres', 'SHOW edusync.graph_url'), $graph->url, 'the old value stays');
$id = queue_one('after bad reload');
ok(wait_value(status_of($id), 'delivered', 30), 'and the worker still delivers to it');
$node->append_conf('postgresql.conf', "edusync.graph_url = '@{[ $graph->url ]}'\n");
$node->reload;

# =====================================================================
# The server log holds no secret
# =====================================================================
$node->stop;
my $log = slurp_file($node->logfile);
like($log, qr/statement: SELECT/, 'log_statement = all was on');
like($log, qr/DEBUG:/, 'debug messages were on');
unlike($log, qr/\Q$_\E/, "the server log does not hold $_") for @secrets;
unlike($log, qr/fake-[0-9a-f]{8}/, 'nor any fetched token');

$graph->stop;
done_testing();
