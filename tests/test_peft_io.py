"""PEFT prompt-tuning export/import: PEFT runs a tpv prompt exactly as tpv does, and back."""

import json
import warnings

import pytest
import torch

from tpv.data import Batch
from tpv.peft_io import export_peft, import_peft, read_peft, resolve_origin
from tpv.prompted import PromptedModel
from tpv.testing import keyword_task, tiny_llama, tiny_t5
from tpv.train import TrainConfig, train
from tpv.vectors import FormatError, IncompatibleError, Origin, SoftPrompt, TaskPromptVector

peft = pytest.importorskip("peft")
from peft import LoraConfig, PeftModel, PromptTuningConfig, get_peft_model  # noqa: E402

P = 4


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        # PEFT drops position ids in generate; harmless for the un-padded rows compared here.
        warnings.filterwarnings("ignore", "Position ids are not supported")
        yield


def _prompt(backbone, seed=0, scale=0.5) -> tuple[Origin, SoftPrompt]:
    """An origin and a "tuned" prompt away from it (what training would produce)."""
    origin = backbone.make_origin(P, seed=seed)
    g = torch.Generator().manual_seed(100 + seed)
    noise = torch.randn(origin.shape, generator=g) * scale
    return origin, SoftPrompt(
        origin.tensor + noise, backbone.name, name="kw", origin_id=origin.id, tasks=("keyword",)
    )


def _ids(backbone, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    enc = backbone.tokenizer(texts, return_tensors="pt", padding=True)
    return enc["input_ids"], enc["attention_mask"]


def test_causal_trained_prompt_logits_match(tmp_path):
    bb = tiny_llama()
    task = keyword_task(n_train=16, n_val=4, n_test=4)
    cfg = TrainConfig(
        task="keyword", out=str(tmp_path / "run"), num_tokens=P, max_steps=5, batch_size=4,
        eval_every=5, eval_examples=4, test_examples=4,
    )  # fmt: skip
    train(cfg, backbone=bb, task=task, progress=False)
    out = export_peft(tmp_path / "run", tmp_path / "adapter", backbone=bb)  # a run directory
    tuned = SoftPrompt.load(tmp_path / "run" / "prompt.safetensors")

    cfg_json = json.loads((out / "adapter_config.json").read_text())
    assert cfg_json["peft_type"] == "PROMPT_TUNING" and cfg_json["task_type"] == "CAUSAL_LM"
    assert (cfg_json["num_virtual_tokens"], cfg_json["token_dim"]) == (P, 64)
    assert cfg_json["base_model_name_or_path"] == bb.name

    ids, mask = _ids(bb, ["w1 sunny w2 w3 label :"])  # one row: no padding
    tpv_logits = PromptedModel(bb, tuned.tensor)._decoder_logits(ids, mask, ids.shape[1])
    pm = PeftModel.from_pretrained(bb.model, out)
    assert torch.equal(pm.prompt_encoder["default"].embedding.weight.detach(), tuned.tensor)
    with torch.no_grad():
        peft_logits = pm(input_ids=ids, attention_mask=mask).logits[:, P:]
    torch.testing.assert_close(peft_logits, tpv_logits, rtol=1e-5, atol=1e-5)


def _causal_generate(tmp_path, use_cache: bool):
    bb = tiny_llama(seed=1)
    _, prompt = _prompt(bb)
    ids, mask = _ids(bb, ["w5 rainy w7 label :"])
    ours = PromptedModel(bb, prompt.tensor).generate(
        Batch(ids, mask, ids[:, :1], torch.zeros(1)), max_new_tokens=6
    )
    pm = PeftModel.from_pretrained(bb.model, export_peft(prompt, tmp_path / "a", backbone=bb))
    with torch.no_grad():
        theirs = pm.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
            pad_token_id=bb.tokenizer.pad_token_id, use_cache=use_cache,
        )  # fmt: skip
    return theirs[:, ids.shape[1] :], ours


def test_causal_generate_matches_without_kv_cache(tmp_path):
    theirs, ours = _causal_generate(tmp_path, use_cache=False)
    assert torch.equal(theirs, ours)


@pytest.mark.xfail(
    reason="peft 0.21.2 + transformers 5.x: PEFT looks for the KV cache under `past_key_values`, "
    "transformers now passes `cache`, so PEFT re-inserts the prompt at every decoding step "
    "(see docs/peft.md); passes again once PEFT follows the rename",
    strict=False,
)
def test_causal_generate_matches_with_kv_cache(tmp_path):
    theirs, ours = _causal_generate(tmp_path, use_cache=True)
    assert theirs[0, 0] == ours[0, 0]  # the first token (no cache yet) always agrees
    assert torch.equal(theirs, ours)


