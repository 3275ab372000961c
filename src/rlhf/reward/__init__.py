"""Rewards: scorers (a reward model with its own tokenizer, a Python function), how a reward
model reads text, and rule-based rewards."""
