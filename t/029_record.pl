# t/029_record.pl: the worker records what Graph answered without an UPDATE
# statement (outbox.c's RecordByTid, row_insert.c's RowUpdate): the values a
# statement would give (delivered, and pending for a retry), a row changed
# while its request was in flight left to what changed it (updated by a
# session the worker waits for: sent again; deleted: nothing recorded, no
# error), an UPDATE trigger on deliveries makes the worker use the
# statement (which fires it), and the indexes hold every row.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../test";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FakeGraph;
use EdusyncTest;

my $graph = FakeGraph->start(tokens => ['record-token']);
my $node = edusync_node('record', $graph, qq{
edusync.bearer_token = 'record-token'
edusync.timeout = '30s'
log_min_messages = debug2
});
my $RECORDED = qr/updated \d+ rows? of edusync\.deliveries without a statement/;

sub delivery
{
	my ($id, $what) = @_;
	return $node->safe_psql('postgres',
		"SELECT $what FROM edusync.deliveries WHERE error_id = '$id'");
}

sub wait_status
{
	my ($id, $status) = @_;
	return $node->poll_query_until('postgres',
		"SELECT status FROM edusync.deliveries WHERE error_id = '$id'", $status);
}

# Wait until the worker has one request in flight (the fake Graph holds
# the scripted ones back for a while before it answers)
sub in_flight
{
	return $node->poll_query_until('postgres', q{
		SELECT count(*) = 1 FROM pg_stat_activity
		WHERE backend_type = 'edusync delivery worker'
		  AND query = 'sending 1 request to Graph'});
}

# How many requests the fake Graph has received for error $id
sub sends
{
	my ($id) = @_;
	return scalar grep { ($_->{headers}{'client-request-id'} // '') eq $id }
	  $graph->requests(kind => 'errors');
}

# --- delivered: recorded without a statement, with the statement's values
my $offset = -s $node->logfile;
my @ids = queue_errors($node, 3, 'plain');
ok(settle($node, 'plain', 60), 'plain: 3 delivered');
# (logged before the record commits, so before settle can see it)
like(slurp_file($node->logfile, $offset), $RECORDED,
	'plain: the worker records the answers without an UPDATE statement');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM edusync.deliveries d JOIN edusync.sync_errors e
	  ON e.profile_id = d.profile_id AND e.id = d.error_id
	WHERE e.error_message LIKE 'plain %' AND d.attempts = 1 AND d.last_status = 201
	  AND d.remote_id ~ '^[0-9a-f-]{36}$' AND d.last_error IS NULL
	  AND d.delivered_at = d.last_attempt_at AND d.next_attempt_at IS NULL
	  AND d.last_attempt_at >= d.created_at}),
	'3', 'plain: one attempt, 201, the remote id, delivered_at, no next attempt');

# --- a retry: pending, with the next attempt after the delay the policy gave
$graph->script('errors', { status => 503, headers => { 'Retry-After' => '1' } });
my ($retry) = queue_errors($node, 1, 'retry');
ok($node->poll_query_until('postgres',
		"SELECT attempts FROM edusync.deliveries WHERE error_id = '$retry'", '1'),
	'retry: the 503 is recorded');
like(delivery($retry, q{status || '|' || last_status || '|' || (last_error IS NOT NULL) || '|' ||
		(delivered_at IS NULL) || '|' || (next_attempt_at > last_attempt_at) || '|' ||
		(next_attempt_at <= last_attempt_at + interval '10 minutes')}),
	qr/^(pending\|503\|true\|true\|true\|true|delivered\|201\|.*)$/,
	'retry: pending, the 503 and its message, the next attempt later');
ok(wait_status($retry, 'delivered'), 'retry: delivered on the next attempt');
is(delivery($retry, q{attempts || '|' || last_status || '|' || (last_error IS NULL)}),
	'2|201|true', 'retry: two attempts, the last one a 201, no error left');

# --- updated while in flight by a session the record waits for: the
# worker's update finds a newer version and leaves it; the error is still
# pending and is sent again
$graph->script('errors', { delay => 8, status => 201,
	body => '{"id": "00000000-0000-4000-8000-0000000000aa"}' });
my ($busy) = queue_errors($node, 1, 'busy');
ok(in_flight(), 'busy: the request is on its way');
my $session = $node->background_psql('postgres', on_error_stop => 1);
$session->query_safe(qq{
	BEGIN;
	UPDATE edusync.deliveries SET next_attempt_at = now() WHERE error_id = '$busy'});
ok($graph->wait_for(sub { sends($busy) >= 1 }, 60), 'busy: Graph answered the first send');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	WHERE backend_type = 'edusync delivery worker' AND wait_event_type = 'Lock'}),
	'busy: the worker waits for the session to record the answer');
$session->query_safe('COMMIT');
ok(wait_status($busy, 'delivered'), 'busy: delivered after all');
is(sends($busy), 2, 'busy: sent again, as the answer could not be recorded');
is(delivery($busy, q{attempts || '|' || (remote_id <> '00000000-0000-4000-8000-0000000000aa')}),
	'1|true', 'busy: the second answer recorded, once');

# --- deleted while in flight: nothing to record, and no error
$offset = -s $node->logfile;
$graph->script('errors', { delay => 8, status => 201,
	body => '{"id": "00000000-0000-4000-8000-0000000000bb"}' });
my ($gone) = queue_errors($node, 1, 'gone');
ok(in_flight(), 'gone: the request is on its way');
$node->safe_psql('postgres', "DELETE FROM edusync.sync_errors WHERE id = '$gone'");
ok($graph->wait_for(sub { sends($gone) >= 1 }, 60), 'gone: Graph answered');
my ($after) = queue_errors($node, 1, 'after');
ok(wait_status($after, 'delivered'), 'gone: the next error is delivered');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM edusync.deliveries WHERE error_id = '$gone'"),
	'0', 'gone: no delivery row came back');
my $log = slurp_file($node->logfile, $offset);
unlike($log, qr/(?:ERROR|WARNING):.*(?:deliver|record)/,
	'gone: the worker logged no error or warning');

# --- an UPDATE trigger on deliveries: the statement records, and fires it
$node->safe_psql('postgres', q{
	CREATE TABLE public.updates (n int);
	CREATE FUNCTION public.count_update() RETURNS trigger LANGUAGE plpgsql AS
	  $$BEGIN INSERT INTO public.updates VALUES (1); RETURN NEW; END$$;
	CREATE TRIGGER count_update BEFORE UPDATE ON edusync.deliveries
	  FOR EACH ROW EXECUTE FUNCTION public.count_update()});
$offset = -s $node->logfile;
queue_errors($node, 2, 'trigger');
ok(settle($node, 'trigger', 60), 'trigger: 2 delivered');
is($node->safe_psql('postgres', 'SELECT count(*) FROM public.updates'), '2',
	'trigger: the UPDATE statement fired it for each row');
$log = slurp_file($node->logfile, $offset);
unlike($log, $RECORDED, 'trigger: no update without a statement');
$node->safe_psql('postgres', q{
	DROP TRIGGER count_update ON edusync.deliveries;
	DROP TABLE public.updates; DROP FUNCTION public.count_update()});

indexes_agree($node, 'record');
$session->quit;
$node->stop;
done_testing();
