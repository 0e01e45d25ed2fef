"""The conformance suite (procsock.testing.conformance) on each built-in backend."""

from procsock.testing.conformance import BackendConformance


class TestProcnet(BackendConformance):
    backend_name = "procnet"


class TestNetlink(BackendConformance):
    backend_name = "netlink"


class TestPidfd(BackendConformance):
    backend_name = "pidfd"
