# t/040_example.pl: the application example (examples/create_errors.py),
# run for real as a non-superuser writer against a cluster with edusync
# preloaded and the fake Graph: ids chosen by the program, a connection lost
# before and after commit and the call made again with the same id, and
# each class of SQLSTATE handled as the example's --help says.  The test
# asserts on what the program prints and its exit status, and on the rows.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../test";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use File::Temp qw(tempdir);
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(sleep time);
use FakeGraph;
use EdusyncTest;

my $PYTHON = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';
my $EXAMPLE = ($ENV{EDUSYNC_SRCDIR} // "$FindBin::Bin/..") . '/examples/create_errors.py';
my $PROXY = "$FindBin::Bin/../test/cut_proxy.py";
my $TOKEN = 'example-token';
my $UUID4 = qr/[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}/;

ok(-f $EXAMPLE, "the example is at $EXAMPLE") or BAIL_OUT('no example to run');
my ($help, $help_err) = ('', '');
IPC::Run::run([ $PYTHON, $EXAMPLE, '--help' ], '>', \$help, '2>', \$help_err);
is($?, 0, '--help exits 0') or diag($help_err);
like($help, qr/--profile.*--conninfo.*3  stopped: retry later/s, '--help lists the options and exit statuses');

my $graph = FakeGraph->start(tokens => [$TOKEN]);
my $node = edusync_node('example', $graph, qq{
edusync.bearer_token = '$TOKEN'
edusync.timeout = '60s'
edusync.max_attempts = 2
});
# The README's writer role.
$node->safe_psql('postgres', q{
	CREATE ROLE app_writer LOGIN;
	GRANT USAGE ON SCHEMA edusync TO app_writer;
	GRANT EXECUTE ON FUNCTION
		edusync.create_sync_error(text, jsonb),
		edusync.create_sync_error(text, text, text, text, text, text, timestamptz, uuid),
		edusync.get_sync_error(text, uuid),
		edusync.list_sync_errors(text, int, int, text)
	  TO app_writer;
});
our $CONNINFO = $node->connstr('postgres') . ' user=app_writer';
our @FORWARD = ('--forward', 'sync');

# A Graph request body, as one input line.
sub body
{
	my ($message, %more) = @_;
	return encode_json({ entryType => 'Student', errorCode => 'UnsynchronizableChange',
		errorMessage => $message, recordedDateTime => '2017-07-05T00:52:45Z', %more }) . "\n";
}

# Run the example with these input lines and arguments; (exit status, [id, text] per line, stderr).
sub example
{
	my ($input, @args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $PYTHON, $EXAMPLE, '--profile', 'p1', '--conninfo', $CONNINFO, @FORWARD, @args ],
		'<', \$input, '>', \$out, '2>', \$err, IPC::Run::timeout(180));
	return ($? >> 8, lines($out), $err);
}

sub lines
{
	my ($out) = @_;
	return [ map { [ /^(.+?): (.*)$/ ] } split /\n/, $out ];
}

sub rows
{
	my ($id) = @_;
	return $node->safe_psql('postgres', "SELECT count(*) FROM edusync.sync_errors WHERE id::text = '$id'");
}

