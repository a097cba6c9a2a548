"""Gemma-3-270M (the packaged GGUF, `make setup` installs it) through the whole pipeline: train,
vector, combine, PEFT export checked by PeftModel. Slow: it loads a 270M model; tiny settings."""

from __future__ import annotations

import warnings

import pytest
import torch

from tpv import merge
from tpv.backbone import GEMMA3_270M, Backbone, BackboneError
from tpv.identity import split
from tpv.prompted import PromptedModel
from tpv.tasks import get_task
from tpv.train import TrainConfig, train
from tpv.vectors import Origin, SoftPrompt, TaskPromptVector, load

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gemma() -> Backbone:
    try:
        return Backbone.load("gemma3-270m")
    except BackboneError as e:  # the packages are optional for a plain install
        pytest.skip(str(e))


def _run(gemma, task: str, out) -> dict:
    cfg = TrainConfig(
        task=task, out=str(out), model="gemma3-270m", num_tokens=4, max_steps=2, batch_size=2,
        eval_every=2, eval_examples=8, test_examples=8, max_input_tokens=48,
    )  # fmt: skip
    return train(cfg, backbone=gemma, task=get_task(task), progress=False)


def test_gemma_trains_combines_and_exports_to_peft(gemma, tmp_path):
    name, tag = split(gemma.name)
    assert name == "gemma-3-270m-q4_k_m" and tag == f"sha256:{GEMMA3_270M.sha256[:16]}"
    assert gemma.hidden_size == 640 and gemma.config.model_type == "gemma3_text"

    runs = {t: tmp_path / t for t in ("rotten_tomatoes", "tweets3")}
    metrics = {t: _run(gemma, t, d) for t, d in runs.items()}
    for m in metrics.values():
        assert m.model == gemma.name and m.lr == 0.3 and m.steps == 2
        assert m.test["n"] == 8
    vectors = [load(d / "vector.safetensors") for d in runs.values()]
    origin = Origin.load(runs["rotten_tomatoes"] / "origin.safetensors")
    assert all(isinstance(v, TaskPromptVector) and v.model == gemma.name for v in vectors)
    assert all(v.shape == (4, 640) for v in vectors)

    prompt = merge.combine("sum", vectors).apply(origin)
    assert isinstance(prompt, SoftPrompt) and prompt.tasks == ("rotten_tomatoes", "tweets3")
    assert torch.isfinite(prompt.tensor).all()

    from peft import PeftModel

    from tpv.peft_io import export_peft

    adapter = export_peft(prompt, tmp_path / "adapter", backbone=gemma)
    ids = gemma.tokenizer(["Review: a fine film\nSentiment:"], return_tensors="pt")
    ids, mask = ids["input_ids"], ids["attention_mask"]
    ours = PromptedModel(gemma, prompt.tensor)._decoder_logits(ids, mask, ids.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = PeftModel.from_pretrained(gemma.model, adapter)
    with torch.no_grad():
        theirs = pm(input_ids=ids, attention_mask=mask).logits[:, prompt.num_tokens :]
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4)
