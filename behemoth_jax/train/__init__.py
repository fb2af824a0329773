"""Training: the jitted data-parallel step, the generic loop, optimizer, checkpoints and pretraining.
One loop serves pretraining (pretraining.run) and fine-tuning (batch-mode edits call loop.run_loop);
pretrained.load_pretrained starts anything else from a finished run. Imports model/ and evaluate/.

Entry points: pretraining.run; pretrained.load_pretrained; loop.run_loop; train_step.make_train_step, make_mesh;
optim.make_optimizer; checkpoint.make_manager; data.sharded_sampler; metrics_log.read_jsonl.
"""
