"""A backend plugin for tests of the core: serves given records or fails as told (real pluggy plugin)."""

from procsock import hookimpl
from procsock.backends import Registry
from procsock.model import BackendInfo, Collected


class StubBackend:
    """A backend plugin serving fixed records, or failing the way it is told to."""

    def __init__(self, name, priority, kinds, records=(), error=None, unavailable=None, deferred=(),
                 lookup_only=False):
        self.name, self.priority, self.kinds = name, priority, tuple(kinds)
        self.records, self.error, self.why_not = tuple(records), error, unavailable
        self.deferred, self.lookup_only = tuple(deferred), lookup_only
        self.calls = []

    @hookimpl
    def procsock_backend_info(self):
        return BackendInfo(self.name, self.priority, self.kinds, lookup_only=self.lookup_only)

    @hookimpl
    def procsock_unavailable(self, source):
        return self.why_not

    @hookimpl
    def procsock_collect(self, kind, source, inodes, netns):
        if self.error is not None:
            raise self.error
        if netns.pid is not None:  # its records live in our namespace; others have none of them
            return Collected(())
        self.calls.append((kind.name, inodes))
        return Collected(tuple(r for r in self.records if r.kind == kind), deferred=self.deferred)

    @hookimpl
    def procsock_raw_dump(self, kind, source):
        if self.error is not None:
            raise self.error
        return ("%s:%s;" % (self.name, kind.name)).encode()


def registry_of(*backends):
    registry = Registry()
    for backend in backends:
        registry.register(backend, backend.name)
    return registry
