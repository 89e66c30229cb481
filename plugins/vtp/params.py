"""Validated parameters of the ``vtp`` tokenizer (importable without torch).

Exactly one source of weights::

    params: {pretrained: large}                                  # alias of MiniMaxAI/VTP-Large-f16d64
    params: {pretrained: MiniMaxAI/VTP-Base-f16d64, revision: main}  # hub id (hub cache or internet)
    params: {pretrained: /data/vtp/VTP-Large-f16d64}             # directory holding model.safetensors
    params: {pretrained: /data/vtp/model.safetensors}            # the file itself
    params: {recipe: tiny}                                       # pretrained here (weights cached in the store)
    params: {recipe: tiny, recipe_overrides: {steps: 2000}}      # ... with other settings
    params: {recipe: ./my-recipe.yaml}                           # a recipe file

``latent_stats`` names the official per-channel statistics (``latents_stats.pt``,
shipped in the VTP repository under ``generation/latent_stats/vtp_{s,b,l}/``) used to
standardise latents for generation; it never changes what ``encode`` returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tokbench.errors import MissingAssetError, did_you_mean
from tokbench.nn.hub import looks_like_hub_id
from tokbench_vtp.model.config import HUB_IDS

if TYPE_CHECKING:  # pragma: no cover
    from tokbench_vtp.pretrain.recipe import PretrainRecipe

#: file names of an official checkpoint directory (kept in step with ``tokbench_vtp.checkpoint``,
#: which imports torch and so cannot be imported here)
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
#: where the official latent statistics live, for error messages
LATENT_STATS_HINT = (
    "the official files ship in the VTP GitHub repository (MiniMax-AI/VTP) as "
    "generation/latent_stats/vtp_{s,b,l}/latents_stats.pt (a dict with `mean` and `std`, each (1, 64, 1, 1))"
)


def _how_to_get_weights() -> str:
    return (
        f"Use a local {WEIGHTS_NAME} (or a directory holding it, e.g. one made with "
        f"`huggingface-cli download {HUB_IDS['large']} --local-dir ./weights/VTP-Large-f16d64`), "
        f"a hub id such as {HUB_IDS['large']}, or one of the aliases {', '.join(HUB_IDS)}"
    )


class VTPParams(BaseModel):
    """A VTP tokenizer: released/local weights (``pretrained``) or a pretraining ``recipe`` run here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: local model.safetensors, a directory holding it, a hub id, or an alias small/base/large
    pretrained: str | None = Field(None, min_length=1)
    #: hub revision (branch, tag or commit) of a hub ``pretrained``
    revision: str | None = Field(None, min_length=1)
    #: a pretraining preset (tiny, small, base, large) or a recipe YAML path
    recipe: str | None = Field(None, min_length=1)
    #: nested settings merged into the recipe, e.g. ``{steps: 2000, optim: {lr: 1e-3}}``
    recipe_overrides: dict[str, Any] = {}
    #: path of an official ``latents_stats.pt`` ({mean, std}, each (1, C, 1, 1)) for latent standardisation
    latent_stats: str | None = Field(None, min_length=1)
    #: bf16 autocast for the encoder and text tower on CUDA only; the pixel decoder always runs fp32
    precision: Literal["fp32", "bf16"] = "fp32"
    #: parts loaded besides the vision trunk (fewer parts: less memory, fewer capabilities)
    components: list[Literal["decoder", "text"]] = ["decoder", "text"]
    #: torch.compile the vision trunk (opt-in: compiling takes a while; outputs are unchanged)
    compile: bool = False

    @field_validator("components")
    @classmethod
    def _unique_components(cls, value: list[str]) -> list[str]:
        # Canonical order, so equivalent suites dump (and hash) the same way.
        return sorted(set(value))

    @model_validator(mode="after")
    def _check_source(self) -> "VTPParams":
        if self.pretrained is None and self.recipe is None:
            raise ValueError(
                "set one weight source: `pretrained: <model.safetensors, its directory, a hub id or one of "
                f"{', '.join(HUB_IDS)}>` or `recipe: <pretraining preset such as tiny, or a recipe YAML path>`"
            )
        if self.pretrained is not None and self.recipe is not None:
            raise ValueError(
                f"`pretrained: {self.pretrained}` and `recipe: {self.recipe}` are both set; keep exactly one "
                "(pretrained loads existing weights, recipe pretrains new ones)"
            )
        if self.recipe is not None and self.revision is not None:
            raise ValueError(f"`revision` only applies to a hub `pretrained`; remove it for `recipe: {self.recipe}`")
        if self.pretrained is not None and self.recipe_overrides:
            raise ValueError("`recipe_overrides` only apply to `recipe`; remove them when loading `pretrained` weights")
        if self.recipe is not None:
            self.recipe_config()  # a bad recipe fails here, at suite validation
        return self

    # ---- sources (no torch) --------------------------------------------------------
    def hub_id(self) -> str | None:
        """The hub repository ``pretrained`` names (aliases expanded), or None for local paths and recipes.
        Aliases win over same-named local paths, as in ``tokbench_vtp.checkpoint.resolve_checkpoint``."""
        if self.pretrained is None:
            return None
        if self.pretrained in HUB_IDS:
            return HUB_IDS[self.pretrained]
        if Path(self.pretrained).expanduser().exists():
            return None
        return self.pretrained if looks_like_hub_id(self.pretrained) else None

    def local_checkpoint(self) -> Path | None:
        """The local ``model.safetensors`` named by ``pretrained`` (a file or a directory holding it),
        or None for hub ids and recipes. Raises MissingAssetError, saying how to get the
        weights, for a path that does not exist or a directory without the weights file."""
        if self.pretrained is None or self.hub_id() is not None:
            return None
        path = Path(self.pretrained).expanduser()
        if not path.exists():
            raise MissingAssetError(
                f"VTP checkpoint {str(path)!r} does not exist and is not a hub id like owner/name. " + _how_to_get_weights() + "."
            )
        weights = path / WEIGHTS_NAME if path.is_dir() else path
        if not weights.is_file():
            found = sorted(p.name for p in path.iterdir())[:10] if path.is_dir() else []
            raise MissingAssetError(
                f"{str(path)!r} has no {WEIGHTS_NAME} (found {found or 'nothing'}). " + _how_to_get_weights() + "."
            )
        return weights

    def latent_stats_path(self) -> Path | None:
        """The ``latent_stats`` file, or None when unset; MissingAssetError when it does not exist."""
        if self.latent_stats is None:
            return None
        path = Path(self.latent_stats).expanduser()
        if not path.is_file():
            raise MissingAssetError(f"latent_stats file {str(path)!r} does not exist; {LATENT_STATS_HINT}")
        return path

    def recipe_config(self) -> "PretrainRecipe | None":
        """The validated pretraining recipe (overrides merged), or None for ``pretrained``.

        Raises ValueError naming the field: ``recipe`` for an unknown preset/missing file,
        ``recipe_overrides.<path>`` for a bad override, ``recipe <name>: <path>`` for a bad
        value in the recipe file itself."""
        if self.recipe is None:
            return None
        from tokbench_vtp.pretrain.recipe import load_recipe

        try:
            return load_recipe(self.recipe, dict(self.recipe_overrides))
        except FileNotFoundError as error:
            raise ValueError(f"recipe: {error}") from None
        except ValidationError as error:
            raise ValueError(self._recipe_problems(error)) from None

    def _recipe_problems(self, error: ValidationError) -> str:
        """One line per problem, each naming where the bad value came from."""
        from tokbench_vtp.pretrain.recipe import PretrainRecipe

        lines = []
        for problem in error.errors():
            location = [str(part) for part in problem.get("loc", ())]
            message = problem.get("msg", "invalid value")
            if location and _in_overrides(self.recipe_overrides, location):
                where = "recipe_overrides." + ".".join(location)
                if problem.get("type") == "extra_forbidden" and len(location) == 1:
                    suggestion = did_you_mean(location[0], PretrainRecipe.model_fields)
                    if suggestion:
                        message += f" (did you mean {suggestion!r}?)"
            else:
                where = f"recipe {self.recipe}" + (": " + ".".join(location) if location else "")
            lines.append(f"{where}: {message}")
        return "invalid VTP recipe:\n  " + "\n  ".join(lines)

    # ---- planning hooks (no torch) ----------------------------------------------------
    def needs_preparation(self) -> bool:
        """Recipes must be pretrained (a prepare unit) before anything is evaluated."""
        return self.recipe is not None

    def identity_files(self) -> list[str]:
        """Local files whose content identifies the outputs: the checkpoint file (and its
        ``config.json``, which can set head counts) of a local ``pretrained``, a recipe YAML
        file given by path, and ``latent_stats``. Hub ids and preset recipes add nothing
        (their identity is the id/revision or the plugin version)."""
        files: list[Path] = []
        weights = self.local_checkpoint()
        if weights is not None:
            files.append(weights)
            if (weights.parent / CONFIG_NAME).is_file():
                files.append(weights.parent / CONFIG_NAME)
        if self.recipe is not None and Path(self.recipe).expanduser().is_file():
            files.append(Path(self.recipe).expanduser())
        stats = self.latent_stats_path()
        if stats is not None:
            files.append(stats)
        return [str(path.resolve()) for path in files]


def _in_overrides(overrides: dict[str, Any], location: list[str]) -> bool:
    """Whether the value at ``location`` (or a prefix of it, e.g. a whole sub-dict) was given in ``overrides``."""
    node: Any = overrides
    for part in location:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
        if not isinstance(node, dict):
            return True
    return True
