"""tokbench's conformance suite on patch PCA, and the fit itself."""

import torch

from tokbench.testing.conformance import TokenizerConformance
from tokbench_patchpca.fit import fit_basis
from tokbench_patchpca.params import PatchPCAParams
from tokbench_patchpca.tokenizer import PatchPCATokenizer


def smooth_images(count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    small = torch.rand(count, 3, 4, 4, generator=generator)
    return (torch.nn.functional.interpolate(small, size=32, mode="bilinear") * 255).round().to(torch.uint8)


def fitted(components: int, seed: int = 0) -> PatchPCATokenizer:
    params = PatchPCAParams(patch=4, components=components, train_dataset="train")
    return PatchPCATokenizer(params, fit_basis([smooth_images(8, seed)], 4, components))


class TestPatchPCA(TokenizerConformance):
    image_size = 32

    def make_tokenizer(self):
        return fitted(12)

    def make_other_tokenizer(self):
        return fitted(12, seed=1)


def test_more_components_reconstruct_better_and_all_of_them_exactly():
    images = smooth_images(4, seed=2).float() / 255

    def error(components):
        tokenizer = fitted(components)
        return float((tokenizer.decode(tokenizer.encode(images)) - images).abs().mean())

    assert error(48) < 1e-5 < error(12) < error(3)
