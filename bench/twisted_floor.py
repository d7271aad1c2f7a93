"""
The floor under any Twisted UDP proxy (not a test): a relay that parses
nothing, it only sends each datagram on (requests to the UAS, responses to
the UAC).  bench/sipp_calls.sh --floor runs it under the same SIPp load, so
the CPU per call of sipcluster can be split into reactor+kernel cost and
the cost of SIP processing.

    python bench/twisted_floor.py HOST PORT UAS_PORT UAC_PORT [--sip-port]

--sip-port listens on the SIP listeners' port (sipcluster.transport.udp.SIPPort)
instead of Twisted's, to measure what it saves per datagram.
"""

import sys

from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol


class Relay(DatagramProtocol):
    def __init__(self, host, uas, uac):
        self.uas = (host, uas)
        self.uac = (host, uac)

    def datagramReceived(self, data, addr):
        # Responses start with "SIP/2.0"; everything else is a request.
        self.transport.write(data, self.uac if data[:4] == b"SIP/" else self.uas)


def main():
    host, port, uas, uac = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    if "--sip-port" in sys.argv[5:]:
        from sipcluster.transport.udp import listen_udp
        listen_udp(reactor, port, Relay(host, uas, uac), host)
    else:
        reactor.listenUDP(port, Relay(host, uas, uac), interface=host)
    reactor.run()


if __name__ == "__main__":
    main()
