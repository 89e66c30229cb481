"""Training building blocks shared by tokenizer plugins (GAN discriminators and
losses, perceptual loss, schedules, EMA). Imported only by training code."""
