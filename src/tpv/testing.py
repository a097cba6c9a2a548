"""Tiny models and a synthetic task, built from configs with no download.

Used by the fast tests and the benchmark smoke test; handy to try the API in seconds.
"""

from __future__ import annotations

import random

import torch

from tpv.backbone import Backbone
from tpv.tasks.base import Example, Task

KEYWORDS = {"yes": ("sunny", "bright", "warm"), "no": ("rainy", "dark", "cold")}
FILLER = tuple(f"w{i}" for i in range(40))
SPECIAL = ("<pad>", "</s>", "<unk>", "<s>")
TEMPLATE_WORDS = (
    "Classify",
    "the",
    "text",
    "into",
    "labels",
    ":",
    ",",
    ".",
    "Reply",
    "only",
    "corresponding",
    "label",
    "keyword",
    "maybe",
    "and",
)


def tiny_tokenizer(chat_template: str | None = None):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = list(SPECIAL) + list(TEMPLATE_WORDS) + list(FILLER) + ["yes", "no"]
    words += [w for ws in KEYWORDS.values() for w in ws]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        bos_token="<s>",
    )
    if chat_template:
        fast.chat_template = chat_template
    return fast


def tiny_llama(
    seed: int = 0, hidden: int = 64, layers: int = 2, chat_template: str | None = None
) -> Backbone:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer(chat_template)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
        tie_word_embeddings=True,
        # Wider than the 0.02 default: a random model that small only reacts to a
        # soft prompt (and so can learn a task from one) with larger weights.
        initializer_range=0.2,
    )
    return Backbone(LlamaForCausalLM(config).eval(), tok, name=f"tiny-llama-{seed}")


def tiny_gemma3(seed: int = 0, window: int = 64, chat_template: str | None = None) -> Backbone:
    """Gemma 3's layout (sliding-window layers, scaled embeddings, q/k norms): its attention
    masks are built per layer type, a case the packed rows (tpv.packing) must respect."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tok = tiny_tokenizer(chat_template)
    torch.manual_seed(seed)
    config = Gemma3TextConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=window,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
        initializer_range=0.2,
    )
    return Backbone(Gemma3ForCausalLM(config).eval(), tok, name=f"tiny-gemma3-{seed}")


def tiny_t5(seed: int = 0, d_model: int = 128, layers: int = 2) -> Backbone:
    from transformers import T5Config, T5ForConditionalGeneration

    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(tok),
        d_model=d_model,
        d_kv=16,
        d_ff=2 * d_model,
        num_layers=layers,
        num_heads=4,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.pad_token_id,
        dropout_rate=0.0,
    )
    return Backbone(T5ForConditionalGeneration(config).eval(), tok, name=f"tiny-t5-{seed}")


def keyword_task(
    n_train: int = 64,
    n_val: int = 32,
    n_test: int = 32,
    seed: int = 0,
    length: int | tuple[int, int] = 6,
    template: str | None = "{text} label :",
    name: str = "keyword",
    flip: bool = False,
) -> Task:
    """Label "yes"/"no" set by one keyword hidden among filler words: learnable by a prompt.
    `flip` swaps what the keywords mean: a different task on the same kind of input.
    `length` (lo, hi): every input has a length drawn from lo..hi (rows that need padding)."""

    def rows(n: int, rng: random.Random) -> list[Example]:
        out = []
        for i in range(n):
            label = i % 2
            size = length if isinstance(length, int) else rng.randint(*length)
            words = [rng.choice(FILLER) for _ in range(size - 1)]
            words.insert(rng.randrange(size), rng.choice(KEYWORDS[("yes", "no")[label]]))
            out.append(Example({"text": " ".join(words)}, 1 - label if flip else label))
        rng.shuffle(out)
        return out

    def loader() -> dict[str, list[Example]]:
        rng = random.Random(seed)
        return {
            "train": rows(n_train, rng),
            "validation": rows(n_val, rng),
            "test": rows(n_test, rng),
        }

    return Task(
        name=name,
        input_fields=("text",),
        labels=("yes", "no"),
        metric="accuracy",
        source="synthetic",
        template=template,
        loader=loader,
    )


def keyword_grid_tasks(n_train: int = 48, n_val: int = 16, n_test: int = 16) -> dict:
    """The tiny experiment grids' tasks by name (factories): two sources that need opposite
    prompts (kw, kw_flip) and a target of the same kind (kw_target)."""
    sizes = {"n_train": n_train, "n_val": n_val, "n_test": n_test}
    return {
        "kw": lambda: keyword_task(name="kw", **sizes),
        "kw_flip": lambda: keyword_task(name="kw_flip", flip=True, seed=1, **sizes),
        "kw_target": lambda: keyword_task(name="kw_target", seed=2, **sizes),
    }


def keyword_grid_config(out, name: str = "tiny", **sections) -> dict:
    """A tiny experiment grid over keyword_grid_tasks (raw TOML-shaped dict): 4-token prompts,
    2 origins, 6 source steps; `sections` add or replace [multitask], [fewshot], ..."""
    return {
        "experiment": {
            "name": name,
            "out": str(out),
            "num_tokens": 4,
            "origin_seeds": [0, 1],
            "sources": ["kw", "kw_flip"],
            "eval_examples": 16,
        },
        "train": {"max_steps": 6, "batch_size": 8, "eval_every": 3},
    } | sections


def phrase_task(n_train: int = 64, n_val: int = 32, n_test: int = 32, seed: int = 0) -> Task:
    """A generation task: write the three words of the hidden keyword's group ("sunny bright
    warm" or "rainy dark cold"), scored by ROUGE-L; a multi-token free-text target that a
    prompt can learn."""
    base = keyword_task(n_train, n_val, n_test, seed)
    phrases = tuple(" ".join(ws) for ws in KEYWORDS.values())

    def loader() -> dict[str, list[Example]]:
        return {
            split: [Example(ex.fields, label=-1, answers=(phrases[ex.label],)) for ex in rows]
            for split, rows in base.splits.items()
        }

    return Task(
        name="phrase",
        input_fields=("text",),
        labels=(),
        metric="rouge_l",
        source="synthetic",
        template="{text} label :",
        loader=loader,
        max_new_tokens=6,
    )
