"""A pipelined PyTorch training loop on dip's plans: 2 CPU ranks (gloo), a new plan every batch.

    parent:  planner.get(i) -> plan i to every rank -> submit(i + 1) -> wait for step i's losses
    planner:                                [ search batch i + 1 on a worker thread ]
    rank r:                 PipelineRank.step(plan i) -> AdamW step -> loss share to the parent

The parent owns the dip.Planner and the data (batch i + 1 is searched while the ranks train batch
i); the ranks, started by dip.torch.launch, own the layers. Plans travel as their executable()
documents (plain dicts) over one multiprocessing queue per rank, and the ranks' loss shares come
back on another; their sum is the step's loss. The model is dip's ReferenceModel of tiny-vlm with
the LLM's transformer blocks replaced by the user's own modules (MyBlock): the "own modules" path.

    PYTHONPATH=build/python .venv/bin/python examples/torch_training_loop.py --steps 3
"""

import argparse
import pathlib
import queue
import threading

try:
    import torch
except ImportError:
    print("torch is not installed (pip install '.[torch]'): skipped")
    raise SystemExit(77)  # ctest's skip (dip_torch_test)
import torch.multiprocessing as mp
from torch import nn

import dip
import dip.torch
from dip.torch.layers import DipLayer, RowMeta

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_TRACE = REPO.parent / "shared" / "data" / "vlm-coco-captions.jsonl"


class MyBlock(DipLayer):
    """A user's layer: torch's own TransformerEncoderLayer, run on each segment of the rows (one
    packed sample of the LLM's sequence) so that attention never crosses samples."""

    def __init__(self, hidden: int, heads: int, ffn: int):
        super().__init__()
        self.block = nn.TransformerEncoderLayer(hidden, heads, ffn, dropout=0.0, batch_first=True, norm_first=True)

    def forward(self, x: torch.Tensor, meta: RowMeta) -> torch.Tensor:
        pieces, at = [], 0
        for n in meta.segments:
            mask = nn.Transformer.generate_square_subsequent_mask(n) if meta.causal else None
            pieces.append(self.block(x[None, at:at + n], src_mask=mask, is_causal=meta.causal)[0])
            at += n
        return torch.cat(pieces) if pieces else x


class MyVLM(dip.torch.ReferenceModel):
    """dip's reference tiny-vlm (data, embedding, encoder, loss), with MyBlock as the LLM's
    transformer blocks. A PipelineModel answers layers/begin/meta/loss; only layers changes here."""

    def layers(self, module, first, stop):
        spec = self.modules[module]
        out = []
        for i in range(first, stop):
            layer = spec["layers"][i]
            if spec["name"] == "llm" and layer["kind"] == "transformer":
                torch.manual_seed(1000 * module + i)  # the same weights whichever rank builds it
                out.append(MyBlock(layer["hidden"], layer["heads"], layer["ffn"]))
            else:
                out.extend(super().layers(module, i, i + 1))
        return out


def rank_worker(rank: int, world_size: int, plan_queues, losses, lr: float) -> int:
    """One pipeline rank: run each plan that arrives, then an optimizer step on its own layers."""
    runner = optimizer = None
    index = 0
    while (document := plan_queues[rank].get()) is not None:  # None: the run is over
        plan = dip.torch.ExecutablePlan(document)
        if runner is None:  # the first plan says which layers this rank holds, for the whole run
            runner = dip.torch.PipelineRank(rank, MyVLM(document["model"], seed=1), plan, timeout_s=60)
            optimizer = torch.optim.AdamW([p for _, p in runner.named_parameters()], lr=lr)
        report = runner.step(plan, index)  # forward, backward, messages; sets every .grad
        optimizer.step()
        losses.put((index, rank, report.loss, report.seconds))
        index += 1
    return index


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--microbatches", type=int, default=4)
    parser.add_argument("--data", default=str(SHARED_TRACE if SHARED_TRACE.exists() else
                                              REPO / "tests" / "data" / "vlm_trace.jsonl"))
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args()
    ranks = 2

    planner = dip.Planner("tiny-vlm", pp=ranks, search_ms=50)
    source = dip.BatchSource(args.data, planner.model, seed=1)
    context = mp.get_context("spawn")  # dip.torch.launch spawns its ranks; queues must match
    plan_queues = [context.Queue() for _ in range(ranks)]
    losses = context.Queue()
    failure: list[BaseException] = []

    def run_ranks():  # launch() blocks until the ranks end, so it gets a thread of its own
        try:
            dip.torch.launch(rank_worker, ranks, (plan_queues, losses, args.lr), backend="gloo", timeout_s=60)
        except BaseException as error:  # noqa: BLE001 -- reported by the loop below
            failure.append(error)

    launcher = threading.Thread(target=run_ranks)
    launcher.start()

    try:
        planner.submit(0, source.next_batch(args.microbatches))
        for i in range(args.steps):
            plan = planner.get(i, timeout_s=5.0 if i == 0 else 0.5)  # never wait long for a plan
            document = plan.executable()  # a dict: the executable plan (version 2)
            for q in plan_queues:
                q.put(document)
            if i + 1 < args.steps:  # searched while the ranks train batch i
                planner.submit(i + 1, source.next_batch(args.microbatches))
            shares = []
            while len(shares) < ranks:
                try:
                    shares.append(losses.get(timeout=1.0))
                except queue.Empty:
                    if not launcher.is_alive():
                        raise SystemExit(f"the ranks failed: {failure[0] if failure else 'they ended early'}")
            loss = sum(share[2] for share in shares)
            seconds = max(share[3] for share in shares)
            subs = [mb["sub_microbatches"]["vit"] for mb in plan.microbatches]
            print(f"step {i}: loss {loss:.4f}  ({seconds:.2f} s; plan {plan.source}, {plan.makespan_ms:.3f} ms "
                  f"simulated; vit sub-microbatches per microbatch {subs})", flush=True)
    finally:
        for q in plan_queues:
            q.put(None)  # the ranks end (also when planning failed), and launch() returns
        launcher.join()
        for q in plan_queues:
            q.cancel_join_thread()  # exit even if a failed rank left a plan unread
    if failure:
        raise SystemExit(f"the ranks failed: {failure[0]}")
    print(f"planner: {planner.async_stats}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
