"""LDM reference numerics for diffusers conv autoencoders.

diffusers' ``AutoencoderKL`` / ``VQModel`` built with :mod:`tokbench.nn.conv_layouts` compute the
same function as the LDM / taming modules, but not the same fp32 bits: the fused SiLU kernel
rounds differently from ``x * sigmoid(x)``, and diffusers applies the attention projections as
``nn.Linear`` on (B, HW, C) with SDPA where the reference uses 1x1 convolutions and two ``bmm``.
Through a 70 M-parameter VAE these ulp-level differences grow to ~3e-5. :func:`use_ldm_numerics`
swaps in the reference's op order (no weights change), which makes fp32 outputs bit-identical to
the reference code (``benchmarks/vavae_reference_parity.py``). Under autocast, or in other
dtypes, attention runs through ``scaled_dot_product_attention`` (fused kernels on GPU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class LDMSwish(torch.nn.Module):
    """LDM's ``x * sigmoid(x)``: equal to ``nn.SiLU`` in exact arithmetic, but the fused SiLU
    kernel rounds differently (1 ulp) and that grows through the network (see LDMAttentionProcessor)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


def use_ldm_numerics(model: torch.nn.Module) -> torch.nn.Module:
    """Make a diffusers conv autoencoder compute like the LDM reference code: ``LDMSwish`` for
    every ``nn.SiLU`` and :class:`LDMAttentionProcessor` for every attention (no weight changes)."""
    from diffusers.models.attention_processor import Attention

    for module in list(model.modules()):
        if isinstance(module, Attention):
            module.set_processor(LDMAttentionProcessor())
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.SiLU):
                setattr(module, name, LDMSwish())
    return model


class LDMAttentionProcessor:
    """diffusers attention processor computing LDM's single-head ``AttnBlock`` as the reference
    does: q, k, v and the output projection as 1x1 convolutions on the (B, C, H, W) map, then two
    ``bmm`` with the softmax between them in fp32, or ``scaled_dot_product_attention`` under
    autocast and in other dtypes."""

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs) -> torch.Tensor:
        residual = hidden_states
        batch, channels, height, width = hidden_states.shape
        h = attn.group_norm(hidden_states)

        def conv(linear: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
            return F.conv2d(x, linear.weight[:, :, None, None], linear.bias)

        q, k, v = (conv(layer, h).reshape(batch, channels, height * width) for layer in (attn.to_q, attn.to_k, attn.to_v))
        if q.dtype == torch.float32 and not torch.is_autocast_enabled(q.device.type):
            # the reference's exact op order (bmm on (B, HW, C) x (B, C, HW)), so fp32 matches it bit for bit
            weights = torch.softmax(torch.bmm(q.transpose(1, 2), k) * channels ** -0.5, dim=2)
            out = torch.bmm(v, weights.transpose(1, 2))
        else:
            out = F.scaled_dot_product_attention(q.transpose(1, 2)[:, None], k.transpose(1, 2)[:, None],
                                                 v.transpose(1, 2)[:, None])[:, 0].transpose(1, 2)
        out = out.reshape(batch, channels, height, width)
        out = conv(attn.to_out[0], out)
        return (out + residual) / attn.rescale_output_factor
