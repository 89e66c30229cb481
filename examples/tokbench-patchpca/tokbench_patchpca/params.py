"""Suite parameters (torch-free: `tokbench validate` imports this, never torch)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class PatchPCAParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    patch: int = Field(4, ge=1, le=32, description="patch side p: the latent is (k, H/p, W/p)")
    components: int = Field(12, ge=1, description="k, the principal components kept per patch")
    train_dataset: str | None = Field(None, description="the suite dataset the basis is fitted on")
    fit_images: int = Field(256, ge=1, description="images of train_dataset the fit reads (the first ones)")
    basis_file: str | None = Field(None, description="a basis.pt fitted elsewhere: used as is, nothing is fitted")

    @model_validator(mode="after")
    def _one_source(self) -> "PatchPCAParams":
        if self.components > 3 * self.patch * self.patch:
            raise ValueError(f"components ({self.components}) exceeds the patch dimension 3 x {self.patch}^2")
        if (self.train_dataset is None) == (self.basis_file is None):
            raise ValueError("give exactly one of train_dataset (fit here) and basis_file (a fitted basis)")
        return self

    def needs_preparation(self) -> bool:
        """A basis to fit: tokbench runs one prepare unit before every unit that uses it."""
        return self.basis_file is None

    def identity_files(self) -> list[str]:
        """Local files whose content enters the result keys."""
        return [self.basis_file] if self.basis_file else []

    def training_code(self) -> list[str]:
        """The files that produce the basis: the fit is keyed on these, not on the whole package."""
        return ["fit.py"]
