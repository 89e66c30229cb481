"""Image datasets (procedural shapes, ImageNet-style folders), crops and the torch batch loader."""
