"""Data for every stage, one concept per module: where rows come from (sources, synthetic),
reading their cells (fields), one normalised form per kind of example (preferences, sft,
prompts), train/test parts (splits), how a reward model reads text (reward_text), prompt
templates and fitting (prompt_templates, prompt_fit), and seeded batches (batching)."""
