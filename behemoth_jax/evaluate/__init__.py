"""Evaluation: what a model knows (greedy exact match) and what an edit did, per fact, with statistics.
Knowledge evaluation during pretraining, per-row edit metrics, bootstrap intervals and KS tests, and
pooling of runs that differ only in their seeds. Imports model/ only.

Entry points: knowledge.evaluate (exact match in one teacher-forced pass); edit_metrics.row_metrics;
stats.bootstrap_ci, stats.paired_diff_ci (arms on the same facts), stats.ks_2samp;
pooling.pool_runs.
"""
