"""VTP pretraining: recipe, data, losses, trainer (stage 1) and decoder GAN (stage 2)."""
