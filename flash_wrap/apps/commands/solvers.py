"""``flash-wrap solvers``: the registered solver plugins, then the registered tasks, and where they come from."""

from __future__ import annotations

import argparse

NAME = "solvers"
HELP = "list registered solver plugins and tasks, and where they come from"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--details", action="store_true", help="also show samplers and per-task defaults")


def run(args: argparse.Namespace) -> int:
    from ...grid import grid_for
    from ...registry import get_registry

    registry = get_registry()
    if not registry.solvers and not registry.broken:
        print("no solver plugins found (is flash-wrap installed? `pip install -e .`)")
        return 1
    width = max([len(n) for n in registry.solvers] + [len(b.plugin) for b in registry.broken] + [6])
    for name, record in sorted(registry.solvers.items()):
        cls = record.cls
        print(f"{name:<{width}}  {cls.summary}")
        print(f"{'':<{width}}  from {record.origin}")
        if args.details:
            steps = cls.default_steps or "all"
            try:  # the label of its own grid on the usual 1000-step schedule, where solver_defaults belong
                own = f", own grid {grid_for(cls, 1000).label()!r} on a 1000-step schedule"
            except ValueError:
                own = ""
            print(f"{'':<{width}}  sampler {cls.sampler_kind} ({steps} steps{own}); reference: {cls.reference}")
            for task, values in sorted(cls.defaults.items()):
                shown = ", ".join(f"{k}={v:g}" for k, v in values.items())
                print(f"{'':<{width}}    {task}: {shown}")
    for broken in registry.broken:
        print(f"{broken.plugin:<{width}}  BROKEN ({broken.origin}): {broken.error}")
    for name, claimants in sorted(registry.conflicts.items()):
        print(f"{name:<{width}}  CONFLICT, disabled: registered by {'; '.join(r.origin for r in claimants)}")
    print("\ntasks:")
    width = max([len(n) for n in registry.tasks] + [len(n) for n in registry.task_conflicts] + [6])
    for name, task_record in sorted(registry.tasks.items()):
        print(f"{name:<{width}}  {task_record.task.summary}")
        print(f"{'':<{width}}  from {task_record.origin}")
    for name, task_claimants in sorted(registry.task_conflicts.items()):
        print(f"{name:<{width}}  CONFLICT, disabled: registered by {'; '.join(r.origin for r in task_claimants)}")
    return 0
