# -*- test-case-name: tests.test_registrar,tests.test_nat -*-
"""An in-memory location service for a single node and for tests."""

from twisted.internet import defer
from zope.interface import implementer

from sipcluster.location.interface import ILocationService


@implementer(ILocationService)
class MemoryLocationService:
    """
    Bindings in a dict; expired ones are ignored by lookups and swept by
    L{sweep}, which a node runs periodically.
    """

    def __init__(self, clock):
        self.clock = clock
        self._bindings = {}

    def lookup(self, aor):
        now = self.clock.seconds()
        found = [b for b in self._bindings.get(aor, ()) if b.expires_at > now]
        found.sort(key=lambda b: -b.q)
        return found

    def bindings(self, aor):
        return defer.succeed(self.lookup(aor))

    def update(self, aor, changes):
        now = self.clock.seconds()
        current = {str(b.contact): b for b in self._bindings.get(aor, ()) if b.expires_at > now}
        for binding in changes:
            key = str(binding.contact)
            if binding.expires_at <= now:
                current.pop(key, None)
            else:
                current[key] = binding
        if current:
            self._bindings[aor] = list(current.values())
        else:
            self._bindings.pop(aor, None)
        return defer.succeed(self.lookup(aor))

    def all_bindings(self):
        """Every current binding (for keepalives and inspection)."""
        now = self.clock.seconds()
        for bindings in list(self._bindings.values()):
            for binding in bindings:
                if binding.expires_at > now:
                    yield binding

    def sweep(self):
        """Forget expired bindings; returns how many were removed."""
        now = self.clock.seconds()
        removed = 0
        for aor in list(self._bindings):
            alive = [b for b in self._bindings[aor] if b.expires_at > now]
            removed += len(self._bindings[aor]) - len(alive)
            if alive:
                self._bindings[aor] = alive
            else:
                del self._bindings[aor]
        return removed

    @property
    def aors(self):
        return len(self._bindings)