# How many requests for this error (its client-request-id) reached the fake Graph.
sub sent
{
	my ($id) = @_;
	return scalar grep { ($_->{headers}{'client-request-id'} // '') eq $id }
	  $graph->requests(kind => 'errors');
}

sub delivery
{
	my ($id) = @_;
	return $node->safe_psql('postgres',
		"SELECT status || '|' || attempts FROM edusync.deliveries WHERE error_id::text = '$id'");
}

# --- the plain case: ids chosen by the program, created once each
$graph->reset;
my ($rc, $out, $err) = example(body('plain 1') . body('plain 2'));
is($rc, 0, 'plain: exit status 0') or diag($err);
is(scalar @$out, 2, 'plain: one line per error');
for my $line (@$out)
{
	like($line->[0], qr/^$UUID4$/, 'plain: the id is a uuid4 the program chose');
	is($line->[1], 'created', 'plain: created');
	is(rows($line->[0]), 1, 'plain: stored under that id');
	is(sent($line->[0]), 1, 'plain: sent to Graph once with that id');
}

# --- without --forward, the configured mode (here the role's) is used
$node->safe_psql('postgres', q{ALTER ROLE app_writer SET edusync.forward = 'async'});
{
	local @FORWARD = ();
	($rc, $out, $err) = example(body('configured 1'));
}
$node->safe_psql('postgres', q{ALTER ROLE app_writer RESET edusync.forward});
is($rc, 0, 'as configured: exit status 0') or diag($err);
is($out->[0][1], 'queued for delivery', 'as configured: the role\'s async mode is used');
ok($node->poll_query_until('postgres', qq{
	SELECT status = 'delivered' FROM edusync.deliveries WHERE error_id::text = '$out->[0][0]'}),
	'as configured: the worker delivered it');

# --- the connection is cut after the server committed the second call and
# before its answer arrived: the retry gets the stored answer, nothing twice
my $dir = tempdir(CLEANUP => 1);
my @proxy_cmd = ($PYTHON, $PROXY, '--host', $node->host, '--port', $node->port,
	'--port-file', "$dir/port", '--cut', 2, '--events', "$dir/events");
my $proxy = IPC::Run::start(\@proxy_cmd, '<', \undef, '>', \my $proxy_out, '2>', \my $proxy_err);
my $deadline = time + 30;
sleep 0.05 while !-s "$dir/port" && time < $deadline;
ok(-s "$dir/port", 'the proxy started') or BAIL_OUT("cut_proxy.py did not start: $proxy_err");
my $proxy_port = slurp_file("$dir/port");
chomp $proxy_port;
{
	local $CONNINFO = "host=127.0.0.1 port=$proxy_port dbname=postgres user=app_writer "
	  . 'sslmode=disable gssencmode=disable';
	$graph->reset;
	($rc, $out, $err) = example(body('cut 1') . body('cut 2') . body('cut 3'));
}
$proxy->kill_kill;
is($rc, 0, 'cut after commit: exit status 0') or diag($err);
is(slurp_file("$dir/events"), "cut 2\n", 'the proxy cut the second call after its ReadyForQuery');
is(scalar @$out, 4, 'cut after commit: four lines') or diag(explain $out);
my ($id1, $id2, $id3) = map { $_->[0] } @$out[ 0, 1, 3 ];
is($out->[0][1], 'created', 'first error created');
like($out->[1][1], qr/^connection lost \(.*\); retrying with the same id in [\d.]+ s \(attempt 2 of 6\)$/,
	'second: the lost connection is reported, with a retry');
is_deeply($out->[2], [ $id2, 'created on attempt 2' ], 'second: created on attempt 2, the same id');
is($out->[3][1], 'created', 'third error created');
for my $id ($id1, $id2, $id3)
{
	is(rows($id), 1, "cut after commit: $id stored once");
	is(sent($id), 1, "cut after commit: $id sent to Graph once (the replay was answered from the row)");
	is(delivery($id), 'delivered|1', "cut after commit: $id delivered in one attempt");
}

# --- YG001: Graph rejects the first error; permanent, reported with Graph's
# code and message, and the next error is still created
$graph->reset;
$graph->script('errors', { status => 400, body => { error => {
	code => 'InvalidEntryType', message => 'The entry type is not known.' } } });
($rc, $out, $err) = example(body('rejected 1') . body('rejected 2'));
is($rc, 1, 'YG001: exit status 1 (refused for good)') or diag($err);
like($out->[0][1],
	qr/^rejected by Graph, permanent \(not retried\): InvalidEntryType: The entry type is not known\./,
	'YG001: reported as permanent with Graph\'s code and message');
is(sent($out->[0][0]), 1, 'YG001: not retried');
is(rows($out->[0][0]), 0, 'YG001: not stored');
is($out->[1][1], 'created', 'YG001: the next error is created');

# --- YG002: Graph unreachable; the program stops and says to retry later
$graph->reset;
$graph->script('errors', { status => 503, repeat => 2 });
($rc, $out, $err) = example(body('down 1') . body('down 2'));
is($rc, 3, 'YG002: exit status 3 (retry later)') or diag($err);
is(scalar @$out, 1, 'YG002: stopped after the first error');
like($out->[0][1], qr/^Graph unreachable, retry later: /, 'YG002: reported as retry later');
is(rows($out->[0][0]), 0, 'YG002: not stored');
is(scalar($graph->requests(kind => 'errors')), 2, 'YG002: no request for the second error');

# --- YG002 with --async-fallback: the same id goes through the outbox
$graph->reset;
$graph->script('errors', { status => 503, repeat => 2 });
($rc, $out, $err) = example(body('fallback 1') . body('fallback 2'), '--async-fallback');
is($rc, 0, 'YG002 with fallback: exit status 0') or diag($err);
is(scalar @$out, 3, 'YG002 with fallback: three lines');
like($out->[0][1], qr/^Graph unreachable \(.*\); forwarding asynchronously from now on$/,
	'YG002 with fallback: switches to async');
is_deeply($out->[1], [ $out->[0][0], 'queued for delivery' ], 'the same id queued');
is($out->[2][1], 'queued for delivery', 'the next error queued');
my @queued = map { $_->[0] } @$out[ 1, 2 ];
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) = 2 FROM edusync.deliveries
	WHERE error_id::text IN ('$queued[0]', '$queued[1]') AND status = 'delivered'}),
	'YG002 with fallback: the worker delivered both');
is(rows($_), 1, "YG002 with fallback: $_ stored once") for @queued;

