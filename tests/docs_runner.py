"""Run documentation code in one fresh interpreter: ``python tests/docs_runner.py JOBS.json RESULTS.json``.

``JOBS.json`` is a list of jobs, each ``{"name", "code"}`` (Python source, run in a fresh namespace as
``__main__``) or ``{"name", "script", "argv"}`` (a script run as ``__main__`` with that command
line). Every job runs, in order, in the current folder; ``RESULTS.json`` gets, per name, whether it
finished, its output and, if it failed, the traceback. One interpreter for all of them pays for
importing torch and loading the demo model once instead of once per page.
"""

from __future__ import annotations

import contextlib
import io
import json
import runpy
import sys
import time
import traceback


def run_job(job: dict) -> dict:
    out = io.StringIO()
    start, cpu = time.perf_counter(), time.process_time()
    argv = sys.argv
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            if "code" in job:
                exec(compile(job["code"], job["name"], "exec"), {"__name__": "__main__"})
            else:
                sys.argv = [job["script"], *job.get("argv", [])]
                runpy.run_path(job["script"], run_name="__main__")
        ok, error = True, None
    except SystemExit as exit_:
        ok, error = exit_.code in (0, None), f"SystemExit({exit_.code!r})"
    except BaseException:  # noqa: B036 - every failure is reported, none ends the other jobs
        ok, error = False, traceback.format_exc()
    finally:
        sys.argv = argv
    return {"ok": ok, "error": error, "output": out.getvalue(), "seconds": round(time.perf_counter() - start, 2),
            "cpu_seconds": round(time.process_time() - cpu, 2)}


def main(jobs_file: str, results_file: str) -> None:
    jobs = json.loads(open(jobs_file, encoding="utf-8").read())
    results = {job["name"]: run_job(job) for job in jobs}
    with open(results_file, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main(*sys.argv[1:])
