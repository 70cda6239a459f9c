"""Benchmark: the trainer's deterministic memory estimate against the measured peak RSS increase.

Each configuration runs in a fresh Python process (so RSS is not flattered by pages an earlier
run freed), trains for a fixed number of steps, and reports the estimate made before training
(parameters, gradients, optimiser state and the activations autograd saves, counted on the meta
device) next to the measured peak RSS increase during the run, and their ratio.

    .venv/bin/python benchmarks/memory_estimate.py
"""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = """
import json, torch
torch.set_num_threads(2)
from trustkit.budget import Budget
from trustkit.data import load_task
from trustkit.train import Trainer
task = load_task({task!r}, seed=0)
r = Trainer(model={model!r}, epochs=1, batch_size={bs}, progress=False, metrics=["accuracy"]).fit(task)
print(json.dumps({{"est": r.usage["est_memory_mb"], "peak": r.usage["peak_memory_mb"], "params": r.usage["params"]}}))
"""


def main():
    print(f"{'task':7s} {'model':9s} {'batch':>5s} {'params':>9s} {'estimate MB':>12s} {'measured MB':>12s} {'measured/est':>13s}")
    for task, model, bss in (("adult", "mlp", (128, 1024)), ("digits", "cnn", (64, 256)), ("digits", "resnet18", (32, 128))):
        for bs in bss:
            out = subprocess.run([sys.executable, "-c", CHILD.format(task=task, model=model, bs=bs)],
                                 capture_output=True, text=True, check=True)
            d = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{task:7s} {model:9s} {bs:5d} {d['params']:9d} {d['est']:12.1f} {d['peak']:12.1f} {d['peak'] / d['est']:13.2f}")


if __name__ == "__main__":
    main()
