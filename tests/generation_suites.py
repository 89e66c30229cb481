"""Suite texts shared by the multi-rank tests (in-process ranks and the Slurm cluster)."""

#: a one-unit generation suite small enough for CPU ranks; LAUNCHER, RESOURCES and STEPS are filled in
GENERATION_UNIT_SUITE = """
name: NAME
store: {root: STORE}
launcher: LAUNCHER
datasets:
  train: {kind: shapes, params: {split: train, num_images: 64, resolution: 32}}
  val: {kind: shapes, params: {split: val, num_images: 32, resolution: 32}}
tokenizers:
  bicubic: {plugin: resample, params: {factor: 4}}
tasks:
  - kind: generation
    dataset: val
    train_dataset: train
    resources: RESOURCES
    params: {model: micro, target_tokens: 16, steps: STEPS, batch_size: 16, precision: fp32, sample_steps: 3,
             num_samples: 32, metrics: [gfid], shard_size: 16, extract_batch_size: 16, sample_batch_size: 32}
"""
