"""Released checkpoints this plugin knows, and the tiny preset's default architecture (no torch).

The taming models are distributed as a Heidelberg heibox folder each (``ckpts/last.ckpt``
and ``configs/model.yaml``), not on the Hugging Face hub, so they are never fetched here:
users download them once and name the file in ``checkpoint``. LlamaGen's VQ-16 is a hub
file and is read from the hub cache (or downloaded unless ``HF_HUB_OFFLINE`` is set).
"""

from __future__ import annotations

from dataclasses import dataclass

FORMATS = ("taming", "llamagen")
#: prefix of a hub file reference in ``checkpoint``: ``hf:<owner>/<name>/<file in the repo>``
HUB_PREFIX = "hf:"


@dataclass(frozen=True)
class Released:
    """A released checkpoint: its format, the sizes it must have and where it is published."""

    format: str
    codebook_size: int
    codebook_dim: int
    description: str
    #: heibox folder (taming) or hub reference (LlamaGen)
    location: str
    #: official file names inside the download
    files: tuple[str, ...]

    def how_to_get(self) -> str:
        if self.location.startswith(HUB_PREFIX):
            hub_id, _, filename = self.location[len(HUB_PREFIX):].rpartition("/")
            return (
                f"download it on a machine with internet: `huggingface-cli download {hub_id} {filename} --local-dir ./weights` "
                f"(https://huggingface.co/{hub_id}/resolve/main/{filename}), copy it here and set `checkpoint: ./weights/{filename}` "
                f"(or pre-fill the hub cache and keep `checkpoint: {self.location}`)"
            )
        folder = self.location.rstrip("/")
        commands = " && ".join(
            f"curl -L -o {name} '{folder}/files/?p=%2F{name.replace('/', '%2F')}&dl=1'" for name in self.files
        )
        return (
            f"download {' and '.join(self.files)} from {folder}/ on a machine with internet "
            f"(e.g. `mkdir -p ckpts configs && {commands}`), copy them here keeping that layout, "
            f"and set `checkpoint: <dir>/{self.files[0]}` (model.yaml is found beside it in ../configs/)"
        )


RELEASED: dict[str, Released] = {
    "f16-1024": Released(
        "taming", 1024, 256, "taming VQGAN ImageNet f16, 1024 codes (rFID 7.94 val, taming README)",
        "https://heibox.uni-heidelberg.de/d/8088892a516d4e3baf92", ("ckpts/last.ckpt", "configs/model.yaml"),
    ),
    "f16-16384": Released(
        "taming", 16384, 256, "taming VQGAN ImageNet f16, 16384 codes (rFID 4.98 val, taming README)",
        "https://heibox.uni-heidelberg.de/d/a7530b09fed84f80a887", ("ckpts/last.ckpt", "configs/model.yaml"),
    ),
    "llamagen-vq16": Released(
        "llamagen", 16384, 8, "LlamaGen VQ-16 (vq_ds16_c2i), 16384 l2-normalised 8-d codes (rFID 2.19, LlamaGen README)",
        "hf:FoundationVision/LlamaGen/vq_ds16_c2i.pt", ("vq_ds16_c2i.pt",),
    ),
}
PRESETS = ("tiny", *RELEASED)

#: Default architecture of the tiny preset (also the defaults of TinyTrainParams).
TINY_BLOCK_OUT_CHANNELS: tuple[int, ...] = (16, 32, 64)
TINY_LAYERS_PER_BLOCK = 1
TINY_LATENT_CHANNELS = 16
TINY_NORM_NUM_GROUPS = 4
TINY_CODEBOOK_SIZE = 1024
TINY_CODEBOOK_DIM = 8
