# The compiled build's declarations for stateful.py (Cython augmenting .pxd):
# what it calls of other compiled modules, called directly (cimport).
from sipcluster.proxy.forwarding cimport short_hash
from sipcluster.proxy.stateless cimport forward_response_stateless, forward_stateless
