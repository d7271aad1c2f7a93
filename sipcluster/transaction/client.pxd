# The compiled build's declarations for client.py (Cython augmenting .pxd).
from sipcluster.sip.message cimport Response
from sipcluster.transaction.base cimport Transaction

cdef class ClientTransaction(Transaction):
    cdef public object peer
    cdef public object owner
    cdef public object final
    cdef public object _data
    cdef public object _interval
    cpdef _transmit(self)
    cpdef _send_failed(self, failure)
    cpdef terminate(self)

cdef class ClientInviteTransaction(ClientTransaction):
    cdef public object cancel_requested
    cdef public object cancel_sent
    cdef public object provisional
    cdef public object _ack
    cpdef start(self)
    cpdef receive_response(self, Response response)
    cpdef cancel(self)
    cpdef timer_fired(self, name)

cdef class ClientNonInviteTransaction(ClientTransaction):
    cpdef start(self)
    cpdef timer_fired(self, name)
    cpdef receive_response(self, Response response)
