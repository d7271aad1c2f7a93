# The compiled build's declarations for headers.py (Cython augmenting .pxd):
# what other compiled modules call directly (cimport), not through Python.
from sipcluster.sip.grammar cimport is_token

cpdef canonical(name)
cpdef spelling(key)
