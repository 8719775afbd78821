"""Where `avmix mix --reference` spends its time: wall and CPU seconds per phase of one run.

    .venv/bin/python benchmarks/reference_phases.py A.wav B.wav C.wav -o out.wav --reference REF.wav

The arguments are those of ``avmix mix``; the run is the CLI's, in this process, with timers around
its phases: start-up (imports), the reference and the mix measured (side by side on two threads, so
their CPU seconds are the process's over the same span), the correction derived, the held mix
corrected and its level modelled, the dynamics chosen again, and each writing pass. CPU seconds are
the whole process's (every thread). Under load the wall seconds mean little: compare CPU seconds.
"""
from __future__ import annotations

import sys
import time

T0 = (time.perf_counter(), time.process_time())
import numpy  # noqa: E402,F401  (timed as start-up)

T1 = (time.perf_counter(), time.process_time())
from avmix import cli  # noqa: E402
from avmix.audio import compose, held, match  # noqa: E402

T2 = (time.perf_counter(), time.process_time())


def timed(owner, name: str, label: str) -> None:
    """Replace ``owner.name`` by a version that prints its wall and CPU seconds (also when it raises:
    a writing pass the gain search throws away ends that way)."""
    inner = getattr(owner, name)

    def run(*a, **k):
        s = (time.perf_counter(), time.process_time())
        try:
            return inner(*a, **k)
        finally:
            print(f"  {label:<28} wall {time.perf_counter() - s[0]:6.3f}  cpu {time.process_time() - s[1]:6.3f}",
                  file=sys.stderr)
    setattr(owner, name, run)


def main() -> int:
    print(f"  {'start-up: numpy':<28} wall {T1[0] - T0[0]:6.3f}  cpu {T1[1] - T0[1]:6.3f}", file=sys.stderr)
    print(f"  {'start-up: avmix':<28} wall {T2[0] - T1[0]:6.3f}  cpu {T2[1] - T1[1]:6.3f}", file=sys.stderr)
    timed(compose, "measure_reference", "reference measured")
    timed(compose, "_measure_stream", "mix measured")
    timed(match, "derive", "correction derived")
    timed(held.Held, "correct", "held mix corrected, modelled")
    timed(held, "refine_dynamics", "dynamics chosen again")
    timed(compose, "_write", "writing pass")
    cli._keep_freed_memory()
    code = cli.run(["mix", *sys.argv[1:]])
    print(f"  {'total':<28} wall {time.perf_counter() - T0[0]:6.3f}  cpu {time.process_time() - T0[1]:6.3f}",
          file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