# --- YG003: authentication failed; the program stops for the operator
$graph->reset;
$graph->script('errors', { status => 403 });
($rc, $out, $err) = example(body('auth 1') . body('auth 2'));
is($rc, 4, 'YG003: exit status 4 (operator)') or diag($err);
is(scalar @$out, 1, 'YG003: stopped after the first error');
like($out->[0][1], qr/^authentication to Graph failed, alert the operator: /, 'YG003: reported for the operator');
is(rows($out->[0][0]), 0, 'YG003: not stored');

# --- data errors: reported per error, not retried, the good ones created;
# the same id and content again is the stored answer, other content is 23505
$graph->reset;
my $known = $id1;
my $known_body = $node->safe_psql('postgres',
	"SELECT edusync.get_sync_error('p1', '$known')");
($rc, $out, $err) = example(
	body('bad date', recordedDateTime => '2017-02-30T00:00:00Z')
	  . encode_json({ entryType => 'Student', errorCode => 'X' }) . "\n"
	  . body('unknown property', colour => 'blue')
	  . "not json\n"
	  . body('other content', id => $known)
	  . body('good'));
is($rc, 1, 'data errors: exit status 1') or diag($err);
is(scalar @$out, 6, 'data errors: one line per input line') or diag(explain $out);
like($out->[0][1], qr/^data error 22007, fix the input \(not retried\): .*recordedDateTime/,
	'a bad date is a data error 22007');
like($out->[1][1], qr/^data error 23502, a required field is missing \(not retried\): .*errorMessage/,
	'a missing errorMessage is a data error 23502');
like($out->[2][1], qr/^data error 22023, fix the input \(not retried\): .*colour/,
	'an unknown property is a data error 22023');
is_deeply($out->[3], [ 'line 4', 'data error, not a JSON object (skipped)' ], 'a line that is not JSON');
like($out->[4][1], qr/^data error 23505, this id was already used for another error \(not retried\): /,
	'other content under a used id is a data error 23505');
is($out->[4][0], $known, '23505: reported under that id');
is($out->[5][1], 'created', 'data errors: the good one created');
is(rows($out->[$_][0]), 0, "data errors: line @{[ $_ + 1 ]} not stored") for 0 .. 2;
is(scalar($graph->requests(kind => 'errors')), 1, 'data errors: only the good one sent');

# replaying a stored error (same id, same content) is the stored answer
$graph->reset;
($rc, $out, $err) = example($known_body . "\n");
is($rc, 0, 'replay: exit status 0') or diag($err);
is_deeply($out, [ [ $known, 'created' ] ], 'replay: created, under the same id');
is(rows($known), 1, 'replay: still one row');
is(scalar($graph->requests(kind => 'errors')), 0, 'replay: not sent again');

($rc, $out, $err) = example(body('no profile'), '--profile', 'nope');
is($rc, 1, '23503: exit status 1') or diag($err);
like($out->[0][1], qr/^data error 23503, the profile does not exist \(not retried\): .*nope/,
	'an unknown profile is a data error 23503');

# --- the backend is terminated while the sync send waits for Graph (nothing
# committed): the program reconnects and creates the error with the same id.
# Last, since the fake Graph holds the cut request until it stops.
$graph->reset;
$graph->script('errors', { delay => 3600, status => 201 });
append_to_file("$dir/terminated.json", body('terminated'));   # a file: start() feeds no strings
my ($tout, $terr) = ('', '');
my $h = IPC::Run::start([ $PYTHON, $EXAMPLE, '--profile', 'p1', '--conninfo', $CONNINFO, '--forward', 'sync' ],
	'<', "$dir/terminated.json", '>', \$tout, '2>', \$terr, IPC::Run::timeout(180));
ok($graph->wait_for(sub { $graph->stats->{connections} >= 1 }, 60),
	'terminate: the send reached the fake Graph') or diag(explain($graph->stats), $tout, $terr);
my $pid = $node->safe_psql('postgres', q{
	SELECT pid FROM pg_stat_activity WHERE application_name = 'edusync-example' AND state = 'active'});
like($pid, qr/^\d+$/, 'terminate: the program\'s backend is found');
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)"), 't', 'terminate: backend terminated');
$h->finish;
$rc = $? >> 8;
$out = lines($tout);
is($rc, 0, 'terminate: exit status 0') or diag($terr);
is(scalar @$out, 2, 'terminate: two lines') or diag(explain $out);
like($out->[0][1], qr/^connection lost \(.*terminating connection due to administrator command.*\); retrying with the same id/,
	'terminate: the lost connection is reported, with a retry');
is_deeply($out->[1], [ $out->[0][0], 'created on attempt 2' ], 'terminate: created on attempt 2 with the same id');
is(rows($out->[0][0]), 1, 'terminate: stored once');
is(delivery($out->[0][0]), 'delivered|1', 'terminate: delivered by the second call');
cmp_ok($graph->stats->{connections}, '>=', 2, 'terminate: the second call sent again');

$node->stop;
$graph->stop;
done_testing();
