"""What a running unit has: its context (store, device, datasets), phase timing and the rank rules of a multi-GPU unit."""
