"""Train a prompt on the tiny Llama and keyword task; run plainly or under `accelerate launch`."""

import sys

from tpv.testing import keyword_task, tiny_llama
from tpv.train import TrainConfig, train

if __name__ == "__main__":
    out = sys.argv[1]
    cfg = TrainConfig(
        task="keyword", out=out, num_tokens=8, max_steps=12, batch_size=8, eval_every=6, lr=0.3
    )
    train(cfg, backbone=tiny_llama(), task=keyword_task(n_train=64), progress=False)
