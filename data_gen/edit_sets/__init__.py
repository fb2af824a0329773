"""Edit sets: what an edit or an unlearning run trains on and is measured on, built from the fact graph.
The builder (edits, with edit_select's vectorized choices), their files in the original's fine-tuning
layout (edit_files), and the world after an edit (edited_graph, what the retrain oracle trains on).

Entry points: edits.EditConfig / build_edit_set; edit_files.write_edit_set / load_edit_set;
edited_graph.edited_dataset.
"""
