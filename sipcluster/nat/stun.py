# -*- test-case-name: tests.test_nat -*-
"""
A STUN binding server (RFC 5389) sharing the SIP UDP port: phones learn the
address and port the proxy sees them from.  The UDP protocol hands over any
datagram whose first byte has the two top bits clear (RFC 7983 7); SIP
never starts that way.
"""

import ipaddress
import struct

MAGIC_COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
XOR_MAPPED_ADDRESS = 0x0020
SOFTWARE = 0x8022
FINGERPRINT = 0x8028
_HEADER = struct.Struct("!HHI12s")


def parse_binding_request(data):
    """
    The transaction ID of a valid Binding request, or None (RFC 5389 7.3:
    anything else is silently discarded).
    """
    if len(data) < 20:
        return None
    kind, length, cookie, txid = _HEADER.unpack_from(data)
    if kind != BINDING_REQUEST or cookie != MAGIC_COOKIE or length % 4 or 20 + length != len(data):
        return None
    return txid


def xor_mapped_address(host, port, txid):
    """The XOR-MAPPED-ADDRESS attribute for host:port (RFC 5389 15.2)."""
    address = ipaddress.ip_address(host)
    xport = port ^ (MAGIC_COOKIE >> 16)
    if address.version == 4:
        value = struct.pack("!BBH", 0, 1, xport) + struct.pack(
            "!I", int(address) ^ MAGIC_COOKIE)
    else:
        key = int.from_bytes(struct.pack("!I", MAGIC_COOKIE) + txid, "big")
        value = struct.pack("!BBH", 0, 2, xport) + (int(address) ^ key).to_bytes(16, "big")
    return struct.pack("!HH", XOR_MAPPED_ADDRESS, len(value)) + value


def binding_response(txid, host, port, software=b"sipcluster"):
    """A Binding success response telling the client host:port."""
    attributes = xor_mapped_address(host, port, txid)
    if software:
        padded = software + b"\x00" * (-len(software) % 4)
        attributes += struct.pack("!HH", SOFTWARE, len(software)) + padded
    return _HEADER.pack(BINDING_SUCCESS, len(attributes), MAGIC_COOKIE, txid) + attributes


class StunServer:
    """Answers Binding requests arriving on a SIP UDP listener."""

    def __init__(self, stats):
        self.stats = stats

    def datagram_received(self, data, addr, proto):
        txid = parse_binding_request(data)
        if txid is None:
            self.stats["dropped"] += 1
            return
        self.stats["stun_bindings"] += 1
        proto.transport.write(binding_response(txid, addr[0], addr[1]), addr)
