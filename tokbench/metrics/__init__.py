"""Metric implementations: FID feature extractor, Fréchet distance / KID, PSNR / SSIM, LPIPS.

Import the submodules directly (``tokbench.metrics.frechet`` ...); this package
deliberately imports nothing heavy so that listing plugins never pulls in torch.
"""
