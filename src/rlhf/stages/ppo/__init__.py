"""PPO: setup (models, checks, score transform, KL controller), the update, the per-token
rewards and advantages, the metrics, and the loop (`train`)."""
