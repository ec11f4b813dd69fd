# t/010_sync.pl: edusync.forward = 'sync' against the fake Graph: the
# request on the wire, every retry class, every failure SQLSTATE with the
# row not kept, the token flow, URL safety, cancel and statement_timeout,
# and secrets kept out of sight.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../test";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use JSON::PP;
use Encode ();
use FakeGraph;
use EdusyncTest;

my $STATIC_TOKEN = 'static-token-SECRET-7f3a';
my $CLIENT_SECRET = 'client-secret-SECRET-91bd';

my $graph = FakeGraph->start(
	tokens => [$STATIC_TOKEN],
	client_id => 'edusync-client',
	client_secret => $CLIENT_SECRET,
	expires_in => 3599);

# edusync.timeout bounds the whole sync send; it is long here so that the
# counts below (two requests, max_attempts requests) do not depend on how
# fast a loaded machine is.  The cases about the timeout set their own.
my $node = edusync_node('sync', $graph,
	credentials_conf($graph, $STATIC_TOKEN, $CLIENT_SECRET) . qq{
edusync.timeout = '60s'
edusync.max_attempts = 4
});
$node->safe_psql('postgres', q{
	CREATE ROLE plain LOGIN;
	GRANT USAGE ON SCHEMA edusync TO plain;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA edusync TO plain;
});

my $BODY = q{'{"entryType": "Student", "errorCode": "UnsynchronizableChange",
	"errorMessage": "Student cannot be updated", "joiningValue": "j@school.edu",
	"recordedDateTime": "2017-07-05T00:52:45Z", "reportableIdentifier": "r"}'};

# Run SQL with forward = sync (and extra settings); returns (ok, stdout, stderr).
sub sync_sql
{
	my ($sql, %opt) = @_;
	my $settings = join('', map { "SET $_;\n" } @{ $opt{set} || [] });
	my ($ret, $out, $err) = $node->psql(
		$opt{db} || 'postgres',
		"\\set VERBOSITY verbose\nSET edusync.forward = 'sync';\n$settings$sql",
		on_error_stop => 1);
	return ($ret == 0, $out, $err);
}

sub create_sql
{
	my ($profile) = @_;
	$profile //= 'p1';
	return "SELECT edusync.create_sync_error('$profile', $BODY);";
}

sub count_errors
{
	return $node->safe_psql('postgres', 'SELECT count(*) FROM edusync.sync_errors');
}

# --- success: the request Graph documents, the delivery recorded
$graph->reset;
my ($ok, $out, $err) = sync_sql(create_sql());
ok($ok, 'sync create succeeds') or diag($err);
my $answer = decode_json($out);
my @reqs = $graph->requests(kind => 'errors');
is(scalar @reqs, 1, 'one request sent');
my $r = $reqs[0];
is($r->{method}, 'POST', 'POST');
is($r->{raw_path}, '/beta/education/synchronizationProfiles/p1/errors', 'the errors collection of the profile');
is($r->{headers}{authorization}, "Bearer $STATIC_TOKEN", 'bearer token sent');
like($r->{headers}{'content-type'}, qr{^application/json}, 'JSON content type');
is($r->{headers}{'client-request-id'}, $answer->{id}, 'client-request-id is the error id');
my %expected_body = %$answer;
delete $expected_body{id};
is_deeply($r->{json}, \%expected_body, 'body is the answer without the read-only id');
is($r->{body}, $node->safe_psql('postgres', "SELECT (\$j\$$out\$j\$::jsonb - 'id')::text"),
	'body, byte for byte, is the text of that jsonb');

# the same for text that needs escapes, a null and a fraction of a second
$graph->reset;
($ok, $out, $err) = sync_sql(q{SELECT edusync.create_sync_error('p1', 'Student',
	'c', E'say "hi" \\\\ back\tslash \u00e9 \u2603', NULL, 'r',
	'2017-07-05T00:52:45.25Z')});
ok($ok, 'sync create with escapes succeeds') or diag($err);
@reqs = $graph->requests(kind => 'errors');
is($reqs[0]{body},
	Encode::decode('UTF-8', $node->safe_psql('postgres', "SELECT (\$j\$$out\$j\$::jsonb - 'id')::text")),
	'escapes, null and fraction: the body is the text of the answer\'s jsonb');
