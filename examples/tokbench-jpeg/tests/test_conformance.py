"""tokbench's conformance suite on the JPEG baseline."""

from tokbench.testing.conformance import TokenizerConformance
from tokbench_jpeg.params import JpegParams
from tokbench_jpeg.tokenizer import JpegTokenizer


class TestJpeg(TokenizerConformance):
    image_size = 32
    dtype_atol = 1e-2  # the latent is a uint8 JPEG image: float64 may round one pixel differently (1 LSB = 0.008)

    def make_tokenizer(self):
        return JpegTokenizer(JpegParams(factor=2, quality=75))

    def make_other_tokenizer(self):
        return JpegTokenizer(JpegParams(factor=2, quality=20))


def test_lower_quality_loses_more():
    import torch

    generator = torch.Generator().manual_seed(0)
    images = torch.nn.functional.interpolate(torch.rand(2, 3, 8, 8, generator=generator), size=64, mode="bilinear")

    def error(quality):
        tokenizer = JpegTokenizer(JpegParams(factor=1, quality=quality))
        return float((tokenizer.decode(tokenizer.encode(images)) - images).abs().mean())

    assert error(95) < error(30) < error(5)
