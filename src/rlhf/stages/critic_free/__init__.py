"""RL without a value model: RLOO, GRPO (Dr. GRPO, DAPO, GSPO options), REINFORCE++, REINFORCE."""
