"""Generation: LightningDiT in the official checkpoint layout, flow-matching transport and ODE
samplers, analytic FLOPs for the equal-FLOPs protocol (see docs/generation.md)."""
