"""Preference pairs and prompt sets: load, normalise, validate, tokenise, collate."""
