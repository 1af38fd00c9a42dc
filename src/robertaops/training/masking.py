"""Dynamic masking for MLM (RoBERTa): a fresh mask each time a sequence is seen, drawn from an explicit generator.

BERT masked each sequence once, at preprocessing; RoBERTa draws a new mask every time the sequence enters a batch,
which is what `mask_tokens` does when called per batch. Of the ~15 % selected positions, 80 % become `<mask>`, 10 %
a random ordinary token, 10 % stay unchanged; the loss is taken at every selected position. Special tokens and
padding are never selected, and random replacements are never special tokens.

All draws come from the `torch.Generator` passed in (on the CPU, whatever the training device), so the masks
depend only on the generator's state: saving that state makes resumed runs see the very same masks.
"""

from __future__ import annotations

import torch

IGNORE = -100  # label of positions without loss (torch's cross_entropy default ignore_index)


class Masker:
    """Holds the vocabulary facts masking needs; call it on a (B, T) batch of token ids."""

    def __init__(self, vocab_size: int, mask_id: int, special_ids: tuple[int, ...] | list[int],
                 mlm_probability: float = 0.15, mask_fraction: float = 0.8, random_fraction: float = 0.1):
        if not 0 < mlm_probability < 1:
            raise ValueError(f"mlm_probability must be in (0, 1), got {mlm_probability}")
        if mask_fraction < 0 or random_fraction < 0 or mask_fraction + random_fraction > 1:
            raise ValueError(f"mask_fraction {mask_fraction} + random_fraction {random_fraction} must be within [0, 1]")
        self.mask_id = mask_id
        self.p = mlm_probability
        self.p_mask = mask_fraction
        # P(random | not <mask>): 0.1 / 0.2 = 0.5 of the remaining selected positions
        self.p_random_rest = random_fraction / (1 - mask_fraction) if mask_fraction < 1 else 0.0
        self.is_special = torch.zeros(vocab_size, dtype=torch.bool)  # (V,)
        self.is_special[list(special_ids)] = True
        self.ordinary = torch.nonzero(~self.is_special).squeeze(1)  # (V - S,) ids a random replacement may take

    def __call__(self, ids: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) long CPU ids -> (masked input ids (B, T), labels (B, T) with IGNORE where no loss)."""
        ids = ids.long()
        candidate = ~self.is_special[ids]  # (B, T) specials and padding are never masked
        selected = (torch.rand(ids.shape, generator=generator) < self.p) & candidate  # (B, T)
        labels = torch.where(selected, ids, torch.full_like(ids, IGNORE))  # (B, T)
        roll = torch.rand(ids.shape, generator=generator)  # (B, T) one draw decides mask / random / keep
        to_mask = selected & (roll < self.p_mask)  # (B, T)
        to_random = selected & ~to_mask & (torch.rand(ids.shape, generator=generator) < self.p_random_rest)
        random_ids = self.ordinary[torch.randint(len(self.ordinary), ids.shape, generator=generator)]  # (B, T)
        out = torch.where(to_mask, torch.full_like(ids, self.mask_id), ids)
        out = torch.where(to_random, random_ids, out)  # (B, T)
        return out, labels
