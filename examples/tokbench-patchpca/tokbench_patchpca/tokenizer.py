"""Patch PCA: each p x p RGB patch is projected on the k leading principal components of the
training patches (the latent, k x H/p x W/p) and decoded by the transposed projection."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from tokbench.api import Capability, LatentSpec, Tokenizer
from tokbench.hashing import state_dict_fingerprint
from tokbench_patchpca.fit import fit_basis
from tokbench_patchpca.params import PatchPCAParams

FIT_BATCH = 64


class Basis(torch.nn.Module):
    def __init__(self, mean: torch.Tensor, basis: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.clone())
        self.register_buffer("basis", basis.clone())


class PatchPCATokenizer(Tokenizer):
    capabilities = frozenset({Capability.ENCODE, Capability.DECODE})
    native_resolution = 64

    def __init__(self, params: PatchPCAParams, state: dict[str, torch.Tensor]):
        self.params = params
        self.pca = Basis(state["mean"], state["basis"])

    def latent_spec(self, image_size: int) -> LatentSpec:
        p = self.params.patch
        return LatentSpec(channels=self.params.components, height=image_size // p, width=image_size // p, downsample=p)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        p, (b, _, h, w) = self.params.patch, images.shape
        with torch.no_grad():
            patches = F.unfold(images.to(self.pca.basis.dtype), p, stride=p)  # (B, 3p^2, L)
            codes = self.pca.basis.T @ (patches - self.pca.mean[:, None])  # (B, k, L)
            return codes.reshape(b, self.params.components, h // p, w // p)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        p, (b, k, h, w) = self.params.patch, latents.shape
        with torch.no_grad():
            patches = self.pca.basis @ latents.reshape(b, k, h * w) + self.pca.mean[:, None]
            return F.fold(patches, (h * p, w * p), p, stride=p).clamp(0, 1)

    def fingerprint(self) -> str:
        return state_dict_fingerprint(self.pca.state_dict(), extra={"patch": self.params.patch})

    def modules(self) -> Sequence[torch.nn.Module]:
        return [self.pca]


def build(params: PatchPCAParams, context) -> PatchPCATokenizer:
    """The factory: load a given basis, or fit one once in the store and share it."""
    if params.basis_file:
        return PatchPCATokenizer(params, torch.load(params.basis_file, map_location="cpu"))
    dataset = context.suite_dataset(params.train_dataset)  # the suite's definition, by name
    count = min(params.fit_images, len(dataset))
    # everything the fit depends on; tokbench adds the digest of the declared training code (fit.py)
    key = {"dataset": dataset.fingerprint(), "patch": params.patch, "components": params.components, "images": count}

    def fit(directory):
        batches = (images for images, _, _ in context.batches(dataset, FIT_BATCH, indices=range(count)))
        state = fit_basis(context.track(batches, "patch-PCA fit", total=math.ceil(count / FIT_BATCH)),
                          params.patch, params.components)
        torch.save(state, directory / "basis.pt")
        return {"explained_variance": float(state["explained_variance"])}  # into the artifact's manifest

    path = context.cached(key, kind="patchpca-basis", producer=fit,
                          label=f"patch-PCA basis p{params.patch} k{params.components} on {params.train_dataset}")
    return PatchPCATokenizer(params, torch.load(path / "basis.pt", map_location="cpu"))
