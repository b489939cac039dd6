"""Trains the tiny neural head for 50 steps and writes its per-step losses (rank 0): run alone, or
under ``python -m torch.distributed.run --nproc_per_node 2`` (tests/test_train_ddp.py)."""

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
torch.set_num_threads(1)

from conftest import make_model  # noqa: E402

from studio.core.neural import data as nd  # noqa: E402
from studio.core.neural.config import tiny_config  # noqa: E402
from studio.core.neural.train import train  # noqa: E402

out = Path(sys.argv[1])
cfg = tiny_config(regions=(), id_steps=40, ex_steps=10, batch_ids=4, ex_batch=4)
trainer = train(nd.build_training_data(make_model(), cfg), cfg, out / "run", log_every=1)
if int(os.environ.get("RANK", "0")) == 0:
    rows = [{"stage": r["stage"], "total": r["total"]} for r in trainer.history]
    (out / "losses.json").write_text(json.dumps({"world": int(os.environ.get("WORLD_SIZE", "1")), "rows": rows}))
