"""The code lookup of taming VQGAN and LlamaGen VQ as a drop-in for diffusers' ``VectorQuantizer``.

Two options on top of diffusers' quantizer, both visible in the loss or the forward pass:

- ``l2_norm`` (LlamaGen): the latent vectors and the codebook are l2-normalised before
  the nearest-neighbour search (a cosine lookup on the unit sphere), and the decoder
  receives the normalised code.
- ``legacy`` (taming, diffusers' default): beta multiplies the *codebook* term and the
  commitment term has weight 1, the reverse of VQ-VAE. LlamaGen (``legacy=False``) puts
  beta on the commitment term.

Distances are ``|z|^2 + |e|^2 - 2 z.e`` (the expansion both references use, so argmin
ties break the same way), computed in fp32 without autocast, in chunks of rows. The
codebook stays ``embedding.weight``, so checkpoints keep the key ``quantize.embedding.weight``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.vae import VectorQuantizer

#: rows of the distance matrix computed at once (bounds memory for 16384-code books)
_CHUNK = 4096


class CodebookQuantizer(VectorQuantizer):
    """Nearest-code quantiser: ``forward(z) -> (z_q, loss, (None, None, indices))`` like diffusers'."""

    def __init__(self, n_e: int, vq_embed_dim: int, beta: float = 0.25, legacy: bool = True, l2_norm: bool = False):
        super().__init__(n_e, vq_embed_dim, beta=beta, remap=None, sane_index_shape=False, legacy=legacy)
        self.l2_norm = l2_norm
        if l2_norm:
            with torch.no_grad():
                self.embedding.weight.copy_(F.normalize(self.embedding.weight, dim=-1))

    def codebook(self) -> torch.Tensor:
        """The code vectors the decoder sees (normalised for ``l2_norm``)."""
        weight = self.embedding.weight
        return F.normalize(weight, dim=-1) if self.l2_norm else weight

    def prepare(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) latent -> (B, h, w, C) vectors as they are compared with the codebook."""
        z = z.permute(0, 2, 3, 1).contiguous()
        return F.normalize(z, dim=-1) if self.l2_norm else z

    def nearest(self, vectors: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code of each (..., C) vector (already ``prepare``d), in fp32."""
        flat = vectors.reshape(-1, self.vq_embed_dim)
        with torch.autocast(flat.device.type, enabled=False):
            codebook = self.codebook().detach()
            compute = torch.float64 if codebook.dtype == torch.float64 else torch.float32
            codebook = codebook.to(compute)
            squared = codebook.pow(2).sum(1)
            out = []
            for rows in flat.detach().to(compute).split(_CHUNK):
                distance = rows.pow(2).sum(1, keepdim=True) + squared - 2 * rows @ codebook.t()
                out.append(distance.argmin(1))
        return torch.cat(out).reshape(vectors.shape[:-1]) if out else flat.new_zeros(vectors.shape[:-1], dtype=torch.long)

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) latent -> (B, h, w) long code indices."""
        return self.nearest(self.prepare(z))

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, h, w) indices -> (B, C, h, w) code vectors."""
        return self.gather(indices).permute(0, 3, 1, 2).contiguous()

    def gather(self, indices: torch.Tensor) -> torch.Tensor:
        """(...) indices -> (..., C) code vectors. ``index_select``, not ``codebook[indices]``: the
        same values, but its backward (``index_add_``) sums each code's gradient in a fixed order,
        where advanced indexing's (``index_put_`` with accumulate) adds them atomically from
        several CPU threads, so two runs of the same training would differ in the last bits."""
        return self.codebook().index_select(0, indices.reshape(-1)).reshape(*indices.shape, self.vq_embed_dim)

    def loss_terms(self, z: torch.Tensor, z_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(codebook term ``|z_q - sg(z)|^2``, commitment term ``|sg(z_q) - z|^2``), means."""
        return (z_q - z.detach()).pow(2).mean(), (z_q.detach() - z).pow(2).mean()

    def forward(self, z: torch.Tensor):
        vectors = self.prepare(z)
        index = self.nearest(vectors)
        z_q = self.gather(index).to(vectors.dtype)
        codebook_term, commitment_term = self.loss_terms(vectors, z_q)
        if self.legacy:
            loss = commitment_term + self.beta * codebook_term
        else:
            loss = codebook_term + self.beta * commitment_term
        z_q = vectors + (z_q - vectors).detach()  # straight-through estimator
        return z_q.permute(0, 3, 1, 2).contiguous(), loss, (None, None, index.reshape(-1))

    def get_codebook_entry(self, indices: torch.Tensor, shape: tuple[int, ...] | None) -> torch.Tensor:
        """diffusers' signature: flat indices and ``shape`` = (B, h, w, C) -> (B, C, h, w)."""
        z_q = self.gather(indices.reshape(-1))
        if shape is None:
            return z_q
        return z_q.view(shape).permute(0, 3, 1, 2).contiguous()

    def extra_repr(self) -> str:
        return f"n_e={self.n_e}, dim={self.vq_embed_dim}, beta={self.beta}, legacy={self.legacy}, l2_norm={self.l2_norm}"
