# The compiled build's declarations for layer.py (Cython augmenting .pxd):
# what it calls of other compiled modules, called directly (cimport).
from sipcluster.sip.message cimport make_response, parse_message
from sipcluster.sip.uri cimport format_hostport
from sipcluster.transport.base cimport bare_host, response_destination, same_ip, stamp_via
