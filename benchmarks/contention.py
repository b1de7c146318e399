"""How fairgrape slows down when other processes share the CPU (issue 28 item 13).

Runs a workload alone and beside N CPU-bound processes (``python3 -c "while True: pass"``), with
torch's OpenMP threads waiting passively (fairgrape's default since 0.3: ``OMP_WAIT_POLICY=PASSIVE``)
or actively (spinning, torch's own default). A fair share of the machine would make the workload
``(N + threads) / threads`` times slower at most on a machine with as many cores as threads; spinning
threads do far worse, because a thread that waits for a descheduled peer burns its time slice.

Workloads: ``demo`` (``fairgrape demo`` in a fresh folder, the command a new user runs first) and
``step`` (training steps of the demo's CNN for a fixed time, images/s: seconds, not minutes).

    python benchmarks/contention.py --workload step --busy 0 2
    python benchmarks/contention.py --workload demo --busy 0 2

Not run by CI. RESULTS: see the README's "A busy machine" section.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEP = """
import sys, time, torch
from fairgrape_cli.flows.synthetic import WIDE_ARCH
from fairgrape_cli.io.checkpoints import build_model
model = build_model(WIDE_ARCH, 4)
optimizer = torch.optim.Adam(model.parameters(), 1e-3)
x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 4, (32,))
def step():
    optimizer.zero_grad(); torch.nn.functional.cross_entropy(model(x), y).backward(); optimizer.step()
for _ in range(5):
    step()
start, seen = time.perf_counter(), 0
while time.perf_counter() - start < float(sys.argv[1]):
    step(); seen += 32
print(seen / (time.perf_counter() - start))
"""


def measure(workload: str, wait_policy: str, seconds: float) -> float:
    """Images per second (step) or wall seconds (demo) of one run of ``workload``."""
    env = {**os.environ, "OMP_WAIT_POLICY": wait_policy}
    if workload == "step":
        done = subprocess.run([sys.executable, "-c", STEP, str(seconds)], env=env, check=True,
                              capture_output=True, text=True, cwd=ROOT)  # fmt: skip
        return float(done.stdout.strip())
    fairgrape = Path(sys.executable).with_name("fairgrape")
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        subprocess.run([str(fairgrape), "demo", "-o", folder + "/demo", "-q"], env=env, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=("step", "demo"), default="step")
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 2], help="CPU-bound processes beside it")
    parser.add_argument("--policies", nargs="+", default=["PASSIVE", "ACTIVE"])
    parser.add_argument("--seconds", type=float, default=10.0, help="step: how long each measurement runs")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    unit = "images/s" if args.workload == "step" else "s wall"
    results: dict[tuple[int, str], list[float]] = {}
    for _ in range(args.repeat):
        for busy in args.busy:
            loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
            try:
                time.sleep(1)
                for policy in args.policies:  # interleaved: both policies under the same load
                    value = measure(args.workload, policy, args.seconds)
                    results.setdefault((busy, policy), []).append(value)
                    print(f"busy {busy}  {policy:8s} {value:8.1f} {unit}", flush=True)
            finally:
                for loop in loops:
                    loop.kill()
    print(f"\n{args.workload} on {os.cpu_count()} cores, median of {args.repeat}; ratio = slowdown against "
          "the same policy with no busy process")  # fmt: skip
    for (busy, policy), values in sorted(results.items()):
        value = sorted(values)[len(values) // 2]
        idle = sorted(results.get((0, policy), values))[len(results.get((0, policy), values)) // 2]
        ratio = idle / value if args.workload == "step" else value / idle
        print(f"busy {busy}  {policy:8s} {value:8.1f} {unit}   {ratio:.2f}x slower")


if __name__ == "__main__":
    main()