@pytest.mark.parametrize("subs", [1, 2])
def test_t5_generate_and_forward_match(tmp_path, subs):
    bb = tiny_t5()
    with torch.no_grad():  # a random tied-embedding T5 mostly echoes the pad it starts from
        bb.model.shared.weight[bb.tokenizer.pad_token_id].mul_(0.01)
    _, prompt = _prompt(bb, scale=2.0)
    out = export_peft(prompt, tmp_path / "a", backbone=bb, num_transformer_submodules=subs)
    assert read_peft(out).num_transformer_submodules == subs
    ids, mask = _ids(bb, ["w1 w2 sunny w4 w5 label :", "cold w3"])  # padded batch
    assert (mask == 0).any()
    labels = torch.tensor([[40, 41, 1], [42, 1, -100]])
    tpv_model = PromptedModel(bb, prompt.tensor)
    ours = tpv_model.generate(Batch(ids, mask, labels, torch.zeros(2)), max_new_tokens=8)
    with torch.no_grad():
        tpv_logits = tpv_model._seq2seq_logits(ids, mask, labels)
    pm = PeftModel.from_pretrained(bb.model, out)
    with torch.no_grad():
        theirs = pm.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False, num_beams=1,
            pad_token_id=bb.tokenizer.pad_token_id,
        )  # fmt: skip
        peft_logits = pm(input_ids=ids, attention_mask=mask, labels=labels).logits
    assert torch.equal(theirs, ours)
    # PEFT >= 0.4 puts only the encoder half in front of the encoder, in forward as in generate.
    torch.testing.assert_close(peft_logits, tpv_logits, rtol=1e-5, atol=1e-5)
    # The generated text depends on the prompt (else equality above would prove little).
    plain = bb.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False)
    assert not torch.equal(plain, ours)


def test_export_vector_with_origin_and_roundtrip(tmp_path):
    bb = tiny_llama()
    origin, prompt = _prompt(bb)
    tau = TaskPromptVector.from_prompts(prompt, origin)
    origin.save(tmp_path / "origin.safetensors")
    with pytest.raises(ValueError, match="give the origin"):
        export_peft(tau, tmp_path / "x", backbone=bb)
    out = export_peft(tau, tmp_path / "a", origin=tmp_path / "origin.safetensors", backbone=bb)
    back = import_peft(out, tmp_path / "origin.safetensors", backbone=bb)
    assert back.origin_ids == (origin.id,) and back.tasks == ("keyword",)
    assert torch.equal(back.apply(origin).tensor, prompt.tensor)
    torch.testing.assert_close(back.tensor, tau.tensor, rtol=0, atol=1e-6)
    # Without a backbone, the task type comes from task_type; an existing adapter is kept.
    with pytest.raises(FileExistsError, match="not empty"):
        export_peft(prompt, out, task_type="causal")
    export_peft(prompt, out, task_type="causal", overwrite=True)
    assert read_peft(out).task_type == "CAUSAL_LM"
    with pytest.raises(ValueError, match="causal or seq2seq"):
        export_peft(prompt, tmp_path / "b")
    assert not (tmp_path / "b").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("make", "task_type", "init"),
    [
        (tiny_llama, "CAUSAL_LM", "RANDOM"),
        (tiny_llama, "CAUSAL_LM", "SAMPLE_VOCAB"),
        (tiny_llama, "CAUSAL_LM", "TEXT"),
        (tiny_t5, "SEQ_2_SEQ_LM", "SAMPLE_VOCAB"),
    ],
)
def test_import_adapter_made_by_peft(tmp_path, make, task_type, init):
    bb = make()
    kw = {}
    if init == "TEXT":
        bb.tokenizer.save_pretrained(tmp_path / "tok")
        kw = {
            "prompt_tuning_init_text": "sunny or rainy",
            "tokenizer_name_or_path": str(tmp_path / "tok"),
        }
    config = PromptTuningConfig(
        task_type=task_type, num_virtual_tokens=P, prompt_tuning_init=init, **kw
    )
    base = make().model  # built first: tiny models seed torch themselves
    torch.manual_seed(1234)
    pm = get_peft_model(base, config)
    initial = pm.prompt_encoder["default"].embedding.weight.detach().clone()
    with torch.no_grad():  # "training": move the prompt away from its init
        pm.prompt_encoder["default"].embedding.weight.add_(0.01)
    pm.save_pretrained(tmp_path / "a")
    saved = pm.prompt_encoder["default"].embedding.weight.detach()[:P]

    spec = "peft" if init == "TEXT" else "peft:1234"  # TEXT needs no seed
    tau = import_peft(tmp_path / "a", spec, backbone=bb)
    origin = resolve_origin(spec, read_peft(tmp_path / "a"), bb)
    assert torch.equal(origin.tensor, initial[:P])  # PEFT's init rebuilt exactly
    torch.testing.assert_close(tau.tensor, torch.full_like(tau.tensor, 0.01), rtol=0, atol=1e-6)
    assert torch.equal(tau.apply(origin).tensor, saved)  # the adapter's tensor, bit for bit

    # Round trip: export the imported prompt again, PEFT loads the same tensor.
    out = export_peft(tau, tmp_path / "b", origin=origin, backbone=bb)
    pm2 = PeftModel.from_pretrained(make().model, out)
    assert torch.equal(pm2.prompt_encoder["default"].embedding.weight.detach()[:P], saved)


