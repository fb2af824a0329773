"""The generator's world as pure functions of a seed: fact graph, vocabulary, templates, corpus, probes.
A Dataset (graph + vocabulary + corpus recipe + seed) is what trainers and editors load; the corpus is
rendered on device or in numpy from the same tables. numpy/jax only, never the model.

Entry points: graph.make_graph; vocab.make_vocab; corpus.CorpusConfig / render_documents;
probes.build_probes; dataset.Dataset / dataset.load.
"""
