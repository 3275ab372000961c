"""rlhf: Reinforcement Learning from Human Feedback on Hugging Face models."""

__version__ = "0.1.0"
