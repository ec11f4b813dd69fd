# t/012_hostile.pl: sync mode against a hostile endpoint and hostile input:
# answers with invalid UTF-8, huge texts, odd numbers and escapes, echoed
# secrets; Retry-After that something else tries to cut short; dot-segment
# profile ids; request bodies in UTF-8 from LATIN1 and SQL_ASCII databases;
# concurrent replays of one id; a profile deleted or updated beside a
# create; a replay of an error never forwarded.
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

my $TOKEN = 'hostile-token-SECRET-3e9a';
my $CLIENT_SECRET = 'hostile+secret/SECRET=4b2c';	# escaped in the form

my $graph = FakeGraph->start(
	tokens => [$TOKEN],
	client_id => 'edusync-client',
	client_secret => $CLIENT_SECRET);

my $node = edusync_node('hostile', $graph,
	credentials_conf($graph, $TOKEN, $CLIENT_SECRET) . qq{
edusync.timeout = '8s'
edusync.max_attempts = 3
log_min_messages = debug1
});

my $n = 0;

# Run SQL in sync mode; (ok, stdout, stderr).
sub sync_sql
{
	my ($sql, %opt) = @_;
	my $settings = join('', map { "SET $_;\n" } @{ $opt{set} || [] });
	my ($ret, $out, $err) = $node->psql($opt{db} || 'postgres',
		"\\set VERBOSITY verbose\nSET edusync.forward = 'sync';\n$settings$sql",
		on_error_stop => 1);
	return ($ret == 0, $out, $err);
}

sub create_sql
{
	my ($profile, $message) = @_;
	$n++;
	$message //= "hostile $n";
	return "SELECT edusync.create_sync_error('$profile', 'Student', 'c', '$message');";
}

# --- a 201 whose id is invalid UTF-8 and 15 MB long: delivered, and what
# is stored is valid and bounded
$graph->reset;
my $body_hex = unpack('H*', "{\"id\":\"r\xff\xfe1" . ('x' x 100000) . '"}');
$graph->script('errors', { status => 201, body_hex => $body_hex });
my ($ok, $out, $err) = sync_sql(create_sql('p1'));
ok($ok, 'a 201 with invalid UTF-8 in its id is a delivery') or diag($err);
my $rid = $node->safe_psql('postgres',
	"SELECT remote_id FROM edusync.deliveries ORDER BY created_at DESC LIMIT 1");
like($rid, qr/^r\?\?1x+\.\.\.$/, 'invalid bytes replaced, the id cut');
cmp_ok(length($rid), '<=', 260, 'a remote id is bounded');

# --- a 201 with a number no numeric holds, and an escape: still delivered
for my $case ([ '{"id":"r1","n":1e200000}', 'a huge number' ],
	[ '{"id":"r\u00e9","x":"\ud83d\ude00"}', 'escapes' ],
	[ '{"id":"r2",', 'truncated JSON' ])
{
	$graph->reset;
	$graph->script('errors', { status => 201, body_hex => unpack('H*', $case->[0]) });
	($ok, $out, $err) = sync_sql(create_sql('p1'));
	ok($ok, "a 201 with $case->[1] is a delivery") or diag($err);
	is(scalar($graph->requests(kind => 'errors')), 1, "$case->[1]: sent once");
}

# --- a 400 with a 15 MB message: the detail is bounded
$graph->reset;
$graph->script('errors', { status => 400, body_hex => unpack('H*',
	'{"error":{"code":"Big","message":"' . ('m' x (15 * 1024 * 1024)) . '"}}') });
