"""C{twistd --reactor=sipepoll}: the reactor of L{sipcluster.reactor}."""

from twisted.application.reactors import Reactor

sipepoll = Reactor(
    "sipepoll", "sipcluster.reactor",
    "epoll, SIP UDP listeners' events without a log context each (sipcluster; Linux)")