my $delivery = $node->safe_psql('postgres',
	"SELECT status, attempts, last_status, remote_id IS NOT NULL, delivered_at IS NOT NULL
	 FROM edusync.deliveries WHERE error_id = '$answer->{id}'");
is($delivery, 'delivered|1|201|t|t', 'delivery recorded with the remote id');
my $remote = $node->safe_psql('postgres',
	"SELECT remote_id FROM edusync.deliveries WHERE error_id = '$answer->{id}'");
like($remote, qr/^[0-9a-f-]{36}$/, 'remote id is Graph\'s id');

# --- keep-alive: a second send in the same session reuses the connection
$graph->reset;
($ok, $out, $err) = sync_sql(create_sql() . create_sql());
ok($ok, 'two sends in one session') or diag($err);
is($graph->stats->{connections}, 1, 'the second send reused the connection');

# --- each retry class, then success
for my $case (
	[ '429 with Retry-After', { status => 429, headers => { 'Retry-After' => '0.3' } } ],
	[ '503 with fractional Retry-After', { status => 503, headers => { 'Retry-After' => '0.25' } } ],
	[ '500', { status => 500 } ],
	[ '502', { status => 502 } ],
	[ '504', { status => 504 } ],
	[ '408', { status => 408 } ],
	[ 'dropped connection', { drop => JSON::PP::true } ])
{
	my ($name, $action) = @$case;
	$graph->reset;
	$graph->script('errors', $action, { status => 201 });
	my $t0 = time;
	($ok, $out, $err) = sync_sql(create_sql());
	ok($ok, "retried after $name") or diag($err);
	is(scalar($graph->requests(kind => 'errors')), 2, "$name: two requests");
	my $id = $ok ? decode_json($out)->{id} : '';
	is($node->safe_psql('postgres',
			"SELECT attempts || '|' || status FROM edusync.deliveries WHERE error_id = '$id'"),
		'2|delivered', "$name: two attempts recorded");
	if ($action->{headers})
	{
		# the fake records a request before its answer leaves, so the
		# second request came at least Retry-After after the first was
		# answered, however slow the machine
		my $ra = $action->{headers}{'Retry-After'};
		my @two = $graph->requests(kind => 'errors');
		cmp_ok($two[1]{time} - $two[0]{time}, '>=', $ra,
			"$name: Retry-After honoured between the requests");
		cmp_ok(time - $t0, '>=', $ra, "$name: the call waited Retry-After");
	}
}

# --- YG001: Graph rejects; detail has Graph's code and message; row not kept
my $before = count_errors();
$graph->reset;
$graph->script('errors', { status => 400, body => { error => {
	code => 'InvalidEntryType', message => 'The entry type is not known.' } } });
($ok, $out, $err) = sync_sql(create_sql());
ok(!$ok, '400 fails the call');
like($err, qr/ERROR:  YG001: .*400/, '400 is YG001');
like($err, qr/DETAIL:  InvalidEntryType: The entry type is not known\./, 'detail has Graph\'s code and message');
is(count_errors(), $before, 'row not kept after YG001');
is(scalar($graph->requests(kind => 'errors')), 1, 'a 400 is not retried');

# --- a hostile answer (nested far deeper than any Graph body) is not parsed
$graph->reset;
$graph->script('errors', { status => 400, body => ('[' x 200000) . (']' x 200000) });
($ok, $out, $err) = sync_sql(create_sql());
like($err, qr/ERROR:  YG001: .*\nDETAIL:  HTTP status 400\./, 'a deeply nested answer is YG001, not a stack overflow');

# --- YG002: still failing when attempts run out
$graph->reset;
$graph->script('errors', { status => 503, repeat => 10 });
($ok, $out, $err) = sync_sql(create_sql());
like($err, qr/ERROR:  YG002: /, 'persistent 503 is YG002');
is(scalar($graph->requests(kind => 'errors')), 4, 'max_attempts = 4 requests');
is(count_errors(), $before, 'row not kept after YG002');

# --- YG002: unreachable endpoint (nothing listens on that port)
my $closed = PostgreSQL::Test::Cluster::get_free_port();
($ok, $out, $err) = sync_sql(create_sql(),
	set => ["edusync.graph_url = 'http://127.0.0.1:$closed/beta'", "edusync.max_attempts = 2"]);
like($err, qr/ERROR:  YG002: /, 'unreachable endpoint is YG002');

# --- YG003: 403, or 401 with a static token
for my $status (403, 401)
{
	$graph->reset;
	$graph->script('errors', { status => $status });
	($ok, $out, $err) = sync_sql(create_sql());
	like($err, qr/ERROR:  YG003: /, "$status is YG003");
	is(count_errors(), $before, "row not kept after $status");
}

# --- the client-credentials flow: fetched once, cached, refreshed once on 401
# (the secret comes from postgresql.conf; an empty static token selects the flow)
my @cc = ("edusync.bearer_token = ''");
$graph->reset;
($ok, $out, $err) = sync_sql(create_sql() . create_sql(), set => \@cc);
ok($ok, 'client credentials: two sends') or diag($err);
my @tok = $graph->requests(kind => 'token');
is(scalar @tok, 1, 'one token fetched for two sends (cached)');
is($tok[0]{raw_path}, '/contoso/oauth2/v2.0/token', 'token URL with the tenant');
like($tok[0]{body}, qr/grant_type=client_credentials/, 'grant_type');
like($tok[0]{body}, qr/scope=https%3A%2F%2Fgraph\.microsoft\.com%2F\.default/, 'scope');
like($tok[0]{body}, qr/client_id=edusync-client/, 'client_id');
my @sent = $graph->requests(kind => 'errors');
like($sent[0]{headers}{authorization}, qr/^Bearer fake-/, 'fetched token used');

# a revoked token: one 401, a new token, then success (same session, so
# the first token is cached)
$graph->reset;
my $session = $node->background_psql('postgres', on_error_stop => 1);
$session->query_safe(join(";\n", "SET edusync.forward = 'sync'", map { "SET $_" } @cc));
$session->query_safe(create_sql());
is(scalar($graph->requests(kind => 'token')), 1, 'first send fetched a token');
$graph->revoke;
$session->query_safe(create_sql());
is(scalar($graph->requests(kind => 'token')), 2,
	'401 with a fetched token: a new token was fetched');
is(scalar($graph->requests(kind => 'errors')), 3, 'the refused send was repeated once');
$session->quit;
$graph->config(tokens => [$STATIC_TOKEN]);

# token endpoint refuses the secret: YG003; unreachable: YG002
$before = count_errors();
$graph->reset;
($ok, $out, $err) = sync_sql(create_sql(),
	set => [ @cc, "edusync.client_secret = 'wrong'" ]);
like($err, qr/ERROR:  YG003: /, 'token endpoint error is YG003');
like($err, qr/invalid_client/, 'detail has the token endpoint\'s error');
unlike($err, qr/wrong|\Q$CLIENT_SECRET\E/, 'the secret is not in the error');
($ok, $out, $err) = sync_sql(create_sql(),
	set => [ @cc, "edusync.client_secret = 'other'",
		"edusync.token_url = 'http://127.0.0.1:$closed/{tenant}/oauth2/v2.0/token'",
		"edusync.max_attempts = 2" ]);
like($err, qr/ERROR:  YG002: /, 'unreachable token endpoint is YG002');
is(count_errors(), $before, 'no row kept by any failure');

# --- a profile id that tries to bend the path stays one path segment
my $odd = 'a/b?c=1#d%2F..%/../e f';
$node->safe_psql('postgres',
	"INSERT INTO edusync.sync_profiles VALUES ('$odd', 'odd')");
$graph->reset;
($ok, $out, $err) = sync_sql(create_sql($odd));
ok($ok, 'odd profile id forwarded') or diag($err);
@reqs = $graph->requests(kind => 'errors');
is($reqs[0]{profile_id}, $odd, 'the fake received the profile id intact');
is($reqs[0]{raw_path},
	'/beta/education/synchronizationProfiles/a%2Fb%3Fc%3D1%23d%252F..%25%2F..%2Fe%20f/errors',
	'percent-encoded into one segment: no path, query or fragment change');

# --- unsafe configurations are refused before any traffic (22023)
$before = count_errors();
$graph->reset;
for my $case (
	[ 'plain http to a non-loopback host', "edusync.graph_url = 'http://graph.example.com/beta'" ],
	[ 'a malformed URL', "edusync.graph_url = 'ht!tp:/nowhere'" ],
	[ 'a scheme other than https', "edusync.graph_url = 'ftp://127.0.0.1/beta'" ],
	[ 'errors_path without {profile_id}', "edusync.errors_path = '/education/errors'" ])
{
	($ok, $out, $err) = sync_sql(create_sql(), set => [ $case->[1] ]);
	like($err, qr/ERROR:  22023: /, "$case->[0] is refused with 22023");
}
is(scalar($graph->requests), 0, 'no traffic for an unsafe configuration');
is(count_errors(), $before, 'no row kept');

# --- a redirect is not followed
$graph->reset;
$graph->script('errors', { redirect => $graph->url . '/elsewhere' });
($ok, $out, $err) = sync_sql(create_sql());
ok(!$ok, 'a redirect fails the call');
like($err, qr/ERROR:  YG001: .*302/, 'a 302 is a rejection (YG001)');
is(scalar($graph->requests), 1, 'the redirect was not followed');

# --- statement_timeout and query cancel interrupt a slow send at once
# (the fake holds its answer back 10 s and records the request only then:
# a call that ends before the fake recorded anything was interrupted)
$graph->reset;
$graph->script('errors', { delay => 10, status => 201 });
my $t0 = time;
($ok, $out, $err) = sync_sql(create_sql(),
	set => ["edusync.timeout = '30s'", "statement_timeout = '2s'"]);
my $elapsed = time - $t0;
my $answered = scalar($graph->requests(kind => 'errors'));
like($err, qr/ERROR:  57014: canceling statement due to statement timeout/,
	'statement_timeout gives 57014');
cmp_ok($graph->stats->{connections}, '>=', 1, 'the request reached the fake');
is($answered, 0, "statement_timeout interrupted the send before the answer (${elapsed}s)");
ok($graph->wait_for(sub { scalar($graph->requests(kind => 'errors')) >= 1 }, 60),
	'the fake answered the interrupted request in the end');

$graph->reset;
$graph->script('errors', { delay => 10, status => 201 });
my $bg = $node->background_psql('postgres', on_error_stop => 0);
my $pid = $bg->query_safe('SELECT pg_backend_pid()');
$bg->query_until(qr/started/, q{
	\echo started
	SET edusync.forward = 'sync';
	SET edusync.timeout = '30s';
	\set VERBOSITY verbose
	} . create_sql() . "\n\\echo finished\n");
# the fake records a delayed request only after the delay: wait for the
# connection instead, and for the send on it (the backend waits in libcurl)
ok($graph->wait_for(sub { $graph->stats->{connections} >= 1 }, 60),
	'the slow request reached the fake');
$t0 = time;
$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
$bg->query_until(qr/finished/, '');
$elapsed = time - $t0;
$answered = scalar($graph->requests(kind => 'errors'));
like($bg->{stderr}, qr/57014: canceling statement due to user request/, 'cancel gives 57014');
is($answered, 0, "cancel interrupted the send before the answer (${elapsed}s)");
$bg->quit;
is(count_errors(), $before, 'no row kept after a cancel');

# the late answer is recorded before the next case looks at the fake
ok($graph->wait_for(sub { scalar($graph->requests(kind => 'errors')) >= 1 }, 60),
	'the fake answered the cancelled request in the end');

# --- YG002: a slow answer beyond edusync.timeout (the whole send): the
# call gives up while the fake still holds its answer back (the fake
# records a delayed request only when the delay is over).  Every request
# is slow: a last attempt may start in the final milliseconds.  (Last of
# the cases that look at the fake: its late answers come after them.)
$graph->reset;
$graph->script('errors', { delay => 5, status => 201, repeat => 10 });
$t0 = time;
($ok, $out, $err) = sync_sql(create_sql(), set => ["edusync.timeout = '1s'"]);
$elapsed = time - $t0;
$answered = scalar($graph->requests(kind => 'errors'));
like($err, qr/ERROR:  YG002: /, 'slow answer is YG002');
cmp_ok($graph->stats->{connections}, '>=', 1, 'the slow request reached the fake');
is($answered, 0, "edusync.timeout ended the send before the fake answered (took ${elapsed}s)");
cmp_ok($elapsed, '>=', 1, 'not before edusync.timeout');
is(count_errors(), $before, 'row not kept after a timeout');

# --- the send of a new error begins before its row is stored, so that
# Graph answers while the row is inserted; but only when storing cannot
# refuse the row: an unknown profile, a caller's id (a replay or a
# conflict), and anything a user added to sync_errors that can refuse a
# row (a trigger, a CHECK, a unique or expression index, a column) keep
# the store first, and a refused row is never sent.
my $EARLY = qr/began before its row was stored/;
$graph->reset;
($ok, $out, $err) = sync_sql(create_sql(), set => [ 'client_min_messages = debug2' ]);
ok($ok, 'early send: the create succeeds') or diag($err);
like($err, $EARLY, 'early send: the send began before the row was stored');
is(scalar($graph->requests(kind => 'errors')), 1, 'early send: one request');
is($node->safe_psql('postgres', q{SELECT status || ' ' || attempts || ' ' || last_status
	FROM edusync.deliveries WHERE error_id = '} . decode_json($out)->{id} . q{'}),
	'delivered 1 201', 'early send: the delivery is recorded');
like($err, qr/inserted a row into edusync\.sync_errors without a statement, its foreign key held by this call's lock on the row it references/,
	'the error row is inserted without a statement, its foreign key check not queued (the profile is locked)');
like($err, qr/inserted a row into edusync\.deliveries without a statement, its foreign key held by this transaction's own row/,
	'the delivery row is inserted without a statement, its foreign key check not queued');
is($node->safe_psql('postgres', q{SELECT (next_attempt_at IS NULL) || '|' ||
	(last_error IS NULL) || '|' || (remote_id IS NOT NULL) || '|' ||
	(delivered_at = created_at AND last_attempt_at = created_at)
	FROM edusync.deliveries WHERE error_id = '} . decode_json($out)->{id} . q{'}),
	'true|true|true|true', 'the delivery row holds what the INSERT statement gave it');

# the error deleted in the same transaction takes its delivery row with it
($ok, $out, $err) = sync_sql(q{BEGIN;
	SELECT edusync.create_sync_error('p1', 'Student', 'c', 'deleted at once') IS NOT NULL;
	DELETE FROM edusync.sync_errors WHERE error_message = 'deleted at once';
	SELECT count(*) FROM edusync.deliveries d WHERE NOT EXISTS (SELECT FROM edusync.sync_errors e
		WHERE e.profile_id = d.profile_id AND e.id = d.error_id);
	COMMIT;});
ok($ok, 'an error deleted in the transaction that sent it') or diag($err);
is($out, "t\n0", 'its delivery row goes with it (no delivery without its error)');

# a trigger a superuser added to deliveries fires, and the foreign key's
# check is queued as usual
$node->safe_psql('postgres', q{
	CREATE TABLE public.delivery_log (error_id uuid);
	CREATE FUNCTION public.log_delivery() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN INSERT INTO public.delivery_log VALUES (NEW.error_id); RETURN NULL; END $$;
	CREATE TRIGGER log_delivery AFTER INSERT ON edusync.deliveries
		FOR EACH ROW EXECUTE FUNCTION public.log_delivery();});
($ok, $out, $err) = sync_sql(create_sql(), set => [ 'client_min_messages = debug2' ]);
ok($ok, 'with a trigger on deliveries: the create succeeds') or diag($err);
like($err, qr/inserted a row into edusync\.deliveries without a statement\n/,
	'with a trigger on deliveries: the foreign key check is queued');
is($node->safe_psql('postgres', q{SELECT count(*) FROM public.delivery_log WHERE error_id = '}
		. decode_json($out)->{id} . q{'}), '1', 'with a trigger on deliveries: it fires');
$node->safe_psql('postgres', q{DROP TRIGGER log_delivery ON edusync.deliveries;
	DROP FUNCTION public.log_delivery(); DROP TABLE public.delivery_log;});

# a foreign key of deliveries to sync_errors on other columns than the
# extension's (here in another order): its check is queued
$node->safe_psql('postgres', q{
	ALTER TABLE edusync.deliveries DROP CONSTRAINT deliveries_profile_id_error_id_fkey;
	ALTER TABLE edusync.sync_errors ADD CONSTRAINT sync_errors_id_profile_key UNIQUE (id, profile_id);
	ALTER TABLE edusync.deliveries ADD CONSTRAINT deliveries_reversed_fkey
		FOREIGN KEY (error_id, profile_id) REFERENCES edusync.sync_errors (id, profile_id)
		ON DELETE CASCADE;});
($ok, $out, $err) = sync_sql(create_sql(), set => [ 'client_min_messages = debug2' ]);
ok($ok, 'with a foreign key on other columns: the create succeeds') or diag($err);
like($err, qr/inserted a row into edusync\.deliveries without a statement\n/,
	'with a foreign key on other columns: its check is queued');
$node->safe_psql('postgres', q{
	ALTER TABLE edusync.deliveries DROP CONSTRAINT deliveries_reversed_fkey;
	ALTER TABLE edusync.sync_errors DROP CONSTRAINT sync_errors_id_profile_key;
	ALTER TABLE edusync.deliveries ADD CONSTRAINT deliveries_profile_id_error_id_fkey
		FOREIGN KEY (profile_id, error_id) REFERENCES edusync.sync_errors (profile_id, id)
		ON DELETE CASCADE;});
($ok, $out, $err) = sync_sql(create_sql(), set => [ 'client_min_messages = debug2' ]);
like($err, qr/inserted a row into edusync\.deliveries without a statement, its foreign key held/,
	'the extension\'s foreign key back: its check is not queued again');

$graph->reset;
($ok, $out, $err) = sync_sql(create_sql('no-such-profile'), set => [ 'client_min_messages = debug2' ]);
like($err, qr/ERROR:  23503: /, 'early send: an unknown profile is 23503');
unlike($err, $EARLY, 'early send: not for an unknown profile');
is(scalar($graph->requests(kind => 'errors')), 0, 'early send: an unknown profile sends nothing');

$graph->reset;
($ok, $out, $err) = sync_sql(
	q{SELECT edusync.create_sync_error('p1', 'Student', 'c', 'm', NULL, NULL, NULL,
		'7d1f0c52-3b8e-4f4a-9d5e-0a1b2c3d4e5f');},
	set => [ 'client_min_messages = debug2' ]);
ok($ok, 'early send: a given id is created') or diag($err);
unlike($err, $EARLY, 'early send: not for an id the caller gave');

my @refusers = (
	[ 'a trigger',
	  q{CREATE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql AS
		$$BEGIN IF NEW.error_message = 'refuse me' THEN RAISE EXCEPTION 'refused by a trigger'; END IF; RETURN NEW; END$$;
		CREATE TRIGGER refuse BEFORE INSERT ON edusync.sync_errors FOR EACH ROW EXECUTE FUNCTION public.refuse();},
	  q{DROP TRIGGER refuse ON edusync.sync_errors; DROP FUNCTION public.refuse();},
	  qr/ERROR:  P0001: refused by a trigger/ ],
	[ 'a CHECK',
	  q{ALTER TABLE edusync.sync_errors ADD CONSTRAINT refuse CHECK (error_message <> 'refuse me')},
	  q{ALTER TABLE edusync.sync_errors DROP CONSTRAINT refuse},
	  qr/ERROR:  23514: / ],
	[ 'a unique index',
	  q{CREATE UNIQUE INDEX refuse ON edusync.sync_errors (error_message) WHERE error_message = 'refuse me';
		INSERT INTO edusync.sync_errors (profile_id, id, entry_type, error_code, error_message, recorded_date_time)
		VALUES ('p1', gen_random_uuid(), 'Student', 'c', 'refuse me', now())},
	  q{DELETE FROM edusync.sync_errors WHERE error_message = 'refuse me'; DROP INDEX edusync.refuse},
	  qr/ERROR:  23505: / ],
	[ 'an expression index',
	  q{CREATE INDEX refuse ON edusync.sync_errors ((1 / (length(error_message) - 9)))},
	  q{DROP INDEX edusync.refuse},
	  qr/ERROR:  22012: / ],
	[ 'an added column',
	  q{ALTER TABLE edusync.sync_errors ADD COLUMN refuse int NOT NULL DEFAULT 0 CHECK (refuse >= 0)},
	  q{ALTER TABLE edusync.sync_errors DROP COLUMN refuse},
	  undef ],
	[ 'a foreign key',
	  q{CREATE TABLE public.messages (message text PRIMARY KEY);
		INSERT INTO public.messages VALUES ('Student cannot be updated');
		ALTER TABLE edusync.sync_errors ADD CONSTRAINT refuse
			FOREIGN KEY (error_message) REFERENCES public.messages NOT VALID},
	  q{ALTER TABLE edusync.sync_errors DROP CONSTRAINT refuse; DROP TABLE public.messages},
	  qr/ERROR:  23503: / ]);
for my $case (@refusers)
{
	my ($name, $add, $drop, $refusal) = @$case;
	$node->safe_psql('postgres', $add);
	$graph->reset;
	# the first create leaves a kept-alive connection, on which a request
	# begun early would leave at once
	($ok, $out, $err) = sync_sql(create_sql() . "\nSET client_min_messages = debug2;\n" .
		q{SELECT edusync.create_sync_error('p1', 'Student', 'c', 'refuse me');});
	unlike($err, $EARLY, "early send: not with $name on sync_errors");
	if ($refusal)
	{
		like($err, $refusal, "early send: $name refuses the row");
		is(scalar($graph->requests(kind => 'errors')), 1, "early send: the row $name refused was not sent");
	}
	else
	{
		ok($ok, "early send: with $name the row is stored") or diag($err);
	}
	$node->safe_psql('postgres', $drop);
}
$graph->reset;
($ok, $out, $err) = sync_sql(create_sql(), set => [ 'client_min_messages = debug2' ]);
ok($ok, 'early send: back to a plain table, the create succeeds') or diag($err);
like($err, $EARLY, 'early send: and the send begins early again');

# --- secrets: hidden from a non-superuser, never in the server log
for my $name ('edusync.bearer_token', 'edusync.client_secret')
{
	my ($ret, $o, $e) = $node->psql('postgres', "SHOW $name", extra_params => [ '-U', 'plain' ]);
	like($e, qr/must be superuser|permission denied/, "$name hidden from SHOW");
	($ret, $o, $e) = $node->psql('postgres', "SET $name = 'x'", extra_params => [ '-U', 'plain' ]);
	like($e, qr/permission denied/, "$name cannot be set by a non-superuser");
}
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_settings WHERE name LIKE 'edusync.%secret%' OR name LIKE 'edusync.%token'},
		extra_params => [ '-U', 'plain' ]), '0', 'secrets not in pg_settings for a non-superuser');
my ($ret, $o, $e) = $node->psql('postgres', "SET edusync.graph_url = 'https://evil.example'",
	extra_params => [ '-U', 'plain' ]);
like($e, qr/permission denied/, 'a non-superuser cannot change graph_url');

# --- the indexes hold what the rows stored without statements belong in:
# the rows so far, and the delivered rows of sync creates still in their
# transaction
indexes_agree($node, 'sync');
$graph->reset;
indexes_agree($node, 'sync, in the transaction', q{
	SET LOCAL edusync.forward = 'sync';
	SELECT count(edusync.create_sync_error('p1', 'Student', 'c', 'indexed ' || g))
	FROM generate_series(1, 3) g;});

log_keeps_secrets($node, 'static token' => $STATIC_TOKEN, 'client secret' => $CLIENT_SECRET);

$graph->stop;
done_testing();