($ok, $out, $err) = sync_sql(create_sql('p1'));
like($err, qr/ERROR:  YG001: /, 'a huge message is YG001');
my ($detail) = $err =~ /DETAIL:  (.*)/;
cmp_ok(length($detail // ''), '<', 1000, 'and its detail is bounded');
like($err, qr/DETAIL:  Big: m+\.\.\.\n/, 'the detail is cut with an ellipsis');

# --- an endpoint that echoes the Authorization header and the body
$graph->reset;
$graph->script('errors', { echo => 1, status => 400 });
($ok, $out, $err) = sync_sql(create_sql('p1'));
like($err, qr/ERROR:  YG001: /, 'echo: YG001');
like($err, qr/Bearer \[redacted\]/, 'the echoed token is redacted');
unlike($err, qr/\Q$TOKEN\E/, 'the token is not in the error');

# ... and a token endpoint that echoes the form, where the secret is
# percent-encoded
my @cc = ("edusync.bearer_token = ''");
$graph->reset;
$graph->script('token', { echo => 1, status => 400 });
($ok, $out, $err) = sync_sql(create_sql('p1'), set => \@cc);
like($err, qr/ERROR:  YG003: /, 'token echo: YG003');
like($err, qr/client_secret=\[redacted\]/, 'the percent-encoded secret is redacted');
(my $escaped = $CLIENT_SECRET) =~ s/([^A-Za-z0-9\-._~])/sprintf('%%%02X', ord $1)/ge;
unlike($err, qr/\Q$CLIENT_SECRET\E|\Q$escaped\E/i, 'the secret is not in the error');
unlike($err, qr/The token endpoint answered.*The token endpoint answered/,
	'the detail says it once');
unlike($err, qr/\.\.\n/, 'no detail ends in ".."');

# --- 3xx and 501 are said for what they are
$graph->reset;
$graph->script('errors', { redirect => 'http://127.0.0.1:1/elsewhere' });
($ok, $out, $err) = sync_sql(create_sql('p1'));
like($err, qr/ERROR:  YG001: Graph answered with a redirect \(HTTP status 302\)/, '302 is a redirect');
$graph->reset;
$graph->script('errors', { status => 501 });
($ok, $out, $err) = sync_sql(create_sql('p1'));
like($err, qr/ERROR:  YG001: Graph failed the request with HTTP status 501/, '501 is a failure');

# --- Retry-After lasts until its deadline, whatever sets the latch
$graph->reset;
$graph->script('errors', { status => 503, headers => { 'Retry-After' => '3' } });
my $bg = $node->background_psql('postgres', on_error_stop => 0);
my $pid = $bg->query_safe('SELECT pg_backend_pid()');
$bg->query_until(qr/start/, "\\echo start\nSET edusync.forward = 'sync';\n" . create_sql('p1') . "\n");
$graph->wait_for(sub { scalar($graph->requests(kind => 'errors')) >= 1 }, 30);
# poke the backend's latch until the retry arrives
my $pokes = 0;
while (scalar($graph->requests(kind => 'errors')) < 2 && $pokes < 400)
{
	$node->safe_psql('postgres', "SELECT pg_log_backend_memory_contexts($pid)");
	$pokes++;
	sleep 0.02;
}
$bg->quit;
my @reqs = $graph->requests(kind => 'errors');
is(scalar @reqs, 2, 'the 503 was retried once');
cmp_ok($reqs[1]{time} - $reqs[0]{time}, '>=', 2.95,
	"the retry waited out Retry-After: 3 despite $pokes latch wakes");

# --- dot-segment profile ids are percent-encoded
$node->safe_psql('postgres',
	"INSERT INTO edusync.sync_profiles VALUES ('..', 'dots'), ('.', 'dot')");
for my $p ('..', '.')
{
	$graph->reset;
	($ok, $out, $err) = sync_sql(create_sql($p));
	ok($ok, "profile '$p' forwarded") or diag($err);
	@reqs = $graph->requests(kind => 'errors');
	my $enc = $p eq '..' ? '%2E%2E' : '%2E';
	is($reqs[0]{raw_path}, "/beta/education/synchronizationProfiles/$enc/errors",
		"profile '$p' is one encoded segment");
}

# --- request bodies are UTF-8 whatever the database encoding
$node->safe_psql('postgres', q{
	CREATE DATABASE latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
	CREATE DATABASE ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0});
for my $db ('latin1', 'ascii')
{
	$node->safe_psql($db, q{CREATE EXTENSION edusync;
		INSERT INTO edusync.sync_profiles VALUES ('p1', 'p1')});
}
$graph->reset;
($ok, $out, $err) = sync_sql(
	"SELECT edusync.create_sync_error('p1', 'Student', 'c', 'caf' || chr(233));",
	db => 'latin1');
ok($ok, 'LATIN1 database: forwarded') or diag($err);
@reqs = $graph->requests(kind => 'errors');
is($reqs[0]{json}{errorMessage}, "caf\x{e9}", 'LATIN1 text arrives as UTF-8');
# an answer with non-ASCII text is stored in LATIN1
$graph->reset;
$graph->script('errors', { status => 400, body_hex => unpack('H*',
	qq{{"error":{"code":"C\xc3\xa9","message":"\\u00e9t\\u00e9 \\u4e2d"}}}) });
($ok, $out, $err) = sync_sql(
	"SELECT edusync.create_sync_error('p1', 'Student', 'c', 'x');", db => 'latin1');
like($err, qr/YG001/, 'LATIN1: a 400 with non-ASCII text is YG001, not a conversion error');

# SQL_ASCII: valid UTF-8 is sent as it is, other bytes are refused (22021)
$graph->reset;
($ok, $out, $err) = sync_sql(
	"SELECT edusync.create_sync_error('p1', 'Student', 'c', convert_from('\\x636166c3a9', 'SQL_ASCII'));",
	db => 'ascii');
ok($ok, 'SQL_ASCII database: UTF-8 text forwarded') or diag($err);
@reqs = $graph->requests(kind => 'errors');
is($reqs[0]{json}{errorMessage}, "caf\x{e9}", 'SQL_ASCII: UTF-8 text arrives intact');
($ok, $out, $err) = sync_sql(
	"SELECT edusync.create_sync_error('p1', 'Student', 'c', convert_from('\\x6361ff', 'SQL_ASCII'));",
	db => 'ascii');
like($err, qr/ERROR:  22021: property "errorMessage" is not valid UTF-8/, 'SQL_ASCII: \xff is refused with 22021');
is($node->safe_psql('ascii', 'SELECT count(*) FROM edusync.sync_errors'), '1',
	'nothing stored for the refused one');
# a 201 with an escape the SQL_ASCII database cannot hold
$graph->reset;
$graph->script('errors', { status => 201, body_hex => unpack('H*', '{"id":"r\u00e9"}') });
($ok, $out, $err) = sync_sql(
	"SELECT edusync.create_sync_error('p1', 'Student', 'c', 'escape');", db => 'ascii');
ok($ok, 'SQL_ASCII: a 201 with a \u00e9 escape is a delivery') or diag($err);
is($node->safe_psql('ascii',
	"SELECT remote_id FROM edusync.deliveries ORDER BY created_at DESC LIMIT 1"),
	'r?', 'the escape is replaced');

# --- concurrent replays of one id: one row; the same content gets the
# stored answer, other content 23505
my $id = '7c9e6679-7425-40de-944b-e07fc1f90ae7';
my $a = $node->background_psql('postgres', on_error_stop => 0);
$a->query_safe('BEGIN');
$a->query_safe("SELECT edusync.create_sync_error('p1', 'Student', 'c', 'replayed', id => '$id')");
my $b = $node->background_psql('postgres', on_error_stop => 0);
$b->query_until(qr/go/, "\\echo go\nSELECT edusync.create_sync_error('p1', 'Student', 'c', 'replayed', id => '$id')->>'id';\n\\echo done-b\n");
my $c = $node->background_psql('postgres', on_error_stop => 0);
$c->query_until(qr/go/, "\\echo go\nSELECT edusync.create_sync_error('p1', 'Student', 'c', 'other', id => '$id')->>'id';\n\\echo done-c\n");
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"),
	'both replays wait for the first create');
$a->query_safe('COMMIT');
my $out_b = $b->query_until(qr/done-b/, '');
$c->query_until(qr/done-c/, '');
like($out_b, qr/\Q$id\E/, 'the same content gets the stored answer');
like($c->{stderr}, qr/already exists in synchronization profile "p1" with other content/,
	'other content gets 23505');
$a->quit;
$b->quit;
$c->quit;
is($node->safe_psql('postgres', "SELECT count(*) FROM edusync.sync_errors WHERE id = '$id'"),
	'1', 'one row');

# --- a create locks its profile FOR KEY SHARE until it ends, as the
# foreign key's check does (without a query in READ COMMITTED: row_insert.c)
$node->safe_psql('postgres', "INSERT INTO edusync.sync_profiles (id, display_name) " .
	"SELECT 'pk' || g, 'locked' FROM generate_series(1, 5) g");
my $locks_waiting = "SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'";
my $d = $node->background_psql('postgres', on_error_stop => 0);
my $w = $node->background_psql('postgres', on_error_stop => 0);
# a delete of the profile in progress: the create waits for it
$d->query_safe("BEGIN; DELETE FROM edusync.sync_profiles WHERE id = 'pk1'");
$w->query_until(qr/go/, "\\echo go\nSELECT edusync.create_sync_error('pk1', 'Student', 'c', 'deleted meanwhile');\n\\echo done-w\n");
ok($node->poll_query_until('postgres', $locks_waiting),
	'a create waits for a delete of its profile in progress');
$d->query_safe('COMMIT');
$w->query_until(qr/done-w/, '');
like($w->{stderr}, qr/synchronization profile "pk1" does not exist/,
	'the delete commits: the create is refused with 23503');
$w->{stderr} = '';
# the delete rolls back: the create goes ahead
$d->query_safe("BEGIN; DELETE FROM edusync.sync_profiles WHERE id = 'pk2'");
$w->query_until(qr/go/, "\\echo go\nSELECT edusync.create_sync_error('pk2', 'Student', 'c', 'kept meanwhile')->>'errorMessage';\n\\echo done-w\n");
ok($node->poll_query_until('postgres', $locks_waiting),
	'a create waits for a delete of its profile in progress (2)');
$d->query_safe('ROLLBACK');
like($w->query_until(qr/done-w/, ''), qr/kept meanwhile/,
	'the delete rolls back: the create stores its error');
# an update of the profile's other columns does not hold a create back
$d->query_safe("BEGIN; UPDATE edusync.sync_profiles SET display_name = 'renamed' WHERE id = 'pk3'");
like($w->query_safe("SELECT edusync.create_sync_error('pk3', 'Student', 'c', 'beside an update')->>'errorMessage'"),
	qr/beside an update/, 'a create goes ahead beside an update of its profile\'s name');
$d->query_safe('COMMIT');
# a create's open transaction holds its profile: a delete waits for it,
# forwarding off and in sync mode
for my $mode ('off', 'sync')
{
	my $p = $mode eq 'off' ? 'pk4' : 'pk5';
	$w->query_safe("BEGIN; SET LOCAL edusync.forward = '$mode'; " .
		"SELECT edusync.create_sync_error('$p', 'Student', 'c', 'held')");
	$d->query_until(qr/go/, "\\echo go\nDELETE FROM edusync.sync_profiles WHERE id = '$p';\n\\echo done-d\n");
	ok($node->poll_query_until('postgres', $locks_waiting),
		"forward $mode: a delete of the profile waits for the create's transaction");
	$w->query_safe('ROLLBACK');
	$d->query_until(qr/done-d/, '');
	is($node->safe_psql('postgres', "SELECT count(*) FROM edusync.sync_profiles WHERE id = '$p'"),
		'0', "forward $mode: the delete goes ahead once the create rolled back");
}
$d->quit;
$w->quit;
is($node->safe_psql('postgres',
	"SELECT string_agg(profile_id || ': ' || error_message, ', ' ORDER BY profile_id) " .
	"FROM edusync.sync_errors WHERE profile_id LIKE 'pk%'"),
	'pk2: kept meanwhile, pk3: beside an update', 'the errors stored are the ones answered');

# --- a replay in sync mode of an error created with forwarding off is sent
my $off_id = '8c9e6679-7425-40de-944b-e07fc1f90ae8';
$node->safe_psql('postgres',
	"SELECT edusync.create_sync_error('p1', 'Student', 'c', 'off first', id => '$off_id')");
$graph->reset;
($ok, $out, $err) = sync_sql(
	"SELECT edusync.create_sync_error('p1', 'Student', 'c', 'off first', id => '$off_id');");
ok($ok, 'replay in sync mode') or diag($err);
is(scalar($graph->requests(kind => 'errors')), 1, 'the replay of an unsent error is sent');
$graph->reset;
($ok, $out, $err) = sync_sql(
	"SELECT edusync.create_sync_error('p1', 'Student', 'c', 'off first', id => '$off_id');");
is(scalar($graph->requests(kind => 'errors')), 0, 'a second replay is not sent again');

# --- no secret in the server log
log_keeps_secrets($node, token => $TOKEN, 'client secret' => $CLIENT_SECRET,
	'escaped client secret' => $escaped);
$graph->stop;
done_testing();
