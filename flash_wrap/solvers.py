"""Solvers resolved through the plugin registry.

``from flash_wrap.solvers import LatentDPS`` looks the class up among the registered solvers
(by class name); :func:`get_solver` looks one up by its registry name (``"latent-dps"``).
"""

from __future__ import annotations

from .plugins import PluginError, SolverRecord, get_registry


def get_solver(name: str) -> type:
    """The solver class registered as ``name``; ``PluginError`` lists the known names otherwise."""
    return get_registry().solver(name)


def available_solvers() -> dict[str, SolverRecord]:
    """Registered solvers by name (broken plugins are in ``get_registry().broken``)."""
    return dict(get_registry().solvers)


def __getattr__(attr: str) -> type:
    if attr.startswith("__"):
        raise AttributeError(attr)
    registry = get_registry()
    for record in registry.solvers.values():
        if record.cls.__name__ == attr:
            return record.cls
    classes = ", ".join(sorted(r.cls.__name__ for r in registry.solvers.values())) or "none"
    raise AttributeError(f"no registered solver class {attr!r} in flash_wrap.solvers; registered: {classes}")


def __dir__() -> list[str]:
    return sorted(["get_solver", "available_solvers", *(r.cls.__name__ for r in get_registry().solvers.values())])


__all__ = ["get_solver", "available_solvers", "PluginError"]
