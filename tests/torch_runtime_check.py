#!/usr/bin/env python3
"""Optional check: dip-plan's --export-torch CSVs run in PyTorch's pipelining runtime.

For each classic schedule (the V-shaped ZB-V and DualPipeV included), dip-plan exports the compute_only CSV of the 8-layer toy model on 4
ranks with 8 microbatches; four CPU processes (gloo) load it into
torch.distributed.pipelining's _PipelineScheduleRuntime, which validates it and inserts the
sends and receives, run one step on a pipeline of small linear stages, and compare the loss and
every stage's weight gradients with a sequential run of the same model.

Usage: torch_runtime_check.py <dip-plan> <work dir>. Exits 77 (skipped) when torch, or a torch
with the I action of the compute_only format (2.6 and later), is not installed.
"""
import os
import subprocess
import sys
import tempfile

SKIP = 77
PINNED = "2.15.0"  # dip::torch_pipelining_version
RANKS, MICROBATCHES, HIDDEN, ROWS_PER_MICROBATCH = 4, 8, 16, 4
# zbv and dualpipev: two stages per rank on the V (rank 0 holds the first and the last stage).
SCHEDULES = {"gpipe": [], "1f1b": [], "zb1p": [], "interleaved": ["--chunks", "2"], "zbv": [], "dualpipev": []}


def read_rows(path):
    with open(path, newline="") as f:
        return [line.rstrip("\r\n").split(",") if line.strip() else [] for line in f]


def stage_module(torch, index):
    torch.manual_seed(1000 + index)
    return torch.nn.Sequential(torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.Tanh())


def batch(torch):
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(MICROBATCHES * ROWS_PER_MICROBATCH, HIDDEN, generator=generator)
    y = torch.randn(MICROBATCHES * ROWS_PER_MICROBATCH, HIDDEN, generator=generator)
    return x, y


def reference(torch, stages):
    """Loss per microbatch and gradients per stage of the unpipelined model (mean over microbatches)."""
    modules = [stage_module(torch, s) for s in range(stages)]
    x, y = batch(torch)
    losses = []
    for xm, ym in zip(x.chunk(MICROBATCHES), y.chunk(MICROBATCHES)):
        h = xm
        for m in modules:
            h = m(h)
        loss = torch.nn.functional.mse_loss(h, ym)
        (loss / MICROBATCHES).backward()
        losses.append(loss.detach())
    return losses, [[p.grad.clone() for p in m.parameters()] for m in modules]


def worker(rank, csv_path, stages, store_path, result_dir):
    import torch
    import torch.distributed as dist
    from torch.distributed.pipelining import PipelineStage
    from torch.distributed.pipelining.schedules import _PipelineScheduleRuntime

    dist.init_process_group("gloo", init_method="file://" + store_path, rank=rank, world_size=RANKS)
    try:
        rows = read_rows(csv_path)
        mine = sorted({int(_stage_of(cell)) for cell in rows[rank]})
        pipeline_stages = [
            PipelineStage(stage_module(torch, s), s, stages, torch.device("cpu"), group=dist.group.WORLD) for s in mine
        ]
        schedule = _PipelineScheduleRuntime(
            pipeline_stages, MICROBATCHES, loss_fn=torch.nn.functional.mse_loss, scale_grads=True
        )
        schedule._load_csv(csv_path, format="compute_only")
        x, y = batch(torch)
        args = (x,) if 0 in mine else ()
        kwargs = {"target": y, "losses": []} if stages - 1 in mine else {}
        schedule.step(*args, **kwargs)
        result = {"grads": {s: [p.grad.clone() for p in st.submod.parameters()] for s, st in zip(mine, pipeline_stages)}}
        if kwargs:
            result["losses"] = [l.detach() for l in kwargs["losses"]]
        torch.save(result, os.path.join(result_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _stage_of(cell):
    digits = ""
    for ch in cell.strip():
        if not ch.isdigit():
            break
        digits += ch
    return digits


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    dip_plan, work = sys.argv[1], sys.argv[2]
    try:
        import numpy  # noqa: F401 (torch's pipelining exchanges shape metadata as pickled objects through numpy)
        import torch
        import torch.multiprocessing as mp
        from torch.distributed.pipelining import schedules
    except ImportError as e:
        print(f"SKIP: torch (with numpy) is not installed here ({e})")
        return SKIP
    if not hasattr(schedules._ComputationType, "BACKWARD_INPUT") or not hasattr(schedules, "_PipelineScheduleRuntime"):
        print(f"SKIP: torch {torch.__version__} predates the compute_only format with I actions (2.6)")
        return SKIP
    print(f"torch {torch.__version__} (dip pins {PINNED})")
    os.makedirs(work, exist_ok=True)
    failures = 0
    for name, extra in SCHEDULES.items():
        csv_path = os.path.join(work, f"{name}.csv")
        subprocess.run(
            [dip_plan, "--model", "tests/data/toy.json", "--pp", str(RANKS), "--microbatches", str(MICROBATCHES),
             "--schedules", name, "--export-torch", csv_path, *extra],
            check=True, stdout=subprocess.DEVNULL,
        )
        rows = read_rows(csv_path)
        stages = 1 + max(int(_stage_of(c)) for row in rows for c in row)
        with tempfile.TemporaryDirectory() as tmp:
            store = os.path.join(tmp, "store")
            mp.spawn(worker, args=(csv_path, stages, store, tmp), nprocs=RANKS, join=True)
            results = [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(RANKS)]
        want_losses, want_grads = reference(torch, stages)
        got_losses = next(r["losses"] for r in results if "losses" in r)
        ok = len(got_losses) == MICROBATCHES and all(
            torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(got_losses, want_losses)
        )
        for r in results:
            for s, grads in r["grads"].items():
                ok = ok and all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(grads, want_grads[s]))
        print(f"{name}: {stages} stages, {MICROBATCHES} microbatches: {'ok' if ok else 'MISMATCH'}")
        failures += not ok
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