def test_random_init_needs_seed(tmp_path):
    bb = tiny_llama()
    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P)
    get_peft_model(tiny_llama().model, config).save_pretrained(tmp_path / "a")
    with pytest.raises(ValueError, match=r"PromptTuningInit.RANDOM.*peft:SEED"):
        import_peft(tmp_path / "a", "peft", backbone=bb)


def test_refuses_lora_adapter(tmp_path):
    lora = LoraConfig(task_type="CAUSAL_LM", r=2, target_modules=["q_proj", "v_proj"])
    get_peft_model(tiny_llama().model, lora).save_pretrained(tmp_path / "lora")
    with pytest.raises(FormatError, match=r"lora.*'peft_type' is 'LORA', not 'PROMPT_TUNING'"):
        import_peft(tmp_path / "lora", "0", backbone=tiny_llama())


def test_refuses_mismatches(tmp_path):
    bb = tiny_llama()
    origin, prompt = _prompt(bb)
    out = export_peft(prompt, tmp_path / "a", backbone=bb)

    narrow = tiny_llama(hidden=32)  # same model name, other hidden size
    with pytest.raises(IncompatibleError, match=r"'token_dim' is 64.*hidden size 32"):
        import_peft(out, "0", backbone=narrow)
    with pytest.raises(IncompatibleError, match=r"'token_dim' is 64.*hidden size 32"):
        import_peft(out, narrow.make_origin(P, seed=0))
    with pytest.raises(IncompatibleError, match=r"'num_virtual_tokens' is 4.*has 6 tokens"):
        import_peft(out, bb.make_origin(6, seed=0))
    other = tiny_llama(seed=3)  # another model name
    with pytest.raises(IncompatibleError, match=r"'base_model_name_or_path' is 'tiny-llama-0'"):
        import_peft(out, other.make_origin(P, seed=0))
    assert import_peft(out, other.make_origin(P, seed=0), check_model=False).model == other.name
    with pytest.raises(IncompatibleError, match="hidden size 64"):
        export_peft(prompt, tmp_path / "b", backbone=narrow)

    # A config that disagrees with the weights is refused, naming the file and field.
    cfg = json.loads((out / "adapter_config.json").read_text())
    (out / "adapter_config.json").write_text(json.dumps(cfg | {"num_virtual_tokens": 5}))
    with pytest.raises(FormatError, match=r"adapter_model.safetensors.*num_virtual_tokens 5"):
        import_peft(out, origin)
    (out / "adapter_config.json").write_text(json.dumps(cfg | {"token_dim": "64"}))
    with pytest.raises(FormatError, match=r"adapter_config.json.*'token_dim'"):
        import_peft(out, origin)
    (out / "adapter_config.json").unlink()
    with pytest.raises(FormatError, match="no adapter_config.json"):
        import_peft(out, origin)


def test_refuses_pickled_weights(tmp_path):
    bb = tiny_llama()
    origin, prompt = _prompt(bb)
    out = export_peft(prompt, tmp_path / "a", backbone=bb)
    (out / "adapter_model.safetensors").rename(out / "adapter_model.bin")
    with pytest.raises(FormatError, match="pickle"):
        import_peft(out, origin)


def test_cli_export_then_import(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tpv.cli import app
    from tpv.library import Library

    bb = tiny_llama()
    origin, prompt = _prompt(bb)
    tau = TaskPromptVector.from_prompts(prompt, origin)
    monkeypatch.setenv("TPV_LIBRARY", str(tmp_path / "lib"))
    Library().add(origin, "o0")  # the origin by library name
    tau.save(tmp_path / "tau.safetensors")
    run = CliRunner().invoke
    r = run(app, ["peft", "export", str(tmp_path / "tau.safetensors"), "--origin", "o0",
                  "--out", str(tmp_path / "a"), "--task-type", "causal", "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["num_virtual_tokens"] == P
    r = run(app, ["peft", "export", str(tmp_path / "tau.safetensors"), "--origin", "o0",
                  "--out", str(tmp_path / "a"), "--task-type", "causal"])  # fmt: skip
    assert r.exit_code == 1 and "not empty" in r.output
    r = run(app, ["peft", "import", str(tmp_path / "a"), "--origin", "o0",
                  "--out", str(tmp_path / "back"), "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    back = TaskPromptVector.load(json.loads(r.output)["path"])
    assert torch.equal(back.apply(origin).tensor, prompt.tensor)
