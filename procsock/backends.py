"""Loading plugins from the `procsock` entry-point group, and calling one plugin alone.

Every plugin, built-in or third-party, arrives the same way: an entry point in the `procsock`
group naming a module (or object) with hookimpls. A *plugin* is anything registered there; a
*backend* is a plugin that implements ``procsock_backend_info`` (and reads sockets). Plugins that
implement other hooks only (owner context, commands) are plugins, not broken backends. A plugin
that fails to import, to register or to describe itself is recorded as a failure with the reason
and skipped, never fatal.
"""

import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import attrs
import pluggy

from procsock import hookspecs
from procsock.entrypoints import entry_points
from procsock.errors import BackendUnavailable, BadArgument
from procsock.model import BackendInfo, Collected, Netns, Owner, SocketKind, SocketRecord, Source

ENTRY_POINT_GROUP = "procsock"
# Every hook procsock declares (pluggy marks each spec with `procsock_spec`), and those a backend
# implements: a plugin with any of these but no procsock_backend_info is broken.
HOOK_NAMES = tuple(sorted(name for name, value in vars(hookspecs).items() if hasattr(value, "procsock_spec")))
BACKEND_HOOKS = (
    "procsock_backend_info", "procsock_unavailable", "procsock_collect", "procsock_raw_dump",
    "procsock_explain_difference", "procsock_destroy_listener",
)
DISABLE_ENV = "PROCSOCK_DISABLE_PLUGINS"


@attrs.frozen
class PluginFailure:
    """A plugin that could not be used, and why (one line)."""

    name: str
    distribution: str
    reason: str

    def __str__(self) -> str:
        origin = " (from %s)" % self.distribution if self.distribution else ""
        return "plugin %s%s is broken and was skipped: %s" % (self.name, origin, self.reason)


@attrs.frozen
class Plugin:
    """One loaded plugin, backend or not: its entry-point name, origin and the hooks it implements."""

    name: str
    distribution: str
    version: str
    implements: Tuple[str, ...]


@attrs.frozen
class Backend:
    """One loaded backend plugin: its self-description, where it comes from, and its hooks."""

    info: BackendInfo
    plugin_name: str
    distribution: str
    version: str
    hooks: Any = attrs.field(repr=False, eq=False)  # pluggy hook relay restricted to this plugin

    @property
    def name(self) -> str:
        return self.info.name

    def unavailable(self, source: Source) -> Optional[str]:
        """Why this backend cannot read `source` here, or None; an exception counts as the reason."""
        try:
            return self.hooks.procsock_unavailable(source=source)
        except Exception as exc:  # a plugin's bug must not stop the others
            return "availability check failed: %s: %s" % (type(exc).__name__, exc)

    def collect(
        self,
        kind: SocketKind,
        source: Source,
        inodes: Optional[frozenset],
        details: bool = False,
        netns: Netns = Netns(),
        holders: Optional[Mapping[int, Sequence[Owner]]] = None,
        raw: bool = False,
    ) -> Collected:
        return self.hooks.procsock_collect(
            kind=kind, source=source, inodes=inodes, details=details, netns=netns,
            holders=holders or {}, raw=raw,
        )

    def raw_dump(self, kind: SocketKind, source: Source, netns: Netns = Netns()) -> Optional[bytes]:
        return self.hooks.procsock_raw_dump(kind=kind, source=source, netns=netns)

    def destroy_listener(self, source: Source, netns: Netns = Netns()) -> Optional[object]:
        """A listener of destroy notifications in `netns` (hookspec procsock_destroy_listener), or None."""
        return self.hooks.procsock_destroy_listener(source=source, netns=netns)

    def explain_difference(
        self, field: Optional[str], mine: Optional[SocketRecord], other: Optional[SocketRecord]
    ) -> Optional[str]:
        """This backend's known cause of a difference, or None; an exception or a value that is
        not a non-empty str counts as None (a plugin's answer must not hide a difference by error)."""
        try:
            reason = self.hooks.procsock_explain_difference(field=field, mine=mine, other=other)
        except Exception:
            return None
        return reason if isinstance(reason, str) and reason else None


class _OnePluginHooks:
    """Attribute access to each hook, called on one plugin only (pluggy subset callers)."""

    def __init__(self, manager: pluggy.PluginManager, plugin: object) -> None:
        others = [p for p in manager.get_plugins() if p is not plugin]
        for name in HOOK_NAMES:
            setattr(self, name, manager.subset_hook_caller(name, remove_plugins=others))


def disabled_from_env() -> Tuple[str, ...]:
    """Plugin names listed in PROCSOCK_DISABLE_PLUGINS (comma separated)."""
    return tuple(n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip())


