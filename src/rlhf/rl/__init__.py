"""Reinforcement learning on language models: sampling, the forward pass shared by rollout and
update, rollouts, the iteration schedule, and comparing policies."""
