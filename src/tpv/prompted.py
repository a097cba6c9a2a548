"""A frozen model with a trainable soft prompt in front: loss, label scores and generation.

The same prompt tensor is used for training and for every kind of evaluation, for decoder-only
and encoder-decoder models alike (PEFT's seq2seq prompt tuning trains an encoder and a decoder
half and generates with one; tpv has one prompt, in front of the encoder input).
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn

from tpv import fastpath, packing
from tpv.backbone import Backbone
from tpv.data import IGNORE, Batch


class PromptedModel(nn.Module):
    """`prompt` is a (P, hidden) tensor (one trainable prompt for every input), or a prompt
    module that makes one prompt per input from its token embeddings (`tpv.attempt`): called
    as module(input_embeds (B, T, d), pool_mask (B, T)) -> (B, P, d)."""

    def __init__(self, backbone: Backbone, prompt: torch.Tensor | nn.Module):
        super().__init__()
        self.model = backbone.model  # frozen; a submodule so Accelerate moves it with the prompt
        self.seq2seq = backbone.is_encoder_decoder
        self.pad_id = int(backbone.tokenizer.pad_token_id)
        self.prompt_module: nn.Module | None = None
        if isinstance(prompt, nn.Module):
            self.prompt_module = prompt.to(backbone.device)
            self.prompt = prompt.target  # the same Parameter: its device, its P x hidden shape
        else:
            # The prompt stays float32 even when the model runs in bf16: small updates survive.
            self.prompt = nn.Parameter(prompt.detach().clone().float().to(backbone.device))
        params = inspect.signature(self.model.forward).parameters
        self._keep_logits = "logits_to_keep" in params
        # transformers 5 names the KV cache argument `cache` (4.x: `past_key_values`).
        self._cache_arg = next((a for a in ("cache", "past_key_values") if a in params), None)
        self._window = packing.sliding_window(self.model.config)

    @property
    def num_tokens(self) -> int:
        return int(self.prompt.shape[0])

    # --- what trains ------------------------------------------------------------------------
    def param_groups(self, lr: float, module_lr: float | None = None) -> list[dict]:
        """Optimiser parameter groups: the prompt, or the prompt module's own groups."""
        if self.prompt_module is not None:
            return self.prompt_module.param_groups(lr, module_lr)
        return [{"params": [self.prompt], "lr": lr}]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Every trained tensor by name ("prompt" for a plain prompt)."""
        if self.prompt_module is not None:
            return self.prompt_module.trainable_state()
        return {"prompt": self.prompt}

    @torch.no_grad()
    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        for name, param in self.trainable_state().items():
            param.copy_(state[name].to(param.device, param.dtype))

    # --- inputs -----------------------------------------------------------------------------
    def _inputs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pool_mask: torch.Tensor | None = None,
    ):
        """[prompt][tokens] embeddings, the mask, and position ids that skip left padding.
        A prompt module sees the input tokens `pool_mask` marks (default: the attention mask;
        training rows of a decoder leave out the answer)."""
        emb = self.model.get_input_embeddings()(input_ids)
        B = input_ids.shape[0]
        if self.prompt_module is not None:
            pool = attention_mask if pool_mask is None else pool_mask
            prompt = self.prompt_module(emb, pool)
        else:
            prompt = self.prompt.to(emb.dtype).unsqueeze(0).expand(B, -1, -1)
        embeds = torch.cat([prompt, emb], dim=1)
        ones = attention_mask.new_ones((B, self.num_tokens))
        mask = torch.cat([ones, attention_mask], dim=1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return embeds, mask, positions

    @property
    def can_share_prefix(self) -> bool:
        """Decoder models with a KV cache can run the shared [prompt][prefix] once per batch
        (not with a per-input prompt: no two rows share their prompt)."""
        return not self.seq2seq and self._cache_arg is not None and self.prompt_module is None

    def packs(self, attention_mask: torch.Tensor, prefix_len: int) -> bool:
        """Whether rows behind a shared [prompt][prefix] of `prefix_len` tokens run packed
        (tpv.packing: the fast path, when it saves padding)."""
        return (
            self._keep_logits
            and self.can_share_prefix
            and packing.worth_packing(attention_mask, prefix_len, self._window)
        )

    def _run_decoder(
        self,
        input_ids,
        attention_mask,
        keep: int,
        prefix_ids=None,
        use_cache: bool = False,
        pool_mask=None,
    ):
        """Logits of the last `keep` positions only (the LM head is costly over a large vocab),
        the KV cache when asked, and the attention mask over everything before.

        With `prefix_ids`, [prompt][prefix] runs once at batch size 1 and every row continues
        from copies of its KV cache: the same numbers as running [prompt][prefix][row] per row
        (gradients flow back through the cache to the prompt), for a fraction of the work when
        the chat template and instruction are most of each input.
        """
        if prefix_ids is None:
            embeds, mask, positions = self._inputs(input_ids, attention_mask, pool_mask)
            out = self.model(
                inputs_embeds=embeds,
                attention_mask=mask,
                position_ids=positions,
                use_cache=use_cache,
                **self._keep(embeds.shape[1] - keep, embeds.shape[1], embeds.device),
            )
            return out.logits[:, -keep:], (out[self._cache_arg] if use_cache else None), mask
        if self.prompt_module is not None:
            raise ValueError("a per-input prompt cannot share a prefix: collate without it")
        emb = self.model.get_input_embeddings()
        B = input_ids.shape[0]
        shared = torch.cat([self.prompt.to(emb.weight.dtype), emb(prefix_ids)], dim=0)[None]
        n = shared.shape[1]
        # No logits for the prefix: nothing is predicted there.
        head = self.model(inputs_embeds=shared, use_cache=True, **self._keep(0, 0, shared.device))
        cache = head[self._cache_arg]
        if not use_cache and self.packs(attention_mask, n):
            rows = packing.pack_rows(input_ids, attention_mask, keep, n, emb.weight.dtype)
            out = self.model(
                inputs_embeds=emb(rows.ids),
                attention_mask=rows.mask,
                position_ids=rows.positions,
                use_cache=True,
                **{self._cache_arg: cache},
                logits_to_keep=rows.keep_index,
            )
            return out.logits.view(B, keep, -1), None, None
        cache.batch_repeat_interleave(B)
        mask = torch.cat([attention_mask.new_ones((B, n)), attention_mask], dim=1)
        positions = n + (attention_mask.cumsum(-1) - 1).clamp(min=0)
        T = input_ids.shape[1]
        out = self.model(
            inputs_embeds=emb(input_ids),
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **{self._cache_arg: cache},
            **self._keep(T - keep, T, input_ids.device),
        )
        return out.logits[:, -keep:], (out[self._cache_arg] if use_cache else None), mask

    def _keep(self, start: int, stop: int, device) -> dict:
        """`logits_to_keep` as explicit positions: the head then sees a contiguous (B, keep, d)
        tensor and runs as one matmul (an int keeps a strided slice, which torch runs as a
        batched matmul over B copies of the vocabulary matrix: ~10x slower on CPU)."""
        if not self._keep_logits:
            return {}
        if not fastpath.enabled():  # the plain path, as it always ran
            return {"logits_to_keep": max(stop - start, 1)}
        return {"logits_to_keep": torch.arange(start, stop, device=device)}

    def _decoder_logits(
        self, input_ids, attention_mask, keep: int, prefix_ids=None, pool_mask=None
    ) -> torch.Tensor:
        out = self._run_decoder(input_ids, attention_mask, keep, prefix_ids, pool_mask=pool_mask)
        return out[0]

    @staticmethod
    def _input_only(attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Decoder rows end with their answer (labels right-aligned in the last K columns): the
        mask of the input tokens alone, so a per-input prompt never sees the answer."""
        K = labels.shape[1]
        pool = attention_mask.clone()
        pool[:, -K:] = pool[:, -K:] * (labels == IGNORE).to(pool.dtype)
        return pool

    def _seq2seq_logits(
        self, input_ids, attention_mask, labels, encoder_hidden=None
    ) -> torch.Tensor:
        embeds, mask, _ = self._inputs(input_ids, attention_mask)
        kw = (
            {"encoder_outputs": (encoder_hidden,)}
            if encoder_hidden is not None
            else {"inputs_embeds": embeds}
        )
        # T5 shifts `labels` right into decoder inputs itself (IGNORE becomes the pad id).
        out = self.model(attention_mask=mask, labels=labels, use_cache=False, **kw)
        return out.logits

    # --- training ---------------------------------------------------------------------------
    def forward(self, input_ids, attention_mask, labels, prefix_ids=None) -> torch.Tensor:
        """Per-example loss: mean cross-entropy over that example's answer tokens.

        A per-example mean (then a batch mean) keeps the loss the same whether a global batch
        is seen by one process or split across several.
        """
        if self.seq2seq:
            logits = self._seq2seq_logits(input_ids, attention_mask, labels)
        else:
            K = labels.shape[1]
            pool = self._input_only(attention_mask, labels) if self.prompt_module else None
            # Position t predicts token t+1: the K answer tokens are predicted by the K positions
            # before the last one.
            logits = self._decoder_logits(
                input_ids, attention_mask, K + 1, prefix_ids, pool_mask=pool
            )[:, :-1]
        tok_loss = F.cross_entropy(
            logits.float().transpose(1, 2), labels, ignore_index=IGNORE, reduction="none"
        )
        counts = (labels != IGNORE).sum(1).clamp(min=1)
        return tok_loss.sum(1) / counts

    # --- evaluation -------------------------------------------------------------------------
    @torch.inference_mode()
    def score_labels(self, batch: Batch, label_ids: list[tuple[int, ...]]) -> torch.Tensor:
        """(B, C) log-probability of each label's token sequence after the prompt and input.

        Single-token labels (the common case) take one forward per batch; longer labels on a
        decoder share the input's KV cache; T5 encodes once and decodes each label.
        """
        if not self.seq2seq and all(len(ids) == 1 for ids in label_ids):
            logits = self._decoder_logits(
                batch.input_ids, batch.attention_mask, 1, batch.prefix_ids
            )[:, -1]
            logp = logits.float().log_softmax(-1)
            return logp[:, [ids[0] for ids in label_ids]]
        if not self.seq2seq and self._cache_arg is not None:
            return self._score_decoder_cached(batch, label_ids)
        return self._score_expanded(batch, label_ids)

    def _score_decoder_cached(self, batch: Batch, label_ids: list[tuple[int, ...]]) -> torch.Tensor:
        """Multi-token labels on a decoder: run [prompt][input] once, keep its KV cache, then
        score every label's remaining tokens against copies of that cache. The input (the long
        part) is computed once per example instead of once per label."""
        B, C = len(batch), len(label_ids)
        K = max(len(ids) for ids in label_ids)
        dev = batch.input_ids.device
        logits, cache, mask = self._run_decoder(
            batch.input_ids, batch.attention_mask, 1, batch.prefix_ids, use_cache=True
        )
        first = logits[:, -1].float().log_softmax(-1)
        scores = first[:, [ids[0] for ids in label_ids]]  # (B, C)
        if K == 1:
            return scores
        cache.batch_repeat_interleave(C)
        # Row b*C + c continues example b with label c: inputs ids[:-1] predict ids[1:];
        # right padding after a label's end cannot affect its (causal) scores.
        cont = torch.full((B * C, K - 1), self.pad_id, dtype=torch.long, device=dev)
        cmask = torch.zeros((B * C, K - 1), dtype=torch.long, device=dev)
        targets = torch.full((B * C, K - 1), IGNORE, dtype=torch.long, device=dev)
        for c, ids in enumerate(label_ids):
            k = len(ids) - 1
            if k:
                cont[c::C, :k] = torch.tensor(ids[:-1], device=dev)
                cmask[c::C, :k] = 1
                targets[c::C, :k] = torch.tensor(ids[1:], device=dev)
        full_mask = torch.cat([mask.repeat_interleave(C, 0), cmask], dim=1)
        start = mask.sum(1).repeat_interleave(C, 0)  # next position after each prefix
        pos = start[:, None] + torch.arange(K - 1, device=dev)
        out = self.model(
            inputs_embeds=self.model.get_input_embeddings()(cont),
            attention_mask=full_mask,
            position_ids=pos,
            use_cache=True,
            **{self._cache_arg: cache},
        )
        logp = out.logits.float().log_softmax(-1)
        tok = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        tok = tok.masked_fill(targets == IGNORE, 0.0)
        return scores + tok.sum(-1).view(B, C)

    def _score_expanded(self, batch: Batch, label_ids: list[tuple[int, ...]]) -> torch.Tensor:
        """Every (example, label) pair as its own full row: simple, exact, C times the work."""
        if batch.prefix_ids is not None:
            raise ValueError("full-row scoring needs batches collated without share_prefix")
        B, C = len(batch), len(label_ids)
        K = max(len(ids) for ids in label_ids)
        dev = batch.input_ids.device
        if self.seq2seq:
            # Encode once per example; the decoder scores every label against the same encoding.
            embeds, mask, _ = self._inputs(batch.input_ids, batch.attention_mask)
            hidden = self.model.get_encoder()(
                inputs_embeds=embeds, attention_mask=mask
            ).last_hidden_state
            labels = torch.full((B * C, K), IGNORE, dtype=torch.long, device=dev)
            for c, ids in enumerate(label_ids):
                labels[c::C, : len(ids)] = torch.tensor(ids, device=dev)
            logits = self._seq2seq_logits(
                batch.input_ids.repeat_interleave(C, 0),
                batch.attention_mask.repeat_interleave(C, 0),
                labels,
                encoder_hidden=hidden.repeat_interleave(C, 0),
            )
        else:
            T = batch.input_ids.shape[1]
            ids_rows = torch.full((B * C, T + K), self.pad_id, dtype=torch.long, device=dev)
            mask_rows = torch.zeros((B * C, T + K), dtype=torch.long, device=dev)
            labels = torch.full((B * C, K), IGNORE, dtype=torch.long, device=dev)
            for c, ids in enumerate(label_ids):
                k = len(ids)
                # Left-pad the shorter answers so every row still ends at the last column.
                ids_rows[c::C, K - k : K - k + T] = batch.input_ids
                mask_rows[c::C, K - k : K - k + T] = batch.attention_mask
                ids_rows[c::C, T + K - k :] = torch.tensor(ids, device=dev)
                mask_rows[c::C, T + K - k :] = 1
                labels[c::C, K - k :] = torch.tensor(ids, device=dev)
            pool = self._input_only(mask_rows, labels) if self.prompt_module else None
            logits = self._decoder_logits(ids_rows, mask_rows, K + 1, pool_mask=pool)[:, :-1]
        logp = logits.float().log_softmax(-1)
        tok = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        tok = tok.masked_fill(labels == IGNORE, 0.0)
        return tok.sum(-1).view(B, C)

    @torch.inference_mode()
    def generate(self, batch: Batch, max_new_tokens: int = 16) -> torch.Tensor:
        """Greedy continuation token ids (B, <= max_new_tokens) after the prompt and input."""
        if batch.prefix_ids is not None:
            raise ValueError("generation needs batches collated without share_prefix")
        embeds, mask, _ = self._inputs(batch.input_ids, batch.attention_mask)
        return self.model.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=self.pad_id,
        )