class Registry:
    """The loaded plugins, the backends among them (highest priority first), and the plugins that
    failed. ``Registry()`` is empty; ``Registry.from_entry_points()`` loads the installed ones."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.manager.add_hookspecs(hookspecs)
        self._loaded: List[Tuple[object, str, str, str]] = []
        self._load_failures: List[PluginFailure] = []
        self.plugins: Tuple[Plugin, ...] = ()
        self.backends: Tuple[Backend, ...] = ()
        # (plugin name, its procsock_owner_context called on it alone), in load order
        self.context_hooks: Tuple[Tuple[str, Any], ...] = ()
        self.failures: Tuple[PluginFailure, ...] = ()
        self.disabled: Tuple[str, ...] = ()  # installed plugins left unloaded (their kinds are unknown)

    @classmethod
    def from_entry_points(cls, disabled: Iterable[str] = ()) -> "Registry":
        """Load every plugin of the entry-point group, except those named in `disabled`.

        A name in `disabled` that no installed plugin has is a BadArgument naming the installed
        ones (a typo would otherwise leave the plugin loaded, silently). Names in
        PROCSOCK_DISABLE_PLUGINS may name plugins absent here: one setting serves many hosts.
        """
        registry = cls()
        found = entry_points(ENTRY_POINT_GROUP)
        unknown = sorted(set(disabled) - {ep.name for ep in found})
        if unknown:
            installed = ", ".join(sorted({ep.name for ep in found})) or "none"
            raise BadArgument(
                "disable_plugin", "no plugin named %s to disable (installed: %s)" % (", ".join(unknown), installed)
            )
        blocked = set(disabled) | set(disabled_from_env())
        registry.disabled = tuple(sorted({ep.name for ep in found} & blocked))
        for ep in found:
            if ep.name in blocked:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                reason = "import failed: %s: %s" % (type(exc).__name__, exc)
                registry._load_failures.append(PluginFailure(ep.name, ep.distribution, reason))
                continue
            failure = registry._add(plugin, ep.name, ep.distribution, ep.version)
            if failure:
                registry._load_failures.append(failure)
        registry._rebuild()
        return registry

    def register(self, plugin: object, name: str, distribution: str = "", version: str = "") -> None:
        """Add an in-process plugin (embedding, tests); raises ValueError if it cannot be registered
        (a hook no hookspec knows). One that fails to describe itself lands in ``failures``."""
        failure = self._add(plugin, name, distribution, version)
        if failure:
            raise ValueError(failure.reason)
        self._rebuild()

    def _add(self, plugin: object, name: str, dist: str, version: str) -> Optional[PluginFailure]:
        try:
            self.manager.register(plugin, name=name)
            self.manager.check_pending()  # a hookimpl no hookspec knows (a typo, a newer API)
        except Exception as exc:
            if self.manager.is_registered(plugin):
                self.manager.unregister(plugin)
            return PluginFailure(name, dist, "registration failed: %s" % exc)
        self._loaded.append((plugin, name, dist, version))
        return None

    def _rebuild(self) -> None:
        plugins, backends = [], []
        failures = list(self._load_failures)
        for plugin, name, dist, version in list(self._loaded):
            implements = tuple(sorted(caller.name for caller in self.manager.get_hookcallers(plugin) or ()))
            backend_hooks = [hook for hook in implements if hook in BACKEND_HOOKS]
            if backend_hooks and "procsock_backend_info" not in backend_hooks:
                reason = "implements %s but not procsock_backend_info" % ", ".join(backend_hooks)
                failures.append(PluginFailure(name, dist, reason))
                continue
            if not backend_hooks:
                plugins.append(Plugin(name, dist, version, implements))
                continue
            hooks = _OnePluginHooks(self.manager, plugin)
            try:
                info = hooks.procsock_backend_info()
            except Exception as exc:
                reason = "backend info failed: %s: %s" % (type(exc).__name__, exc)
                failures.append(PluginFailure(name, dist, reason))
                continue
            if not isinstance(info, BackendInfo):
                failures.append(PluginFailure(name, dist, "procsock_backend_info returned %r" % (info,)))
                continue
            problem = _leaves_out_problem(info) or _supersedes_problem(info)
            if problem is not None:
                failures.append(PluginFailure(name, dist, problem))
                continue
            plugins.append(Plugin(name, dist, version, implements))
            backends.append(Backend(info, name, dist, version, hooks))
        backends.sort(key=lambda b: -b.info.priority)
        kept: List[Backend] = []
        for backend in backends:
            clash = _kind_clash(backend, kept)
            if clash is None:
                kept.append(backend)
            else:
                failures.append(PluginFailure(backend.plugin_name, backend.distribution, clash))
        dropped = {b.plugin_name for b in backends} - {b.plugin_name for b in kept}
        self.plugins = tuple(p for p in plugins if p.name not in dropped)
        self.backends = tuple(kept)
        named = {name: plugin for plugin, name, _, _ in self._loaded}
        self.context_hooks = tuple(
            (p.name, _OnePluginHooks(self.manager, named[p.name]).procsock_owner_context)
            for p in self.plugins if "procsock_owner_context" in p.implements
        )
        self.failures = tuple(failures)

    def by_name(self) -> Dict[str, Backend]:
        return {b.name: b for b in self.backends}

    def backend(self, name: str) -> Backend:
        """The backend called `name`; BackendUnavailable naming the installed ones (and why a
        plugin of that name is broken) when there is none."""
        found = self.by_name().get(name)
        if found is not None:
            return found
        broken = next((f for f in self.failures if f.name == name), None)
        if broken is not None:
            raise BackendUnavailable(name, str(broken))
        installed = ", ".join(b.name for b in self.backends) or "none"
        raise BackendUnavailable(name, "no such backend (installed: %s)" % installed)

    def kinds(self) -> Tuple[SocketKind, ...]:
        """Every kind some backend serves, in the order backends list them."""
        return kinds_of(self.backends)


LEAVES_OUT_LIMIT = 200  # characters of one `leaves_out` text: it becomes part of a one-line reason


def _leaves_out_problem(info: BackendInfo) -> Optional[str]:
    """Why a backend's `leaves_out` declaration is malformed, or None: (kind name, what) pairs of
    strings, each kind one it serves, each text one printable line."""
    declared = info.leaves_out
    if not isinstance(declared, tuple):
        return "leaves_out is a %s, not a tuple of (kind name, what) pairs" % type(declared).__name__
    served = {getattr(kind, "name", None) for kind in info.kinds}
    for entry in declared:
        if not (isinstance(entry, tuple) and len(entry) == 2 and all(isinstance(part, str) for part in entry)):
            return "leaves_out holds %s, not a (kind name, what) pair of strings" % type(entry).__name__
        kind, what = entry
        if kind not in served:
            return "leaves_out names kind %r, which it does not serve" % kind[:40]
        if not what.strip() or len(what) > LEAVES_OUT_LIMIT or not what.isprintable():
            return "leaves_out of %s: say what in one printable line of 1 to %d characters" % (kind, LEAVES_OUT_LIMIT)
    return None


def _supersedes_problem(info: BackendInfo) -> Optional[str]:
    """Why a kind's `supersedes` is malformed, or None: a tuple of other kinds' names."""
    for kind in info.kinds:
        names = getattr(kind, "supersedes", ())
        if not (isinstance(names, tuple) and all(isinstance(name, str) for name in names)):
            return "kind %s: supersedes is not a tuple of kind names" % str(getattr(kind, "name", "?"))[:40]
        if getattr(kind, "name", None) in names:
            return "kind %s supersedes itself" % kind.name[:40]
    return None


def _kind_clash(backend: Backend, before: Sequence[Backend]) -> Optional[str]:
    """Why `backend` cannot serve its kinds next to the backends `before` it: one of its kinds has
    the name of another's kind of a different family or protocol (a kind name means one pair), or
    claims a kernel protocol name (`kernel_names`) another kind has (a lookup of one fd asks only
    the kind its protocol names: two claimants would hide sockets from lookups)."""
    for kind in backend.info.kinds:
        for other in before:
            for theirs in other.info.kinds:
                shared = set(getattr(kind, "kernel_names", ())) & set(theirs.kernel_names) if theirs != kind else ()
                if shared:  # a lookup of one fd asks the kind its protocol names: one kind per name
                    return "its kind %s claims the kernel's protocol name %s of kind %s of backend %s" % (
                        kind.name, ", ".join(sorted(shared)), theirs.name, other.name)
                if theirs.name == kind.name and theirs != kind:
                    return "its kind %s (%s/%s) clashes with kind %s (%s/%s) of backend %s: a kind name means " \
                        "one family and protocol" % (
                            kind.name, _family(kind), kind.protocol, theirs.name, _family(theirs), theirs.protocol,
                            other.name,
                        )
    return None


def _family(kind: SocketKind) -> str:
    return kind.family.name.lower() if hasattr(kind.family, "name") else str(kind.family)


def kinds_of(backends: Iterable[Backend]) -> Tuple[SocketKind, ...]:
    """Every kind one of `backends` serves, once each, in the order they list them."""
    return tuple(dict.fromkeys(kind for backend in backends for kind in backend.info.kinds))
