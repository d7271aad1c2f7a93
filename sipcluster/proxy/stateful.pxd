# The compiled build's declarations for stateful.py (Cython augmenting .pxd):
# what it calls of other compiled modules, called directly (cimport), and
# the stateful proxy as an extension type whose branch and upstream
# methods its response contexts call in C.
from sipcluster.proxy.core cimport ProxyCore
from sipcluster.proxy.forwarding cimport Forwarder, short_hash
from sipcluster.proxy.pipeline cimport Pipeline
from sipcluster.proxy.stateless cimport forward_response_stateless, forward_stateless
from sipcluster.transaction.layer cimport TransactionLayer

cdef class StatefulProxy:
    cdef public TransactionLayer transactions
    cdef public Forwarder forwarder
    cdef public object clock
    cdef public object timers
    cdef public Pipeline pipeline
    cdef public ProxyCore core
    cdef public dict contexts
    cdef public set setups
    cpdef start_branch(self, rc, branch)
    cpdef _send_branch(self, rc, branch, out, peers)
    cpdef local_response(self, request, status, reason=*, headers=*)
    cpdef send_upstream(self, rc, response)
    cpdef _owns_via(self, via)
    cpdef final_sent(self, rc, response)
