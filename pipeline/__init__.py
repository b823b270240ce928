"""veritrain's library: spec, determinism, data commitment, training with per-step records,
checkpoints, the signed ledger, storage and finalization. It never imports prefect."""
