"""The training stages. Each is one module (or a folder, for PPO) built on the engine: a new
method adds its file here and its config in `rlhf.config`; nothing else grows."""
