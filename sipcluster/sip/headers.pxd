# The compiled build's declarations for headers.py (Cython augmenting .pxd):
# what other compiled modules call directly (cimport), not through Python.
import cython

from sipcluster.sip.grammar cimport is_token

@cython.locals(known=dict)
cpdef canonical(name)
@cython.locals(spellings=dict)
cpdef spelling(key)
