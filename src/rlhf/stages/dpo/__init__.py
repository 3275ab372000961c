"""Offline preference optimisation: DPO, robust DPO, IPO and SimPO (`train.train_dpo`)."""
