# FakeGraph.pm: start, script and read the fake Graph (test/fake_graph.py)
# from TAP tests.  Core Perl only.
#
#   my $g = FakeGraph->start(tokens => ['t'], client_id => 'c', client_secret => 's');
#   $g->url;         # http://127.0.0.1:PORT/beta
#   $g->token_url;   # http://127.0.0.1:PORT/{tenant}/oauth2/v2.0/token
#   $g->script('errors', {status => 429, headers => {'Retry-After' => '1'}}, {status => 201});
#   $g->outage('errors', status => 503, seconds => 2);
#   $g->revoke; $g->config(tokens => [...]); $g->reset;
#   my @all = $g->requests; my @errs = $g->requests(kind => 'errors');
#   $g->stats; $g->wait_for(sub { ... }, $seconds); $g->stop;
package FakeGraph;

use strict;
use warnings;
use Carp;
use File::Basename qw(dirname);
use File::Spec;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

my $SCRIPT = File::Spec->catfile(dirname(File::Spec->rel2abs(__FILE__)), 'fake_graph.py');
my $PYTHON = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';

# Start the server; dies when it does not come up within 10 s.
sub start
{
	my ($class, %opt) = @_;
	my $dir = tempdir(CLEANUP => 1);
	my $port_file = "$dir/port";
	my @cmd = ($PYTHON, $SCRIPT, '--port', 0, '--port-file', $port_file,
		'--log', "$dir/requests.log", '--expires-in', $opt{expires_in} // 3599);
	push @cmd, '--token', $_ for @{ $opt{tokens} || [] };
	push @cmd, '--client-id', $opt{client_id} if defined $opt{client_id};
	push @cmd, '--client-secret', $opt{client_secret} if defined $opt{client_secret};

	my $pid = fork();
	croak "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDIN, '<', '/dev/null');
		exec(@cmd) or die "exec $PYTHON: $!";
	}
	my $self = bless { pid => $pid, dir => $dir,
		http => HTTP::Tiny->new(timeout => 30, keep_alive => 0) }, $class;
	my $deadline = time + 10;
	while (!-s $port_file)
	{
		if (time > $deadline || waitpid($pid, WNOHANG) == $pid)
		{
			$self->{pid} = undef;
			croak "the fake Graph did not start ($SCRIPT)";
		}
		sleep 0.05;
	}
	open(my $fh, '<', $port_file) or croak "$port_file: $!";
	chomp($self->{port} = <$fh>);
	close $fh;
	return $self;
}

sub port { return $_[0]{port} }
sub base { return "http://127.0.0.1:$_[0]{port}" }
sub url { return $_[0]->base . '/beta' }
sub token_url { return $_[0]->base . '/{tenant}/oauth2/v2.0/token' }

# One control call; the decoded JSON answer.
sub _call
{
	my ($self, $method, $path, $body) = @_;
	my $res = $self->{http}->request($method, $self->base . $path,
		defined $body
		? { content => encode_json($body),
			headers => { 'Content-Type' => 'application/json' } }
		: {});
	croak "fake Graph $method $path: $res->{status} $res->{content}"
	  unless $res->{success};
	return decode_json($res->{content});
}

# Queue actions for the next requests of a kind (errors, batch, batch_item, token, any).
sub script
{
	my ($self, $kind, @actions) = @_;
	return $self->_call('POST', '/_fake/script', { kind => $kind, actions => \@actions });
}

# Fail every request of a kind for some seconds.
sub outage
{
	my ($self, $kind, %opt) = @_;
	return $self->_call('POST', '/_fake/outage', { kind => $kind, %opt });
}

sub revoke { return $_[0]->_call('POST', '/_fake/revoke', {}) }
sub reset { return $_[0]->_call('POST', '/_fake/reset', {}) }

sub config
{
	my ($self, %opt) = @_;
	return $self->_call('POST', '/_fake/config', \%opt);
}

# Recorded requests, oldest first; kind => K keeps one kind.  In scalar
# context, how many.
sub requests
{
	my ($self, %filter) = @_;
	my @all = @{ $self->_call('GET', '/_fake/requests') };
	@all = grep { $_->{kind} eq $filter{kind} } @all if $filter{kind};
	return @all;
}

sub stats { return $_[0]->_call('GET', '/_fake/stats') }

# Poll a condition every 50 ms for at most $seconds; true when it held.
sub wait_for
{
	my ($self, $cond, $seconds) = @_;
	my $deadline = time + ($seconds // 30);
	while (time < $deadline)
	{
		return 1 if $cond->();
		sleep 0.05;
	}
	return $cond->() ? 1 : 0;
}

sub stop
{
	my ($self) = @_;
	my $pid = $self->{pid} or return;
	$self->{pid} = undef;
	kill 'TERM', $pid;
	my $deadline = time + 5;
	while (waitpid($pid, WNOHANG) == 0)
	{
		if (time > $deadline)
		{
			kill 'KILL', $pid;
			waitpid($pid, 0);
			last;
		}
		sleep 0.05;
	}
	return;
}

sub DESTROY { $_[0]->stop }

1;
